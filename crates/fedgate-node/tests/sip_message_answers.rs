//! Issue #8 regression: with `UaConfig::app_answers_messages` (the SIP gateway's mode)
//! every in-session MESSAGE the application answers gets that answer, however many
//! are waiting at once. The answers used to go through the driver's bounded command
//! channel (`try_send`, 64 deep): a burst of them found it full, failed with
//! `UaError::Busy` and were dropped, their server transactions then lived until the
//! UA's own 504 (10 s), and under the load program's window of 1000 they reached
//! `max_transactions`, so the node answered every new request 503.
//!
//! Two `SipUa` drivers over TCP on loopback: A opens a session to B and sends `N`
//! MESSAGEs; B (command channel of depth 1, so nothing but the answer channel can
//! carry a burst of answers) answers them all at once when all are in. Every one must
//! come back 200 to A well before the 10 s bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use fedgate_node::sip::{SipTransport, SipUa, SipUaConfig, SipUaEvent, Target, TransportConfig};
use fedgate_sip::{Address, Host};
use fedgate_sip_txn::ua::address;
use fedgate_sip_txn::{EndpointConfig, UaConfig};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// MESSAGEs in flight at once: far above the command channel's depth.
const N: usize = 500;
/// Far below the UA's 504 bound (10 s): a lost answer shows as a missing 200.
const WITHIN: Duration = Duration::from_secs(5);

fn addr(s: &str) -> Address {
    address(s).unwrap()
}

async fn spawn_ua(
    host: &'static str,
    seed: u64,
    answers: bool,
    commands: usize,
) -> (SipUa, mpsc::Receiver<SipUaEvent>, SocketAddr) {
    // Room for the whole burst in each connection's queue (default 64): the window,
    // not that queue, bounds what is in flight, as in the load program.
    let mut tc = TransportConfig::default();
    tc.limits.outbound_queue = 4 * N;
    let (transport, inbound) = SipTransport::new(tc, None).unwrap();
    let listen = transport
        .listen_tcp(SocketAddr::from((LO, 0)))
        .await
        .unwrap();
    let contact = addr(&format!("<sip:{LO}:{};transport=tcp>", listen.port()));
    let ep = EndpointConfig::new(Host::Domain(Bytes::from_static(host.as_bytes())), seed);
    let mut ua = UaConfig::new(ep, contact);
    ua.app_answers_messages = answers;
    let mut cfg = SipUaConfig::new(ua);
    cfg.commands = commands;
    let (ua, events, _task) = SipUa::spawn(transport, inbound, cfg);
    (ua, events, listen)
}

async fn next(events: &mut mpsc::Receiver<SipUaEvent>, until: Instant) -> SipUaEvent {
    timeout_at(until, events.recv())
        .await
        .expect("timed out")
        .expect("driver gone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_application_answers_is_never_dropped() {
    let (a, mut ev_a, _) = spawn_ua("gw.fabrikam.test", 11, false, 64).await;
    let (b, mut ev_b, b_addr) = spawn_ua("gw.fedgate-a.test", 22, true, 1).await;
    let until = Instant::now() + WITHIN;

    let s = a
        .open_session(
            Target::tcp(b_addr),
            addr("<sip:alice@fabrikam.test>"),
            addr("<sip:juliet@fedgate-a.test>"),
        )
        .await
        .unwrap();
    let sb = loop {
        if let SipUaEvent::SessionOffered { session, .. } = next(&mut ev_b, until).await {
            break session;
        }
    };
    b.accept_session(sb).await.unwrap();
    loop {
        if let SipUaEvent::SessionOpened { session } = next(&mut ev_a, until).await {
            assert_eq!(session, s);
            break;
        }
    }

    for i in 0..N {
        a.send_message(s, &format!("m{i}")).await.unwrap();
    }
    let mut handles = Vec::with_capacity(N);
    while handles.len() < N {
        let ev = timeout_at(until, ev_b.recv()).await;
        let Ok(Some(ev)) = ev else {
            panic!("only {} of {N} MESSAGEs arrived", handles.len());
        };
        match ev {
            SipUaEvent::MessageToAnswer { message, .. } => {
                assert_eq!(message.session(), sb);
                handles.push(message);
            }
            other => eprintln!("B: {other:?}"),
        }
    }
    // All at once, as the gateway's event task does under load.
    for m in handles {
        b.answer_message(m, 200).expect("answer queued");
    }

    let (mut delivered, mut failed) = (0, Vec::new());
    while delivered + failed.len() < N {
        match next(&mut ev_a, until).await {
            SipUaEvent::MessageDelivered { session, .. } if session == s => delivered += 1,
            SipUaEvent::MessageFailed { status, .. } => failed.push(status),
            _ => {}
        }
    }
    assert_eq!(delivered, N, "answers lost or failed: {failed:?}");
}
