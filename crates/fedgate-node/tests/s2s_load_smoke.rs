//! Runs `examples/s2s_load.rs` with a tiny load (N = 300, K = 10) so the program stays
//! working: the flood into fedgate (and into Prosody and ejabberd when installed) and
//! the idle-stream measurement. Figures are not checked (debug build, tiny N).
//!
//! The example is built first with the `cargo` that runs this test, into the same target
//! directory and profile (a no-op when `cargo test` already built it). It leases
//! 127.0.0.10 and 127.0.0.11 like the interop tests, so it waits for them.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedgate_testkit::{SLIXMPP, peers_or_skip};

const N: u64 = 300;
const K: usize = 10;
const BOUND: Duration = Duration::from_secs(600);

/// `(target dir, profile dir)` of this test binary (`<target>/<profile>/deps/<test>`).
fn dirs() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap().to_path_buf();
    (profile.parent().unwrap().to_path_buf(), profile)
}

fn build_example() -> PathBuf {
    let (target, profile) = dirs();
    let mut cmd = Command::new(env!("CARGO"));
    // Both load examples in one build: node_load_smoke shares it (a no-op for the
    // second test, and for both under `cargo test`, which builds examples anyway).
    cmd.args([
        "build",
        "-p",
        "fedgate-node",
        "--example",
        "s2s_load",
        "--example",
        "node_load",
        "--target-dir",
    ])
    .arg(&target)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    // What cargo set for this test process; inherited, it would change build scripts'
    // fingerprints (ring's watches CARGO_MANIFEST_DIR) and rebuild everything twice.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&&*k)
        {
            cmd.env_remove(&*k);
        }
    }
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let st = cmd.status().unwrap();
    assert!(st.success(), "building the example: {st}");
    profile.join("examples").join("s2s_load")
}

#[test]
fn s2s_load_runs_with_a_tiny_load() {
    let mut peers = vec!["fedgate"];
    if peers_or_skip(&["prosody", "prosodyctl", SLIXMPP]) {
        peers.push("prosody");
    }
    if peers_or_skip(&["ejabberdctl", "erl", SLIXMPP]) {
        peers.push("ejabberd");
    }
    let exe = build_example();
    let mut child = Command::new(&exe)
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
    let deadline = Instant::now() + BOUND;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("s2s_load did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
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
