//! Two machines driven against each other in memory (and scripted peers).

use super::*;
use crate::stanza::Message;
use std::time::Duration;

fn d(s: &str) -> DomainPart {
    DomainPart::new(s).unwrap()
}

fn cfg(domains: &[&str], secret: &[u8], tls: bool, incoming_tls: TlsPolicy) -> Arc<S2sConfig> {
    Arc::new(S2sConfig {
        local_domains: domains.iter().map(|x| d(x)).collect(),
        secret: DialbackSecret::new(secret),
        limits: Limits::default(),
        tls_available: tls,
        incoming_tls,
        tls_required_peers: vec![d("strict.test")],
        id_seed: [7; 32],
    })
}

/// One side of a connection, either role.
trait Side {
    fn input(&mut self, now: Instant, b: &[u8]);
    fn transmit(&mut self) -> Option<Vec<u8>>;
    fn event(&mut self) -> Option<S2sEvent>;
}
impl Side for S2sOutgoing {
    fn input(&mut self, now: Instant, b: &[u8]) {
        self.handle_input(now, b)
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<S2sEvent> {
        self.poll_event()
    }
}
impl Side for S2sIncoming {
    fn input(&mut self, now: Instant, b: &[u8]) {
        self.handle_input(now, b)
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<S2sEvent> {
        self.poll_event()
    }
}

/// Moves bytes both ways (in 7-byte pieces, to exercise the reader) until quiet,
/// running the TLS "handshake" when both sides asked for it. Returns the events of
/// each side, TLS events excluded.
fn pump(
    now: Instant,
    out: &mut S2sOutgoing,
    inc: &mut S2sIncoming,
    cert_valid_for: &[DomainPart],
) -> (Vec<S2sEvent>, Vec<S2sEvent>) {
    let (mut eo, mut ei) = (Vec::new(), Vec::new());
    let (mut tls_o, mut tls_i) = (false, false);
    for _ in 0..1000 {
        let mut progress = false;
        if let Some(b) = out.transmit() {
            for c in b.chunks(7) {
                inc.input(now, c);
            }
            progress = true;
        }
        if let Some(b) = inc.transmit() {
            for c in b.chunks(7) {
                out.input(now, c);
            }
            progress = true;
        }
        while let Some(e) = out.event() {
            progress = true;
            if e == S2sEvent::StartTls {
                tls_o = true
            } else {
                eo.push(e)
            }
        }
        while let Some(e) = inc.event() {
            progress = true;
            if e == S2sEvent::StartTls {
                tls_i = true
            } else {
                ei.push(e)
            }
        }
        if tls_o && tls_i {
            // Both flushed; the handshake happens; both restart.
            out.handle_tls_established(now);
            inc.handle_tls_established(now, cert_valid_for);
            tls_o = false;
            tls_i = false;
            progress = true;
        }
        if !progress {
            return (eo, ei);
        }
    }
    panic!("no quiescence");
}

/// Two servers: a.test (and a2.test) with secret "sa"; b.test with secret "sb".
struct World {
    now: Instant,
    a: Arc<S2sConfig>,
    b: Arc<S2sConfig>,
}

impl World {
    fn new(tls: bool, b_incoming: TlsPolicy) -> Self {
        World {
            now: Instant::now(),
            a: cfg(&["a.test", "a2.test"], b"sa", tls, TlsPolicy::Optional),
            b: cfg(&["b.test"], b"sb", tls, b_incoming),
        }
    }

    /// b.test asks a.test (authoritative) over a fresh b→a stream, like ejabberd does.
    fn verify_via_authoritative(&self, req: &VerifyRequest) -> VerifyResult {
        let mut bo = S2sOutgoing::verify_only(
            self.b.clone(),
            req.receiving.clone(),
            req.originating.clone(),
            TlsPolicy::Optional,
            self.now,
        );
        let mut ai = S2sIncoming::new(self.a.clone(), self.now);
        bo.send_verify(req.clone()).unwrap();
        let (eo, ei) = pump(self.now, &mut bo, &mut ai, &[]);
        assert!(
            ei.is_empty(),
            "the verify-only stream authenticates nothing: {ei:?}"
        );
        eo.into_iter()
            .find_map(|e| match e {
                S2sEvent::VerifyResponse { request, result } => {
                    assert_eq!(&request, req);
                    Some(result)
                }
                _ => None,
            })
            .expect("verify response")
    }

    /// Runs a→b negotiation, answering verify requests through a.test's authoritative
    /// side. Returns all events.
    fn connect(
        &self,
        out: &mut S2sOutgoing,
        inc: &mut S2sIncoming,
        cert: &[DomainPart],
    ) -> (Vec<S2sEvent>, Vec<S2sEvent>) {
        let (mut eo, mut ei) = pump(self.now, out, inc, cert);
        for _ in 0..8 {
            let reqs: Vec<VerifyRequest> = ei
                .iter()
                .filter_map(|e| match e {
                    S2sEvent::VerifyRequest(r) => Some(r.clone()),
                    _ => None,
                })
                .collect();
            if reqs.is_empty() {
                break;
            }
            ei.retain(|e| !matches!(e, S2sEvent::VerifyRequest(_)));
            for r in reqs {
                let res = self.verify_via_authoritative(&r);
                inc.handle_verify_result(&r, res);
            }
            let (o, i) = pump(self.now, out, inc, cert);
            eo.extend(o);
            ei.extend(i);
        }
        (eo, ei)
    }
}

fn authenticated(local: &str, remote: &str, method: AuthMethod) -> S2sEvent {
    S2sEvent::Authenticated {
        local: d(local),
        remote: d(remote),
        method,
    }
}

fn chat(from: &str, to: &str) -> Element {
    Message::chat(Jid::parse(from).unwrap(), Jid::parse(to).unwrap(), "hi").to_element(ns::SERVER)
}

fn closed_with(ev: &[S2sEvent], c: Sec) -> bool {
    ev.iter()
        .any(|e| matches!(e, S2sEvent::Closed { sent: Some(s), .. } if s.condition == c))
}

#[test]
fn xep0220_dialback_after_starttls_both_roles() {
    let w = World::new(true, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    // Self-signed certificate: valid for nothing.
    let (eo, ei) = w.connect(&mut out, &mut inc, &[]);
    assert_eq!(
        eo,
        vec![authenticated("a.test", "b.test", AuthMethod::Dialback)]
    );
    assert_eq!(
        ei,
        vec![authenticated("b.test", "a.test", AuthMethod::Dialback)]
    );
    assert!(out.core.tls && inc.core.tls);
    assert!(inc.is_authorized(&d("a.test"), &d("b.test")));

    out.send_stanza(&chat("alice@a.test/r", "bob@b.test"))
        .unwrap();
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    assert!(matches!(&ei[..], [S2sEvent::Stanza(m)] if m.attr("to") == Some("bob@b.test")));

    // Not authorized pairs are refused locally.
    assert!(matches!(
        out.send_stanza(&chat("x@a2.test", "bob@b.test")),
        Err(S2sError::NotAuthorized(..))
    ));
    assert!(matches!(
        out.send_stanza(&Element::new("message", ns::SERVER)),
        Err(S2sError::Addressing("from"))
    ));
}

#[test]
fn xep0178_sasl_external_with_a_valid_certificate() {
    let w = World::new(true, TlsPolicy::Required);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Required,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    let (eo, ei) = w.connect(&mut out, &mut inc, &[d("a.test")]);
    assert_eq!(
        eo,
        vec![authenticated("a.test", "b.test", AuthMethod::SaslExternal)]
    );
    assert_eq!(
        ei,
        vec![authenticated("b.test", "a.test", AuthMethod::SaslExternal)]
    );
    out.send_stanza(&chat("alice@a.test", "bob@b.test/x"))
        .unwrap();
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    assert!(matches!(&ei[..], [S2sEvent::Stanza(_)]));
    // Stream ids: one per stream (initial, after TLS, after SASL).
    assert_eq!(inc.ids, 3);
}

#[test]
fn external_failure_falls_back_to_dialback_on_the_same_stream() {
    // The certificate is valid, but not for a.test: our receiving side offers EXTERNAL
    // and then fails it, as ejabberd does for self-signed peers.
    let w = World::new(true, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    let (eo, ei) = w.connect(&mut out, &mut inc, &[d("other.test")]);
    assert!(out.sasl_tried);
    assert_eq!(
        eo,
        vec![authenticated("a.test", "b.test", AuthMethod::Dialback)]
    );
    assert_eq!(
        ei,
        vec![authenticated("b.test", "a.test", AuthMethod::Dialback)]
    );
}

#[test]
fn scripted_ejabberd_peer_external_failure_then_dialback() {
    let now = Instant::now();
    let a = cfg(&["a.test"], b"sa", true, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        a.clone(),
        d("a.test"),
        d("c.test"),
        TlsPolicy::Optional,
        now,
    );
    let hdr = |id: &str| {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server' xmlns:db='jabber:server:dialback' id='{id}' version='1.0' from='c.test' to='a.test'>"
        )
    };
    let sent =
        |o: &mut S2sOutgoing| String::from_utf8(o.poll_transmit().unwrap_or_default()).unwrap();
    assert!(sent(&mut out).contains("to='c.test'"));
    out.handle_input(now, hdr("1").as_bytes());
    out.handle_input(now, b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>");
    assert_eq!(
        sent(&mut out),
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    // A plaintext injection after <proceed/> must be ignored.
    out.handle_input(
        now,
        b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features/>",
    );
    assert_eq!(out.poll_event(), Some(S2sEvent::StartTls));
    out.handle_tls_established(now);
    assert!(sent(&mut out).starts_with("<?xml"));
    out.handle_input(now, hdr("2").as_bytes());
    out.handle_input(now, b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>");
    assert_eq!(
        sent(&mut out),
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>YS50ZXN0</auth>"
    );
    out.handle_input(now, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>self signed certificate</text></failure>");
    let key = a.secret.key("c.test", "a.test", "2");
    assert_eq!(
        sent(&mut out),
        format!("<db:result from='a.test' to='c.test'>{key}</db:result>")
    );
    out.handle_input(now, b"<db:result from='c.test' to='a.test' type='valid'/>");
    assert_eq!(
        out.poll_event(),
        Some(authenticated("a.test", "c.test", AuthMethod::Dialback))
    );
    assert!(!out.is_closed());
}

#[test]
fn failed_verification_never_authorizes() {
    let mut w = World::new(false, TlsPolicy::Optional);
    // a.test's outgoing side uses a secret its authoritative side does not know.
    let a_out = cfg(&["a.test", "a2.test"], b"wrong", false, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(a_out, d("a.test"), d("b.test"), TlsPolicy::Optional, w.now);
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    let (eo, ei) = w.connect(&mut out, &mut inc, &[]);
    assert_eq!(
        eo,
        vec![S2sEvent::AuthenticationFailed {
            local: d("a.test"),
            remote: d("b.test"),
            error: None
        }]
    );
    assert!(ei.is_empty(), "{ei:?}");
    assert!(!inc.is_authorized(&d("a.test"), &d("b.test")));
    assert!(
        out.send_stanza(&chat("alice@a.test", "bob@b.test"))
            .is_err()
    );
    // A peer that sends anyway is cut off with <invalid-from/>.
    inc.handle_input(
        w.now,
        chat("alice@a.test", "bob@b.test").to_xml().as_bytes(),
    );
    let ev: Vec<_> = std::iter::from_fn(|| inc.poll_event()).collect();
    assert!(closed_with(&ev, Sec::InvalidFrom), "{ev:?}");
    assert!(!ev.iter().any(|e| matches!(e, S2sEvent::Stanza(_))));
    w.now += Duration::from_secs(1);
}

#[test]
fn stale_or_forged_verify_results_are_ignored() {
    let w = World::new(false, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    let [S2sEvent::VerifyRequest(req)] = &ei[..] else {
        panic!("{ei:?}")
    };
    let mut forged = req.clone();
    forged.key = "00".into();
    inc.handle_verify_result(&forged, VerifyResult::Valid);
    forged = req.clone();
    forged.originating = d("evil.test");
    inc.handle_verify_result(&forged, VerifyResult::Valid);
    assert!(!inc.is_authorized(&d("a.test"), &d("b.test")));
    assert!(!inc.is_authorized(&d("evil.test"), &d("b.test")));
    inc.handle_verify_result(req, VerifyResult::Valid);
    assert!(inc.is_authorized(&d("a.test"), &d("b.test")));
}

#[test]
fn xep0220_4_3_several_domains_on_one_stream() {
    let w = World::new(false, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    w.connect(&mut out, &mut inc, &[]);
    out.authorize(d("a2.test"), d("b.test")).unwrap();
    assert!(out.authorize(d("zz.test"), d("b.test")).is_err());
    let (eo, ei) = w.connect(&mut out, &mut inc, &[]);
    assert_eq!(
        eo,
        vec![authenticated("a2.test", "b.test", AuthMethod::Dialback)]
    );
    assert_eq!(
        ei,
        vec![authenticated("b.test", "a2.test", AuthMethod::Dialback)]
    );
    out.send_stanza(&chat("x@a2.test", "bob@b.test")).unwrap();
    out.send_stanza(&chat("x@a.test", "bob@b.test")).unwrap();
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    assert_eq!(ei.len(), 2);
    // A third domain was never authenticated on this stream.
    let forged = chat("x@a3.test", "bob@b.test");
    out.core.send(&forged);
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    assert!(closed_with(&ei, Sec::InvalidFrom), "{ei:?}");
}

#[test]
fn xep0220_errors_unknown_target_domain_and_unreachable_authority() {
    let w = World::new(false, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    w.connect(&mut out, &mut inc, &[]);
    // b.test's server does not host nope.test.
    out.authorize(d("a2.test"), d("nope.test")).unwrap();
    let (eo, _) = pump(w.now, &mut out, &mut inc, &[]);
    assert_eq!(
        eo,
        vec![S2sEvent::AuthenticationFailed {
            local: d("a2.test"),
            remote: d("nope.test"),
            error: Some(StanzaErrorCondition::ItemNotFound)
        }]
    );
    // The authoritative server for a2.test cannot be reached.
    out.authorize(d("a2.test"), d("b.test")).unwrap();
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    let [S2sEvent::VerifyRequest(req)] = &ei[..] else {
        panic!("{ei:?}")
    };
    inc.handle_verify_result(
        req,
        VerifyResult::Error(StanzaErrorCondition::RemoteServerNotFound),
    );
    let (eo, _) = pump(w.now, &mut out, &mut inc, &[]);
    assert_eq!(
        eo,
        vec![S2sEvent::AuthenticationFailed {
            local: d("a2.test"),
            remote: d("b.test"),
            error: Some(StanzaErrorCondition::RemoteServerNotFound)
        }]
    );
    assert!(!inc.is_authorized(&d("a2.test"), &d("b.test")));
}

#[test]
fn rfc6120_4_9_3_stream_errors_of_the_receiving_side() {
    let now = Instant::now();
    let b = cfg(&["b.test"], b"sb", false, TlsPolicy::Optional);
    let hdr = |to: &str| {
        format!(
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='{to}' version='1.0'>"
        )
    };
    let run = |input: String| {
        let mut inc = S2sIncoming::new(b.clone(), now);
        inc.handle_input(now, input.as_bytes());
        let ev: Vec<_> = std::iter::from_fn(|| inc.poll_event()).collect();
        let out = String::from_utf8(inc.poll_transmit().unwrap_or_default()).unwrap();
        (ev, out)
    };
    let (ev, out) = run(hdr("x.test"));
    assert!(closed_with(&ev, Sec::HostUnknown));
    assert!(out.starts_with("<?xml version='1.0'?><stream:stream") && out.ends_with("<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"), "{out}");
    let (ev, _) = run(format!("{}<message to='bob@b.test'/>", hdr("b.test")));
    assert!(closed_with(&ev, Sec::ImproperAddressing));
    let (ev, _) = run(format!(
        "{}<message from='a@a.test' to='bob@c.test'/>",
        hdr("b.test")
    ));
    assert!(closed_with(&ev, Sec::HostUnknown));
    let (ev, _) = run(format!(
        "{}<message from='a@a.test' to='bob@b.test'/>",
        hdr("b.test")
    ));
    assert!(closed_with(&ev, Sec::InvalidFrom));
    let (ev, _) = run(format!(
        "{}<message from='a@@a.test' to='bob@b.test'/>",
        hdr("b.test")
    ));
    assert!(closed_with(&ev, Sec::InvalidFrom));
    let (ev, _) = run(format!("{}<foo xmlns='urn:x'/>", hdr("b.test")));
    assert!(closed_with(&ev, Sec::UnsupportedStanzaType));
    let (ev, _) = run(format!("{}<!-- x -->", hdr("b.test")));
    assert!(closed_with(&ev, Sec::RestrictedXml));
    // An error before the peer's header still goes out after a header of ours.
    let (ev, out) = run("<!-- x -->".into());
    assert!(closed_with(&ev, Sec::RestrictedXml));
    assert!(
        out.starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:server'"),
        "{out}"
    );
    let mut r = StreamReader::new(StreamKind::Server, Limits::default(), now);
    r.feed(out.as_bytes());
    assert!(matches!(r.poll_event(), Ok(Some(Event::StreamOpen(_)))));
    assert!(
        matches!(r.poll_event(), Ok(Some(Event::Element(e))) if StreamError::from_owned(&e).map(|e| e.condition) == Some(Sec::RestrictedXml))
    );
    assert_eq!(r.poll_event(), Ok(Some(Event::StreamClose)));
    let (ev, _) = run(format!(
        "{}<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        hdr("b.test")
    ));
    assert!(
        matches!(&ev[..], [S2sEvent::Closed { sent: None, received: Some(e) }] if e.condition == Sec::Conflict)
    );
    // The authoritative side answers db:verify, also for keys it did not issue.
    let key = b.secret.key("a.test", "b.test", "X1");
    let (_, out) = run(format!(
        "{}<db:verify from='a.test' to='b.test' id='X1'>{key}</db:verify><db:verify from='a.test' to='b.test' id='X2'>{key}</db:verify><db:verify from='a.test' to='q.test' id='X1'>{key}</db:verify>",
        hdr("b.test")
    ));
    assert!(
        out.contains("<db:verify from='b.test' to='a.test' id='X1' type='valid'/>"),
        "{out}"
    );
    assert!(
        out.contains("<db:verify from='b.test' to='a.test' id='X2' type='invalid'/>"),
        "{out}"
    );
    assert!(out.contains("<db:verify from='q.test' to='a.test' id='X1' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>"), "{out}");
}

#[test]
fn tls_required_policies() {
    let now = Instant::now();
    // Receiving side requires TLS: dialback in plaintext is a policy violation.
    let b = cfg(&["b.test"], b"sb", true, TlsPolicy::Required);
    let mut inc = S2sIncoming::new(b, now);
    inc.handle_input(now, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'><db:result from='a.test' to='b.test'>abc</db:result>");
    let out = String::from_utf8(inc.poll_transmit().unwrap()).unwrap();
    assert!(
        out.contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>")
    );
    let ev: Vec<_> = std::iter::from_fn(|| inc.poll_event()).collect();
    assert!(closed_with(&ev, Sec::PolicyViolation), "{ev:?}");

    // Per-peer policy on the receiving side: strict.test must use TLS.
    let b = cfg(&["b.test"], b"sb", true, TlsPolicy::Optional);
    let mut inc = S2sIncoming::new(b, now);
    inc.handle_input(now, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='b.test' version='1.0'><db:result from='a.test' to='b.test'>abc</db:result><db:result from='strict.test' to='b.test'>abc</db:result>");
    let ev: Vec<_> = std::iter::from_fn(|| inc.poll_event()).collect();
    assert!(matches!(&ev[0], S2sEvent::VerifyRequest(r) if r.originating == d("a.test")));
    assert!(closed_with(&ev, Sec::PolicyViolation), "{ev:?}");

    // Initiating side requires TLS from a peer without it: it asks anyway (as Prosody
    // does), the peer refuses, and nothing is authenticated.
    let w = World::new(false, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Required,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    let (eo, ei) = w.connect(&mut out, &mut inc, &[]);
    assert!(out.is_closed() && inc.is_closed());
    assert!(
        !eo.iter()
            .chain(&ei)
            .any(|e| matches!(e, S2sEvent::Authenticated { .. }))
    );
}

#[test]
fn unauthenticated_stream_lifetime() {
    let w = World::new(false, TlsPolicy::Optional);
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    let (_, ei) = pump(w.now, &mut out, &mut inc, &[]);
    assert!(matches!(&ei[..], [S2sEvent::VerifyRequest(_)]));
    // The verification never comes back.
    let deadline = inc.poll_timeout().unwrap();
    assert_eq!(deadline, w.now + Duration::from_secs(60));
    inc.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!inc.is_closed());
    inc.handle_timeout(deadline);
    let ev: Vec<_> = std::iter::from_fn(|| inc.poll_event()).collect();
    assert!(closed_with(&ev, Sec::PolicyViolation));
    assert_eq!(inc.poll_timeout(), None);
    // An authenticated stream has no such deadline.
    let mut out = S2sOutgoing::new(
        w.a.clone(),
        d("a.test"),
        d("b.test"),
        TlsPolicy::Optional,
        w.now,
    );
    let mut inc = S2sIncoming::new(w.b.clone(), w.now);
    w.connect(&mut out, &mut inc, &[]);
    assert_eq!(inc.poll_timeout(), None);
    assert_eq!(out.poll_timeout(), None);
}

#[test]
fn pipelined_bytes_after_starttls_are_not_processed() {
    let now = Instant::now();
    let b = cfg(&["b.test"], b"sb", true, TlsPolicy::Optional);
    let mut inc = S2sIncoming::new(b, now);
    inc.handle_input(now, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='a.test' to='b.test' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><db:result xmlns:db='jabber:server:dialback' from='a.test' to='b.test'>k</db:result>");
    assert_eq!(inc.poll_event(), Some(S2sEvent::StartTls));
    inc.handle_tls_established(now, &[]);
    assert_eq!(inc.poll_event(), None, "the injected db:result was dropped");
    assert!(!inc.is_closed());
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "<?xml version='1.0'?>",
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0' id='i1'>",
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><dialback xmlns='urn:xmpp:features:dialback'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>",
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>",
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        "<db:result from='a.test' to='b.test'>abcdef</db:result>",
        "<db:result from='b.test' to='a.test' type='valid'/>",
        "<db:verify from='a.test' to='b.test' id='i1'>abc</db:verify>",
        "<db:verify from='b.test' to='a.test' id='i1' type='valid'/>",
        "<message from='x@a.test' to='y@b.test'><body>hi</body></message>",
        "<presence/>",
        "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        "</stream:stream>",
        "<!-- -->",
        "<a><b>",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn machines_never_panic_on_arbitrary_input(
            ops in proptest::collection::vec((0usize..PIECES.len() + 3, 1usize..9, any::<u8>()), 0..24)
        ) {
            let now = Instant::now();
            let c = cfg(&["a.test", "b.test"], b"s", true, TlsPolicy::Optional);
            let mut inc = S2sIncoming::new(c.clone(), now);
            let mut out = S2sOutgoing::new(c, d("a.test"), d("b.test"), TlsPolicy::Optional, now);
            for (k, chunk, byte) in ops {
                let bytes: Vec<u8> = match k {
                    k if k < PIECES.len() => PIECES[k].as_bytes().to_vec(),
                    k if k == PIECES.len() => vec![byte; chunk],
                    k if k == PIECES.len() + 1 => {
                        inc.handle_tls_established(now, &[d("a.test")]);
                        out.handle_tls_established(now);
                        continue;
                    }
                    _ => {
                        if let Some(S2sEvent::VerifyRequest(r)) = inc.poll_event() {
                            let res = if byte % 2 == 0 { VerifyResult::Valid } else { VerifyResult::Invalid };
                            inc.handle_verify_result(&r, res);
                        }
                        out.authorize(d("a.test"), d("b.test")).ok();
                        continue;
                    }
                };
                for piece in bytes.chunks(chunk) {
                    inc.handle_input(now, piece);
                    out.handle_input(now, piece);
                }
                let o1 = inc.poll_transmit().map_or(0, |b| b.len());
                let o2 = out.poll_transmit().map_or(0, |b| b.len());
                prop_assert!(o1 < 8192 && o2 < 8192);
                while inc.poll_event().is_some() {}
                while out.poll_event().is_some() {}
                prop_assert!(inc.core.reader.buffered() <= Limits::default().max_stanza_bytes_unauthenticated + 512);
            }
            inc.handle_timeout(now + Duration::from_secs(3600));
            out.handle_timeout(now + Duration::from_secs(3600));
            prop_assert!(inc.is_closed() || inc.poll_timeout().is_none());
        }
    }
}

#[test]
fn xep0220_pre_1_0_peers_dial_back_without_features() {
    let now = Instant::now();
    let a = cfg(&["a.test"], b"sa", false, TlsPolicy::Optional);
    let b = cfg(&["b.test"], b"sb", false, TlsPolicy::Optional);
    // Receiving side: a header without version gets no features; dialback works.
    let mut inc = S2sIncoming::new(b, now);
    inc.handle_input(now, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='b.test'>");
    let out = String::from_utf8(inc.poll_transmit().unwrap()).unwrap();
    assert!(!out.contains("features"), "{out}");
    let key = a.secret.key("b.test", "a.test", inc.stream_id());
    inc.handle_input(
        now,
        format!("<db:result from='a.test' to='b.test'>{key}</db:result>").as_bytes(),
    );
    let Some(S2sEvent::VerifyRequest(req)) = inc.poll_event() else {
        panic!()
    };
    assert!(a.secret.verify(
        req.receiving.as_str(),
        req.originating.as_str(),
        &req.stream_id,
        &req.key
    ));
    inc.handle_verify_result(&req, VerifyResult::Valid);
    assert_eq!(
        inc.poll_event(),
        Some(authenticated("b.test", "a.test", AuthMethod::Dialback))
    );
    // Initiating side: a pre-1.0 answer means dialback at once.
    let mut out = S2sOutgoing::new(
        a.clone(),
        d("a.test"),
        d("c.test"),
        TlsPolicy::Optional,
        now,
    );
    out.poll_transmit();
    out.handle_input(now, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' id='old1'>");
    let sent = String::from_utf8(out.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        sent,
        format!(
            "<db:result from='a.test' to='c.test'>{}</db:result>",
            a.secret.key("c.test", "a.test", "old1")
        )
    );
    // ... unless TLS is required.
    let mut out = S2sOutgoing::new(a, d("a.test"), d("c.test"), TlsPolicy::Required, now);
    out.handle_input(now, b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' id='old1'>");
    assert!(out.is_closed());
}
