//! The Lync-federation SIPp scenarios of `tests/sipp/` proved against their
//! counterpart scenarios (a second SIPp standing in for fedgate), over TCP and
//! through a stunnel TLS pair, with negative runs showing that the content
//! checks really fail. See `tests/sipp/README.md`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fedgate_testkit::{
    SipTransport, Sipp, SippResult, Stunnel, peers_or_skip, process::free_port, self_signed,
    write_scenario,
};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Every SIPp run is bounded by this (seconds, SIPp's global `-timeout`).
const RUN_TIMEOUT: &str = "20s";

/// Keywords every UAC scenario may use (unused ones are harmless).
const KEYS: &[&str] = &[
    "-key",
    "fedgate_domain",
    "fedgate-a.test",
    "-key",
    "lync_domain",
    "lync.test",
    "-key",
    "lync_user",
    "alice",
    "-key",
    "fedgate_user",
    "juliet",
];

fn addr() -> SocketAddr {
    SocketAddr::from((LO, free_port(LO).expect("free port")))
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(scenario(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `name` with `from` replaced by `to` (which must occur), written to `dir`.
fn variant(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let xml = read(name);
    assert!(xml.contains(from), "{name} has no {from:?}");
    write_scenario(dir, &format!("variant-{name}"), &xml.replace(from, to)).expect("write variant")
}

/// What a UAC/UAS pair did, plus the UAS's message log.
struct Pair {
    uac: SippResult,
    uas: SippResult,
    uas_messages: String,
}

/// Runs `uac` (with `-s service` and [`KEYS`]) against `uas`, directly over
/// TCP or through a stunnel TLS pair, both bounded by [`RUN_TIMEOUT`].
fn run_pair(uac: &Path, uas: &Path, service: &str, tls: bool) -> Pair {
    let logs = tempfile::tempdir().expect("tempdir");
    let uas_log = logs.path().join("uas-messages.log");
    let uas_log_arg = uas_log.to_str().expect("utf-8 path");
    let listen = addr();
    let server = Sipp::serve(
        uas,
        listen,
        SipTransport::Tcp,
        &[
            "-timeout",
            RUN_TIMEOUT,
            "-timeout_error",
            "-message_file",
            uas_log_arg,
        ],
    )
    .expect("sipp uas");
    let mut extra = vec!["-s", service, "-timeout", RUN_TIMEOUT, "-timeout_error"];
    extra.extend_from_slice(KEYS);
    let (uac, tunnels) = if tls {
        let cert = self_signed(logs.path(), "fedgate-b.test").expect("cert");
        let tls_server = Stunnel::server(addr(), listen, &cert).expect("stunnel server");
        let tls_client =
            Stunnel::client(addr(), tls_server.accept_addr(), None).expect("stunnel client");
        let uac = Sipp::run(uac, tls_client.accept_addr(), SipTransport::Tcp, &extra).expect("uac");
        let log = tls_server.diagnostics();
        assert!(
            log.contains("TLS accepted") || log.contains("SSL accepted"),
            "the middle hop was not TLS: {log}"
        );
        (uac, Some((tls_client, tls_server)))
    } else {
        (
            Sipp::run(uac, listen, SipTransport::Tcp, &extra).expect("uac"),
            None,
        )
    };
    let uas = server.wait(Duration::from_secs(30)).expect("uas exit");
    drop(tunnels);
    let uas_messages = std::fs::read_to_string(&uas_log).unwrap_or_default();
    Pair {
        uac,
        uas,
        uas_messages,
    }
}

fn assert_passed(what: &str, p: &Pair) {
    assert!(
        p.uac.passed() && p.uac.successful_calls == 1,
        "{what}: UAC {:?}\n{}",
        p.uac.exit_code,
        p.uac.diagnostics
    );
    assert!(
        p.uas.passed() && p.uas.successful_calls == 1,
        "{what}: UAS {:?}\n{}",
        p.uas.exit_code,
        p.uas.diagnostics
    );
}

/// Requests of `method` received by the UAS (SIPp's `-trace_msg` log).
fn received(log: &str, method: &str) -> usize {
    // "TCP message received [N] bytes :", a blank line, then the start line.
    let mut n = 0;
    let mut pending = false;
    for line in log.lines() {
        if line.contains("message received") {
            pending = true;
        } else if pending && !line.trim().is_empty() {
            if line.starts_with(&format!("{method} ")) {
                n += 1;
            }
            pending = false;
        }
    }
    n
}

fn timed(name: &str, t0: Instant) {
    eprintln!("{name}: {:.2?}", t0.elapsed());
}

// ---------------------------------------------------------------- static checks

/// The bodies of the `NOTIFY`s a scenario sends, as SIPp sends them (leading
/// whitespace of each line removed).
fn notify_bodies(xml: &str) -> Vec<(String, String)> {
    xml.split("<![CDATA[")
        .skip(1)
        .filter_map(|part| {
            let cdata = part.split("]]>").next()?;
            let lines: Vec<&str> = cdata.lines().map(str::trim_start).collect();
            let text = lines.join("\n");
            let text = text.trim_start();
            if !text.starts_with("NOTIFY ") {
                return None;
            }
            let (head, body) = text.split_once("\n\n")?;
            Some((head.to_owned(), body.trim().to_owned()))
        })
        .collect()
}

#[test]
fn lync_notifier_bodies_are_msrtc_categories_6500_15500_18500() {
    let xml = read("lync_notifier_uas.xml");
    let notifies = notify_bodies(&xml);
    assert_eq!(notifies.len(), 3, "three NOTIFYs");
    for ((head, body), code) in notifies.iter().zip(["6500", "15500", "18500"]) {
        assert!(
            head.contains("Content-Type: application/msrtc-event-categories+xml"),
            "{head}"
        );
        assert!(head.contains("Event: presence"), "{head}");
        assert!(head.contains("Subscription-State: active"), "{head}");
        assert!(
            body.starts_with(
                "<categories xmlns=\"http://schemas.microsoft.com/2006/09/sip/categories\""
            ),
            "{body}"
        );
        assert!(body.ends_with("</categories>"), "{body}");
        // The aggregateState carries the value fedgate must read.
        let agg = body
            .split("xsi:type=\"aggregateState\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no aggregateState in {body}"));
        let want = format!("<availability>{code}</availability>");
        assert!(
            agg.trim_start_matches('>').contains(&want),
            "{code}: {body}"
        );
        assert!(
            body.contains("xmlns=\"http://schemas.microsoft.com/2006/09/sip/state\""),
            "{body}"
        );
        assert_eq!(body.matches("<categories").count(), 1);
        assert_eq!(
            body.matches("</category>").count(),
            body.matches("<category ").count()
        );
    }
    // The first one also has a machineState (3500) that must lose, and a note.
    assert!(
        notifies[0]
            .1
            .contains("xsi:type=\"machineState\"><availability>3500")
    );
    assert!(
        notifies[0]
            .1
            .contains("<body type=\"personal\" uri=\"\">Budget review</body>")
    );
    assert!(notifies[0].1.contains("token=\"in-a-meeting\""));
}

/// The NOTIFY bodies the Lync stand-in sends are what fedgate's own msrtc reader
/// accepts: the aggregate state wins over the machine state, and the three documents
/// read as Busy (with the note), Away and Offline.
#[test]
fn lync_notifier_bodies_parse_with_fedgates_msrtc_reader() {
    use fedgate_presence::Availability;
    let xml = read("lync_notifier_uas.xml");
    let notifies = notify_bodies(&xml);
    let want = [
        (6500, Availability::Busy),
        (15500, Availability::Away),
        (18500, Availability::Offline),
    ];
    assert_eq!(notifies.len(), want.len());
    for ((_, body), (code, availability)) in notifies.iter().zip(want) {
        let cats = fedgate_presence::msrtc::parse(body.as_bytes())
            .unwrap_or_else(|e| panic!("{code}: {e}: {body}"));
        assert_eq!(cats.availability, Some(code), "{body}");
        let p = cats.presence().expect("an availability");
        assert_eq!(p.availability, availability, "{code}");
    }
    let first = fedgate_presence::msrtc::parse(notifies[0].1.as_bytes()).expect("first");
    assert_eq!(first.note.as_deref(), Some("Budget review"));
}

#[test]
fn scenario_files_are_all_there_and_sane() {
    let dir = scenario("");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/sipp")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".xml"))
        .collect();
    names.sort();
    let expected = [
        "fedgate_im_mock_uac.xml",
        "fedgate_im_mock_uac_receives.xml",
        "fedgate_im_mock_uas_replies.xml",
        "fedgate_notifier_mock_early_uas.xml",
        "fedgate_notifier_mock_piggyback_uas.xml",
        "fedgate_notifier_mock_uas.xml",
        "fedgate_watcher_mock_uac.xml",
        "lync_gw_blocked_watcher_uac.xml",
        "lync_gw_denied_watcher_uac.xml",
        "lync_gw_im_refused_uac.xml",
        "lync_gw_im_typing_uac.xml",
        "lync_gw_invite_480_uas.xml",
        "lync_gw_notify_after_reconnect_uas.xml",
        "lync_gw_subscribe_404_uas.xml",
        "lync_gw_subscribe_refused_uac.xml",
        "lync_gw_watcher_leaves_uac.xml",
        "lync_gw_watcher_uac.xml",
        "lync_im_uac.xml",
        "lync_im_uac_no_textformat.xml",
        "lync_im_uas.xml",
        "lync_im_uas_sends.xml",
        "lync_notifier_uas.xml",
        "lync_watcher_piggyback_uac.xml",
        "lync_watcher_uac.xml",
    ];
    assert_eq!(names, expected);
    let readme = read("README.md");
    for name in &names {
        let xml = read(name);
        assert!(xml.contains("<scenario name="), "{name}");
        assert!(xml.trim_end().ends_with("</scenario>"), "{name}");
        assert_eq!(
            xml.matches("<![CDATA[").count(),
            xml.matches("]]>").count(),
            "{name}: CDATA"
        );
        // SIPp's XML reader breaks on a raw '<' inside an attribute value
        // (regexps write it as &lt;).
        assert!(!xml.contains("regexp=\"<"), "{name}: raw < in an attribute");
        for line in xml.lines().filter(|l| l.contains("regexp=")) {
            let value = line.split("regexp=\"").nth(1).unwrap_or("");
            let value = value.split('"').next().unwrap_or("");
            assert!(!value.contains('<'), "{name}: raw < in {value}");
        }
        assert!(readme.contains(name), "README.md does not describe {name}");
    }
    // Lync's headers and parameters are where the README says they are.
    let w = read("lync_watcher_uac.xml");
    assert!(w.contains("Accept: application/xpidf+xml, text/xml+msrtc.pidf, application/pidf+xml"));
    assert!(w.contains(";epid="));
    assert!(w.contains("(Microsoft Lync)"));
    assert!(!w.contains("Supported: ms-piggyback-first-notify"));
    assert!(
        read("lync_watcher_piggyback_uac.xml").contains("Supported: ms-piggyback-first-notify")
    );
    let im = read("lync_im_uac.xml");
    assert!(im.contains("m=message 5060 sip null"));
    assert!(im.contains("ms-text-format: text/plain; charset=UTF-8;msgr="));
    assert!(!read("lync_im_uac_no_textformat.xml").contains("ms-text-format:"));
}

#[test]
fn ms_body_is_the_base64_of_the_first_text() {
    let im = read("lync_im_uac.xml");
    let b64 = im
        .split("ms-body=")
        .nth(1)
        .and_then(|s| s.lines().next())
        .expect("ms-body");
    assert_eq!(
        decode_base64(b64.trim()),
        b"Hello from Lync (first message, in the INVITE)"
    );
    // The same text is what the UAC sends again when the 200 lacks ms-text-format.
    assert!(im.contains("\n      Hello from Lync (first message, in the INVITE)\n"));
}

fn decode_base64(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&x| x == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---------------------------------------------------------------- presence pairs

#[test]
fn watcher_against_notifier_mock_over_tcp() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let p = run_pair(
        &scenario("lync_watcher_uac.xml"),
        &scenario("fedgate_notifier_mock_uas.xml"),
        "romeo",
        false,
    );
    assert_passed("watcher vs notifier mock", &p);
    assert_eq!(
        received(&p.uas_messages, "SUBSCRIBE"),
        3,
        "{}",
        p.uas_messages
    );
    timed("watcher_against_notifier_mock_over_tcp", t0);
}

#[test]
fn watcher_against_notifier_mock_through_tls() {
    if !peers_or_skip(&["sipp", "openssl", "stunnel4"]) {
        return;
    }
    let t0 = Instant::now();
    let p = run_pair(
        &scenario("lync_watcher_uac.xml"),
        &scenario("fedgate_notifier_mock_uas.xml"),
        "romeo",
        true,
    );
    assert_passed("watcher vs notifier mock (TLS)", &p);
    timed("watcher_against_notifier_mock_through_tls", t0);
}

#[test]
fn watcher_takes_notify_before_200_and_pending_then_active() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let p = run_pair(
        &scenario("lync_watcher_uac.xml"),
        &scenario("fedgate_notifier_mock_early_uas.xml"),
        "romeo",
        false,
    );
    assert_passed("watcher vs early notifier mock", &p);
    timed(
        "watcher_takes_notify_before_200_and_pending_then_active",
        t0,
    );
}

#[test]
fn piggyback_watcher_takes_the_document_in_the_200_or_a_notify() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    for mock in [
        "fedgate_notifier_mock_piggyback_uas.xml",
        "fedgate_notifier_mock_uas.xml",
        "fedgate_notifier_mock_early_uas.xml",
    ] {
        let p = run_pair(
            &scenario("lync_watcher_piggyback_uac.xml"),
            &scenario(mock),
            "romeo",
            false,
        );
        assert_passed(mock, &p);
        assert_eq!(received(&p.uas_messages, "SUBSCRIBE"), 3, "{mock}");
    }
    timed(
        "piggyback_watcher_takes_the_document_in_the_200_or_a_notify",
        t0,
    );
}

#[test]
fn watcher_fails_on_a_notify_that_is_not_pidf() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let watcher = scenario("lync_watcher_uac.xml");
    for (what, from, to) in [
        (
            "msrtc content type",
            "Content-Type: application/pidf+xml",
            "Content-Type: text/xml+msrtc.pidf",
        ),
        (
            "no basic status",
            "<status><basic>open</basic></status>",
            "<status/>",
        ),
    ] {
        let mock = variant(dir.path(), "fedgate_notifier_mock_uas.xml", from, to);
        let p = run_pair(&watcher, &mock, "romeo", false);
        assert!(!p.uac.passed(), "{what}: the watcher accepted it");
        assert_eq!(p.uac.failed_calls, 1, "{what}");
        assert!(
            p.uac.diagnostics.contains("Failed regexp match"),
            "{what}: {}",
            p.uac.diagnostics
        );
    }
    // And a piggybacked 200 whose body is not PIDF.
    let mock = variant(
        dir.path(),
        "fedgate_notifier_mock_piggyback_uas.xml",
        "Content-Type: application/pidf+xml",
        "Content-Type: application/xpidf+xml",
    );
    let p = run_pair(
        &scenario("lync_watcher_piggyback_uac.xml"),
        &mock,
        "romeo",
        false,
    );
    assert!(!p.uac.passed(), "piggyback: the watcher accepted xpidf");
    timed("watcher_fails_on_a_notify_that_is_not_pidf", t0);
}

#[test]
fn lync_notifier_against_fedgate_watcher_mock() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let p = run_pair(
        &scenario("fedgate_watcher_mock_uac.xml"),
        &scenario("lync_notifier_uas.xml"),
        "bob",
        false,
    );
    assert_passed("fedgate watcher mock vs Lync notifier", &p);
    assert_eq!(received(&p.uas_messages, "SIP/2.0 200"), 3);

    // A wrong availability makes the mock's check fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let notifier = variant(
        dir.path(),
        "lync_notifier_uas.xml",
        "<availability>15500</availability>",
        "<availability>3500</availability>",
    );
    let p = run_pair(
        &scenario("fedgate_watcher_mock_uac.xml"),
        &notifier,
        "bob",
        false,
    );
    assert!(!p.uac.passed(), "3500 accepted for 15500");
    assert!(p.uac.diagnostics.contains("Failed regexp match"));

    // A SUBSCRIBE without msrtc-event-categories in Accept is refused by "Lync".
    let watcher = variant(
        dir.path(),
        "fedgate_watcher_mock_uac.xml",
        "Accept: application/msrtc-event-categories+xml, application/pidf+xml",
        "Accept: application/pidf+xml",
    );
    let p = run_pair(&watcher, &scenario("lync_notifier_uas.xml"), "bob", false);
    assert!(!p.uas.passed(), "Lync notifier accepted a pidf-only Accept");
    timed("lync_notifier_against_fedgate_watcher_mock", t0);
}

// ---------------------------------------------------------------- IM pairs

#[test]
fn im_uac_against_im_uas_with_and_without_ms_text_format() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let uas = scenario("lync_im_uas.xml");
    let uas_without = variant(
        dir.path(),
        "lync_im_uas.xml",
        "      Supported: ms-text-format\n",
        "",
    );
    // (UAC, UAS, MESSAGEs the UAS must receive)
    let cases = [
        ("lync_im_uac.xml", &uas, 2),
        ("lync_im_uac.xml", &uas_without, 3),
        ("lync_im_uac_no_textformat.xml", &uas, 3),
    ];
    for (uac, uas, messages) in cases {
        let p = run_pair(&scenario(uac), uas, "romeo", false);
        assert_passed(uac, &p);
        assert_eq!(
            received(&p.uas_messages, "MESSAGE"),
            messages,
            "{uac} vs {}:\n{}",
            uas.display(),
            p.uas_messages
        );
        assert_eq!(received(&p.uas_messages, "BYE"), 1);
        assert_eq!(received(&p.uas_messages, "ACK"), 1);
    }
    timed("im_uac_against_im_uas_with_and_without_ms_text_format", t0);
}

#[test]
fn im_uac_takes_a_reply_while_its_message_is_pending() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    for uac in ["lync_im_uac.xml", "lync_im_uac_no_textformat.xml"] {
        let p = run_pair(
            &scenario(uac),
            &scenario("fedgate_im_mock_uas_replies.xml"),
            "romeo",
            false,
        );
        assert_passed(uac, &p);
        // The 200 lacks ms-text-format: the first text comes again.
        assert_eq!(received(&p.uas_messages, "MESSAGE"), 3, "{uac}");
        assert_eq!(received(&p.uas_messages, "SIP/2.0 200"), 1, "{uac}");
    }
    timed("im_uac_takes_a_reply_while_its_message_is_pending", t0);
}

#[test]
fn im_uac_against_im_uas_through_tls() {
    if !peers_or_skip(&["sipp", "openssl", "stunnel4"]) {
        return;
    }
    let t0 = Instant::now();
    let p = run_pair(
        &scenario("lync_im_uac.xml"),
        &scenario("lync_im_uas.xml"),
        "romeo",
        true,
    );
    assert_passed("IM over TLS", &p);
    assert_eq!(received(&p.uas_messages, "MESSAGE"), 2);
    timed("im_uac_against_im_uas_through_tls", t0);
}

#[test]
fn im_uas_against_fedgate_im_mocks() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let p = run_pair(
        &scenario("fedgate_im_mock_uac.xml"),
        &scenario("lync_im_uas.xml"),
        "alice",
        false,
    );
    assert_passed("fedgate IM mock vs Lync IM UAS", &p);
    assert_eq!(received(&p.uas_messages, "MESSAGE"), 2);

    let p = run_pair(
        &scenario("fedgate_im_mock_uac_receives.xml"),
        &scenario("lync_im_uas_sends.xml"),
        "alice",
        false,
    );
    assert_passed("fedgate IM mock vs Lync IM UAS that sends", &p);
    assert_eq!(received(&p.uas_messages, "MESSAGE"), 2);
    timed("im_uas_against_fedgate_im_mocks", t0);
}

#[test]
fn im_checks_fail_on_a_wrong_counterpart() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // A MESSAGE back with a From tag that is not the dialog's.
    let uas = variant(
        dir.path(),
        "lync_im_uas_sends.xml",
        "From:[$rto];tag=[pid]LU[call_number]",
        "From:[$rto];tag=not-the-dialog-tag",
    );
    let p = run_pair(
        &scenario("fedgate_im_mock_uac_receives.xml"),
        &uas,
        "alice",
        false,
    );
    assert!(!p.uac.passed(), "wrong From tag accepted");
    assert!(p.uac.diagnostics.contains("Failed regexp match"));

    // A 200 to the INVITE without SDP.
    let uas = variant(
        dir.path(),
        "lync_im_uas.xml",
        "m=message [local_port] sip null",
        "m=audio [local_port] RTP/AVP 0",
    );
    let p = run_pair(&scenario("lync_im_uac.xml"), &uas, "romeo", false);
    assert!(!p.uac.passed(), "a 200 without m=message accepted");
    timed("im_checks_fail_on_a_wrong_counterpart", t0);
}
