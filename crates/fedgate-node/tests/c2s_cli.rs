//! The `fedgate-federation` command line through the library: check-config on a good
//! and a bad file, user add/list/remove, dns-records.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use clap::Parser;
use fedgate_node::cli::{Cli, CliError, execute};

fn run(args: &[&str], stdin: &str) -> Result<String, CliError> {
    let cli =
        Cli::try_parse_from(std::iter::once("fedgate-federation").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    execute(cli, &mut out, &mut stdin.as_bytes())?;
    Ok(String::from_utf8(out).unwrap())
}

fn good_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("fedgate.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"cli\"\ndata_dir = \"{}\"\ndomains = [\"example.com\", \"other.example\"]\n\
             [tls]\ngenerate = true\n[xmpp.c2s]\nlisten = \"127.0.0.1:5222\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn c2s_cli_check_config_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = good_config(dir.path());
    let out = run(&["check-config", "--config", good.to_str().unwrap()], "").unwrap();
    assert!(out.starts_with("configuration OK"), "{out}");
    assert!(out.contains("domains: example.com, other.example"), "{out}");
    assert!(out.contains("xmpp c2s: 127.0.0.1:5222"), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[node]\ndomains = [\"example.com\"]\n[xmpp.c2s]\nlisten = \"localhost:5222\"\n",
    )
    .unwrap();
    let err = run(&["check-config", "--config", bad.to_str().unwrap()], "").unwrap_err();
    assert!(err.to_string().contains("xmpp.c2s.listen"), "{err}");

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[xmpp.c2s]\nlisen = \"127.0.0.1:5222\"\n").unwrap();
    let err = run(&["check-config", "--config", typo.to_str().unwrap()], "").unwrap_err();
    assert!(err.to_string().contains("lisen"), "{err}");

    // The embedded demo validates.
    let out = run(&["check-config"], "").unwrap();
    assert!(
        out.contains("embedded demo") && out.contains("127.0.0.1:15222"),
        "{out}"
    );
}

#[test]
fn c2s_cli_user_add_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = good_config(dir.path());
    let c = cfg.to_str().unwrap();
    assert_eq!(
        run(
            &["user", "add", "Alice", "--password", "pw1", "--config", c],
            ""
        )
        .unwrap(),
        "added alice@example.com\n"
    );
    // password from stdin
    assert_eq!(
        run(
            &["--config", c, "user", "add", "bob@other.example"],
            "s3cret\n"
        )
        .unwrap(),
        "added bob@other.example\n"
    );
    assert!(
        run(&["--config", c, "user", "add", "carol"], "\n").is_err(),
        "empty password"
    );
    assert!(
        run(
            &[
                "--config",
                c,
                "user",
                "add",
                "dave@elsewhere.test",
                "--password",
                "x"
            ],
            ""
        )
        .is_err()
    );
    assert!(
        run(
            &["--config", c, "user", "add", "alice", "--password", "again"],
            ""
        )
        .is_err(),
        "duplicate"
    );
    assert_eq!(
        run(&["--config", c, "user", "list"], "").unwrap(),
        "alice@example.com\nbob@other.example\n"
    );
    // The password from stdin is the one stored.
    let store = fedgate_store::SqliteStore::open(dir.path().join("data")).unwrap();
    use fedgate_store::CredentialStore as _;
    assert!(
        store
            .verify_plain(&"bob@other.example".parse().unwrap(), "s3cret")
            .unwrap()
    );
    drop(store);
    assert_eq!(
        run(&["--config", c, "user", "remove", "alice"], "").unwrap(),
        "removed alice@example.com\n"
    );
    assert!(run(&["--config", c, "user", "remove", "alice"], "").is_err());
    assert_eq!(
        run(&["--config", c, "user", "list"], "").unwrap(),
        "bob@other.example\n"
    );
}

#[test]
fn c2s_cli_dns_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.toml");
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fedgate-srv/examples/deployment.toml"
    );
    std::fs::copy(example, &path).unwrap();
    let out = run(&["dns-records", "--deployment", path.to_str().unwrap()], "").unwrap();
    assert!(out.contains("SRV"), "{out}");
    assert!(run(&["dns-records", "--deployment", "/nonexistent.toml"], "").is_err());
}
