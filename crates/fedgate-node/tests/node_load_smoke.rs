//! Runs `examples/node_load.rs` with a tiny load (8 clients, N = 300, 3 presence
//! updates, 1 s of latency run at 300/s) so the program stays working: every phase against
//! a fedgate node, and against Prosody when installed. Figures are not checked (debug
//! build, tiny counts).
//!
//! The examples are built first with the `cargo` that runs this test, into the same
//! target directory and profile, in one build shared with `s2s_load_smoke` (a no-op when
//! `cargo test` already built them). It leases 127.0.0.10 and 127.0.0.11 like the
//! interop tests, so it waits for them.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use fedgate_testkit::{build_examples, peers_or_skip, wait_within};

const CLIENTS: usize = 8;
const N: u64 = 300;
const BOUND: Duration = Duration::from_secs(600);

#[test]
fn node_load_runs_with_a_tiny_load() {
    let mut peers = vec!["fedgate"];
    if peers_or_skip(&["prosody", "prosodyctl"]) {
        peers.push("prosody");
    }
    // Both load examples in one build, shared by node_load_smoke and s2s_load_smoke.
    let exe = build_examples("fedgate-node", &["s2s_load", "node_load"]).join("node_load");
    let child = Command::new(&exe)
        .args(["--clients", &CLIENTS.to_string(), "--n", &N.to_string()])
        .args(["--updates", "3", "--lat-secs", "1", "--rate", "300"])
        .args(["--timeout", "60", "--peers", &peers.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = wait_within(child, BOUND, "node_load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("not measured"), "{text}");
    for name in &peers {
        let prefix = if *name == "prosody" {
            "Prosody 0.12 "
        } else {
            "fedgate "
        };
        let row = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"));
        // The row's first figure after the name is the messages counted.
        let msgs: u64 = row[prefix.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(msgs, N, "{row}");
    }
    assert_eq!(
        text.matches("latency run 300 of 300 counted").count(),
        peers.len(),
        "{text}"
    );
    assert!(text.contains("targets (fedgate)"), "{text}");
}
