//! The checker's lines for the sample streams in tests/streams/.

use fedgate_xmpp::check::check_stream;

fn check(file: &str) -> Vec<String> {
    let path = format!("{}/tests/streams/{file}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("stream file");
    let lines = check_stream(&bytes, 7);
    // Chunking never changes what is read.
    for chunk in [1, 2, 3, 64, bytes.len()] {
        assert_eq!(check_stream(&bytes, chunk), lines, "{file} chunk {chunk}");
    }
    lines
}

#[test]
fn prosody_dialback_stream() {
    assert_eq!(
        check("prosody-dialback.xml"),
        [
            "open to=b.test from=a.test",
            "element db:result",
            "stanza message from=alice@a.test/phone to=bob@b.test",
            "stanza presence from=alice@a.test/phone to=bob@b.test",
            "stanza iq from=a.test to=b.test",
            "stanza presence from=alice@a.test/phone to=bob@b.test",
            "close",
        ]
    );
}

#[test]
fn ejabberd_features_stream() {
    assert_eq!(
        check("ejabberd-features.xml"),
        [
            "open to=rust.test from=c.test",
            "element stream:features",
            "element proceed",
            "element db:verify",
            "close",
        ]
    );
}

#[test]
fn error_streams() {
    assert_eq!(
        check("comment.xml"),
        [
            "open to=b.test from=a.test",
            "stanza presence from=x@a.test to=y@b.test",
            "error restricted-xml"
        ]
    );
    assert_eq!(
        check("mismatched.xml"),
        ["open to=b.test from=a.test", "error not-well-formed"]
    );
    assert_eq!(check("billion-laughs.xml"), ["error restricted-xml"]);
    assert_eq!(check("wrong-namespace.xml"), ["error invalid-namespace"]);
    assert_eq!(
        check("deep-nesting.xml"),
        ["open to=b.test from=a.test", "error policy-violation"]
    );
}

#[test]
fn example_binary_prints_the_same_lines() {
    // `cargo test` builds examples next to the test binaries: target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = examples.join(format!("xmppcheck{}", std::env::consts::EXE_SUFFIX));
    let dir = format!("{}/tests/streams", env!("CARGO_MANIFEST_DIR"));
    let files = ["prosody-dialback.xml", "comment.xml"];
    let out = std::process::Command::new(&bin)
        .args(files.iter().map(|f| format!("{dir}/{f}")))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(out.status.success());
    let want: Vec<String> = files.iter().flat_map(|f| check(f)).collect();
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, want);
}
