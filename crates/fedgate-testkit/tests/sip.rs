//! The harness against SIPp: UAC → UAS over TCP, and through a stunnel TLS pair.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use fedgate_testkit::{
    OPTIONS_UAC, OPTIONS_UAS, SipTransport, Sipp, Stunnel, peers_or_skip, process::free_port,
    self_signed, write_scenario,
};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn addr() -> SocketAddr {
    SocketAddr::from((LO, free_port(LO).expect("free port")))
}

#[test]
fn sipp_options_uac_to_uas_over_tcp() {
    if !peers_or_skip(&["sipp"]) {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let uac = write_scenario(dir.path(), "uac.xml", OPTIONS_UAC).expect("uac.xml");
    let uas = write_scenario(dir.path(), "uas.xml", OPTIONS_UAS).expect("uas.xml");

    // Nothing listening: the UAC must report failure, quickly.
    let dead = Sipp::run(
        &uac,
        addr(),
        SipTransport::Tcp,
        &["-timeout", "5s", "-timeout_error"],
    )
    .expect("sipp ran");
    assert!(!dead.passed(), "{dead:?}");
    eprintln!("  no UAS: exit code {:?}", dead.exit_code);

    let listen = addr();
    let server = Sipp::serve(&uas, listen, SipTransport::Tcp, &[]).expect("uas");
    let client = Sipp::run(&uac, listen, SipTransport::Tcp, &[]).expect("uac");
    assert!(client.passed(), "UAC: {}", client.diagnostics);
    let server = server.wait(Duration::from_secs(20)).expect("uas exit");
    assert!(server.passed(), "UAS: {}", server.diagnostics);
    eprintln!("sipp_options_uac_to_uas_over_tcp: {:.2?}", t0.elapsed());
}

#[test]
fn sipp_options_through_a_stunnel_tls_pair() {
    if !peers_or_skip(&["sipp", "openssl", "stunnel4"]) {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let uac = write_scenario(dir.path(), "uac.xml", OPTIONS_UAC).expect("uac.xml");
    let uas = write_scenario(dir.path(), "uas.xml", OPTIONS_UAS).expect("uas.xml");
    let cert = self_signed(dir.path(), "fedgate-b.test").expect("cert");

    // UAC → tls-client (plain in) → TLS → tls-server → UAS (plain).
    let uas_addr = addr();
    let server = Sipp::serve(&uas, uas_addr, SipTransport::Tcp, &[]).expect("uas");
    let tls_server = Stunnel::server(addr(), uas_addr, &cert).expect("stunnel server");
    let tls_client =
        Stunnel::client(addr(), tls_server.accept_addr(), None).expect("stunnel client");

    let client = Sipp::run(&uac, tls_client.accept_addr(), SipTransport::Tcp, &[]).expect("uac");
    assert!(
        client.passed(),
        "UAC: {}\n{}\n{}",
        client.diagnostics,
        tls_client.diagnostics(),
        tls_server.diagnostics()
    );
    let server = server.wait(Duration::from_secs(20)).expect("uas exit");
    assert!(server.passed(), "UAS: {}", server.diagnostics);
    // The hop in the middle really was TLS.
    let log = tls_server.diagnostics();
    assert!(
        log.contains("TLS accepted") || log.contains("SSL accepted"),
        "{log}"
    );
    eprintln!(
        "sipp_options_through_a_stunnel_tls_pair: {:.2?}",
        t0.elapsed()
    );
}
