//! Runs phase 1 of `examples/sip_load.rs` (included as a module, so nothing else is
//! built) with a tiny load: two fedgate SIP endpoints over mutual TLS, one IM session,
//! 600 MESSAGE transactions with at most 200 unanswered, all on the session's one
//! connection (a MESSAGE that overtook another would get 500, RFC 3261 §12.2.2).
//! The phase fails on a MESSAGE
//! that fails, a session that does not open, or 10 s without an event; the figure is
//! not checked (debug build). Loopback, ephemeral ports, well under a second.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // `main` and the other phases are the example's
#[path = "../examples/sip_load.rs"]
mod sip_load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_load_endpoints_phase_delivers_every_message() {
    let a = fedgate_node::tls::self_signed(&["sip.fabrikam.example"]).unwrap();
    let b = fedgate_node::tls::self_signed(&["sip.contoso.example"]).unwrap();
    let rate = sip_load::endpoints(600, 200, &a, &b)
        .await
        .unwrap_or_else(|e| panic!("sip_load endpoints: {e}"));
    assert!(rate > 0.0);
}
