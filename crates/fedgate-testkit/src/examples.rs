//! Building a package's examples from a test, for the tests that run them as programs.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// `(target dir, profile dir)` of the running test binary
/// (`<target>/<profile>/deps/<test>`).
fn dirs() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()))
        .to_path_buf();
    let target = profile
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent", profile.display()))
        .to_path_buf();
    (target, profile)
}

/// Builds the examples `names` of `package` with the `cargo` that built this crate, into
/// the running test's target directory and profile (`--release` when the test is a
/// release build), and returns the folder that holds them (`<target>/<profile>/examples`).
///
/// A no-op when `cargo test` already built them; tests that run several examples should
/// name them all in each call, so that whichever runs first builds them in one go and the
/// others find them fresh. The variables cargo sets for the test process are removed
/// from the nested build: inherited, they would change build scripts' fingerprints
/// (ring's watches `CARGO_MANIFEST_DIR`) and rebuild everything twice.
///
/// # Panics
/// When the build fails or cannot start (this is for tests).
pub fn build_examples(package: &str, names: &[&str]) -> PathBuf {
    let (target, profile) = dirs();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", package]);
    for name in names {
        cmd.args(["--example", name]);
    }
    cmd.arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
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
    let st = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(st.success(), "building the examples {names:?}: {st}");
    profile.join("examples")
}

/// Waits for `child` (polling every 100 ms) and returns its output; kills it and panics
/// naming `what` when it has not finished within `bound`.
///
/// # Panics
/// On timeout, or when waiting fails.
pub fn wait_within(mut child: Child, bound: Duration, what: &str) -> Output {
    let deadline = Instant::now() + bound;
    while child
        .try_wait()
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
        .is_none()
    {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}
