//! Runs `examples/s2s_load.rs` with a tiny load (N = 300, K = 10) so the program stays
//! working: the flood into fedgate (and into Prosody and ejabberd when installed) and
//! the idle-stream measurement. Figures are not checked (debug build, tiny N).
//!
//! The example is built first with the `cargo` that runs this test, into the same target
//! directory and profile (a no-op when `cargo test` already built it). It leases
//! 127.0.0.10 and 127.0.0.11 like the interop tests, so it waits for them.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use fedgate_testkit::{SLIXMPP, build_examples, peers_or_skip, wait_within};

const N: u64 = 300;
const K: usize = 10;
const BOUND: Duration = Duration::from_secs(600);

#[test]
fn s2s_load_runs_with_a_tiny_load() {
    let mut peers = vec!["fedgate"];
    if peers_or_skip(&["prosody", "prosodyctl", SLIXMPP]) {
        peers.push("prosody");
    }
    if peers_or_skip(&["ejabberdctl", "erl", SLIXMPP]) {
        peers.push("ejabberd");
    }
    // Both load examples in one build, shared by node_load_smoke and s2s_load_smoke.
    let exe = build_examples("fedgate-node", &["s2s_load", "node_load"]).join("s2s_load");
    let child = Command::new(&exe)
        .args([
            "--n",
            &N.to_string(),
            "--k",
            &K.to_string(),
            "--timeout",
            "60",
        ])
        .args(["--peers", &peers.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = wait_within(child, BOUND, "s2s_load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("not measured"), "{text}");
    for name in &peers {
        let prefix = match *name {
            "prosody" => "Prosody",
            "ejabberd" => "ejabberd",
            _ => "fedgate",
        };
        let row = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"));
        let col = if prefix == "fedgate" { 1 } else { 2 };
        let reached: u64 = row.split_whitespace().nth(col).unwrap().parse().unwrap();
        assert_eq!(reached, N, "{row}");
    }
    assert!(
        text.contains(&format!("idle s2s streams in fedgate: {K} of {K} opened")),
        "{text}"
    );
}
