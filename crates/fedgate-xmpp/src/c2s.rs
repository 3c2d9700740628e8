//! Client-to-server stream negotiation for local users (RFC 6120 §5–7), server side,
//! sans-IO: STARTTLS, SASL (SCRAM-SHA-256, SCRAM-SHA-1, PLAIN only over TLS) against a
//! [`CredentialVerifier`], resource binding and the legacy `<session/>` (RFC 3921).
//!
//! ```text
//!  AwaitHeader ──header (to hosted? else host-unknown)──▶ features ──▶ Open
//!  Open ── <starttls/> ──▶ <proceed/> [StartTls] ──tls established──▶ AwaitHeader
//!       ── <auth SCRAM-*> ──▶ <challenge/> ── <response/> ──▶ <success/> ─┐
//!       ── <auth PLAIN> (TLS only) ──────────────────────────▶ <success/> ─┤ [Authenticated]
//!       ── failure: <failure/>, back to Open (3 tries, then <policy-violation/>)
//!  restart ▶ AwaitHeader ▶ features(bind, session) ▶ Authenticated
//!  Authenticated ── bind iq ──▶ result(jid) [Bound] ──▶ Bound
//!  Bound ── stanza ──▶ `from` stamped with the full JID ──▶ [Stanza]
//! ```
//! Resource conflicts are the driver's (it knows the other sessions).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{StreamError, StreamErrorCondition as Sec};
use crate::jid::{BareJid, DomainPart, FullJid, Jid};
use crate::sasl::{CredentialVerifier, SaslFailure, ScramHash, ScramServer, plain};
use crate::stanza::{StanzaError, StanzaErrorCondition, error_reply, is_stanza};
use crate::tree::{Element, ElementBuilder};
use crate::writer::{STREAM_CLOSE, Scope, StreamHeaderOut, write_element, write_stream_header};
use crate::{Event, Limits, StreamKind, StreamReader, ns};

/// Configuration shared by all c2s streams of a server.
#[derive(Debug, Clone)]
pub struct C2sConfig {
    /// The domains whose users may log in.
    pub domains: Vec<DomainPart>,
    /// Reader limits.
    pub limits: Limits,
    /// We have a certificate: offer STARTTLS.
    pub tls_available: bool,
    /// Refuse authentication before TLS.
    pub require_tls: bool,
    /// Where passwords are checked.
    pub verifier: Arc<dyn CredentialVerifier>,
    /// Random bytes (from the driver) that stream ids and nonces are derived from.
    pub seed: [u8; 32],
    /// Failed SASL attempts before the stream is closed. Default in examples: 3.
    pub max_auth_failures: u32,
}

/// What the machine tells its driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum C2sEvent {
    /// Flush the output, run the TLS handshake, call `handle_tls_established`.
    StartTls,
    /// SASL succeeded for this account.
    Authenticated(BareJid),
    /// A resource was bound; the session is usable.
    Bound(FullJid),
    /// A stanza from the client, `from` stamped with its full JID.
    Stanza(Element),
    /// The stream ended.
    Closed {
        /// The stream error we sent.
        sent: Option<StreamError>,
        /// The stream error the client sent.
        received: Option<StreamError>,
    },
}

#[derive(Debug)]
enum State {
    AwaitHeader,
    Open,
    AwaitTls,
    SaslInitial(Mech),
    Scram(ScramServer),
    Authenticated,
    Bound(FullJid),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mech {
    Scram(ScramHash),
    Plain,
}

/// The server side of one client connection.
#[derive(Debug)]
pub struct C2sIncoming {
    cfg: Arc<C2sConfig>,
    reader: StreamReader,
    out: String,
    events: VecDeque<C2sEvent>,
    state: State,
    closed: bool,
    tls: bool,
    domain: Option<DomainPart>,
    user: Option<BareJid>,
    failures: u32,
    counter: u64,
    /// Our header for the current stream has been sent.
    header_sent: bool,
}

impl C2sIncoming {
    /// A client connected.
    pub fn new(cfg: Arc<C2sConfig>, now: Instant) -> Self {
        C2sIncoming {
            reader: StreamReader::new(StreamKind::Client, cfg.limits.clone(), now),
            cfg,
            out: String::new(),
            events: VecDeque::new(),
            state: State::AwaitHeader,
            closed: false,
            tls: false,
            domain: None,
            user: None,
            failures: 0,
            counter: 0,
            header_sent: false,
        }
    }

    /// Bytes to write to the client.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out).into_bytes())
        }
    }
    /// The next event.
    pub fn poll_event(&mut self) -> Option<C2sEvent> {
        let ev = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // Events come one stanza at a time: an idle connection keeps no queue.
            self.events = VecDeque::new();
        }
        ev
    }
    /// Gives back the buffers kept between stanzas
    /// ([`StreamReader::release_buffers`](crate::StreamReader::release_buffers)): for a
    /// driver once it has read what arrived, so that an idle client costs little.
    pub fn release_buffers(&mut self) {
        self.reader.release_buffers();
        if self.out.is_empty() {
            self.out = String::new();
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            None
        } else {
            self.reader.poll_timeout()
        }
    }
    /// Time has passed (unauthenticated streams expire).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.reader.handle_timeout(now);
        if let Some(c) = self.reader.error().map(|e| e.condition()) {
            self.fail(c);
        }
    }
    /// The stream has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
    /// The bound JID, once bound.
    pub fn jid(&self) -> Option<&FullJid> {
        match &self.state {
            State::Bound(j) => Some(j),
            _ => None,
        }
    }

    /// Delivers a stanza to the client (only once bound).
    pub fn send_stanza(&mut self, el: &Element) -> bool {
        if self.closed || self.jid().is_none() {
            return false;
        }
        self.out.reserve(el.xml_size_hint());
        write_element(&mut self.out, el.root(), &Scope::CLIENT);
        true
    }

    /// Ends the stream politely.
    pub fn close(&mut self) {
        if !self.closed {
            self.out.push_str(STREAM_CLOSE);
            self.closed = true;
            self.events.push_back(C2sEvent::Closed {
                sent: None,
                received: None,
            });
        }
    }

    /// The TLS handshake finished.
    pub fn handle_tls_established(&mut self, _now: Instant) {
        if matches!(self.state, State::AwaitTls) {
            self.tls = true;
            self.header_sent = false;
            self.reader.restart();
            self.state = State::AwaitHeader;
        }
    }

    fn fail(&mut self, c: Sec) {
        if self.closed {
            return;
        }
        if matches!(self.state, State::AwaitHeader | State::Authenticated) && !self.header_sent {
            // RFC 6120 §4.9.1.1: a stream error follows our stream header.
            write_stream_header(&mut self.out, &StreamHeaderOut::default());
        }
        let e = StreamError::new(c);
        e.write_to(&mut self.out);
        self.out.push_str(STREAM_CLOSE);
        self.closed = true;
        self.events.push_back(C2sEvent::Closed {
            sent: Some(e),
            received: None,
        });
    }

    fn random(&mut self, label: &[u8]) -> [u8; 32] {
        self.counter += 1;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.cfg.seed)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(label);
        mac.update(&self.counter.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Bytes from the client.
    pub fn handle_input(&mut self, _now: Instant, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.reader.feed(bytes);
        loop {
            if self.closed || matches!(self.state, State::AwaitTls) {
                break;
            }
            match self.reader.poll_event() {
                Ok(None) => break,
                Ok(Some(Event::StreamOpen(h))) => self.on_header(h),
                Ok(Some(Event::Element(el))) => self.on_element(el),
                Ok(Some(Event::StreamClose)) => self.close(),
                Err(e) => self.fail(e.condition()),
            }
        }
    }

    fn on_header(&mut self, h: crate::StreamHeader) {
        let id = self.random(b"id")[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let to =
            h.to.as_deref()
                .and_then(|t| DomainPart::new(t).ok())
                .or_else(|| self.domain.clone());
        write_stream_header(
            &mut self.out,
            &StreamHeaderOut {
                from: to.as_ref().map(DomainPart::as_str),
                to: None,
                id: Some(&id),
                dialback: false,
                server: false,
            },
        );
        self.header_sent = true;
        let Some(to) = to.filter(|t| self.cfg.domains.contains(t)) else {
            return self.fail(Sec::HostUnknown);
        };
        if self.domain.as_ref().is_some_and(|d| *d != to) {
            return self.fail(Sec::HostUnknown);
        }
        self.domain = Some(to);
        let mut f = String::from("<stream:features>");
        if matches!(self.state, State::Authenticated) {
            f.push_str("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>");
        } else {
            self.state = State::Open;
            if !self.tls && self.cfg.tls_available {
                f.push_str("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>");
                if self.cfg.require_tls {
                    f.push_str("<required/>");
                }
                f.push_str("</starttls>");
            }
            if self.tls || !self.cfg.require_tls {
                f.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>");
                if self.tls {
                    f.push_str("<mechanism>PLAIN</mechanism>");
                }
                f.push_str("</mechanisms>");
            }
        }
        f.push_str("</stream:features>");
        self.out.push_str(&f);
    }

    fn sasl_failure(&mut self, f: SaslFailure) {
        self.out
            .push_str("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><");
        self.out.push_str(f.as_str());
        self.out.push_str("/></failure>");
        self.state = State::Open;
        self.failures += 1;
        if self.failures >= self.cfg.max_auth_failures.max(1) {
            self.fail(Sec::PolicyViolation);
        }
    }

    fn sasl_payload(el: &Element) -> Result<Option<Vec<u8>>, SaslFailure> {
        let t = el.text();
        let t = t.trim();
        if t.is_empty() {
            return Ok(None);
        }
        if t == "=" {
            return Ok(Some(Vec::new()));
        }
        B64.decode(t)
            .map(Some)
            .map_err(|_| SaslFailure::IncorrectEncoding)
    }

    fn on_element(&mut self, el: Element) {
        if el.is("error", ns::STREAM) {
            self.out.push_str(STREAM_CLOSE);
            self.closed = true;
            self.events.push_back(C2sEvent::Closed {
                sent: None,
                received: StreamError::from_owned(&el),
            });
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Open);
        match state {
            State::AwaitHeader | State::AwaitTls => {
                self.state = state;
                self.fail(Sec::NotAuthorized);
            }
            State::Open => self.on_open(el),
            State::SaslInitial(m) => {
                if el.is("response", ns::SASL) {
                    match Self::sasl_payload(&el) {
                        Ok(p) => self.run_mech(m, p.unwrap_or_default()),
                        Err(f) => self.sasl_failure(f),
                    }
                } else if el.is("abort", ns::SASL) {
                    self.sasl_failure(SaslFailure::Aborted);
                } else {
                    self.fail(Sec::NotAuthorized);
                }
            }
            State::Scram(server) => {
                if el.is("response", ns::SASL) {
                    let msg = Self::sasl_payload(&el).and_then(|p| {
                        String::from_utf8(p.unwrap_or_default())
                            .map_err(|_| SaslFailure::MalformedRequest)
                    });
                    match msg.and_then(|m| server.finish(&m)) {
                        Ok((user, server_final)) => self.sasl_success(&user, Some(server_final)),
                        Err(f) => self.sasl_failure(f),
                    }
                } else if el.is("abort", ns::SASL) {
                    self.sasl_failure(SaslFailure::Aborted);
                } else {
                    self.fail(Sec::NotAuthorized);
                }
            }
            State::Authenticated => {
                self.state = State::Authenticated;
                self.on_unbound(el);
            }
            State::Bound(jid) => {
                self.state = State::Bound(jid.clone());
                self.on_bound(el, jid);
            }
        }
    }

    fn on_open(&mut self, el: Element) {
        if el.is("starttls", ns::TLS) {
            if self.tls || !self.cfg.tls_available {
                self.out
                    .push_str("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
                self.close();
                return;
            }
            self.out
                .push_str("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.state = State::AwaitTls;
            self.events.push_back(C2sEvent::StartTls);
            return;
        }
        if !el.is("auth", ns::SASL) {
            return self.fail(Sec::NotAuthorized);
        }
        if self.cfg.require_tls && !self.tls {
            return self.sasl_failure(SaslFailure::EncryptionRequired);
        }
        let mech = match el.attr("mechanism") {
            Some("SCRAM-SHA-256") => Mech::Scram(ScramHash::Sha256),
            Some("SCRAM-SHA-1") => Mech::Scram(ScramHash::Sha1),
            Some("PLAIN") if self.tls => Mech::Plain,
            Some("PLAIN") => return self.sasl_failure(SaslFailure::EncryptionRequired),
            _ => return self.sasl_failure(SaslFailure::InvalidMechanism),
        };
        match Self::sasl_payload(&el) {
            Ok(Some(p)) => self.run_mech(mech, p),
            Ok(None) => {
                self.out
                    .push_str("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
                self.state = State::SaslInitial(mech);
            }
            Err(f) => self.sasl_failure(f),
        }
    }

    fn run_mech(&mut self, mech: Mech, payload: Vec<u8>) {
        let domain = self
            .domain
            .clone()
            .map(|d| d.to_string())
            .unwrap_or_default();
        match mech {
            Mech::Plain => match plain(&payload, &domain, self.cfg.verifier.as_ref()) {
                Ok(user) => self.sasl_success(&user, None),
                Err(f) => self.sasl_failure(f),
            },
            Mech::Scram(h) => {
                let Ok(first) = String::from_utf8(payload) else {
                    return self.sasl_failure(SaslFailure::MalformedRequest);
                };
                let nonce = B64.encode(&self.random(b"nonce")[..18]);
                match ScramServer::start(h, &first, &nonce, self.cfg.verifier.as_ref()) {
                    Ok((server, server_first)) => {
                        self.out
                            .push_str("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                        self.out.push_str(&B64.encode(server_first));
                        self.out.push_str("</challenge>");
                        self.state = State::Scram(server);
                    }
                    Err(f) => self.sasl_failure(f),
                }
            }
        }
    }

    fn sasl_success(&mut self, user: &str, additional: Option<String>) {
        let domain = self
            .domain
            .clone()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let Ok(jid) = BareJid::from_parts(Some(user), &domain) else {
            return self.sasl_failure(SaslFailure::NotAuthorized);
        };
        match additional {
            Some(a) => {
                self.out
                    .push_str("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
                self.out.push_str(&B64.encode(a));
                self.out.push_str("</success>");
            }
            None => self
                .out
                .push_str("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
        }
        self.user = Some(jid.clone());
        self.reader.set_authenticated();
        self.reader.restart();
        self.header_sent = false;
        self.state = State::Authenticated;
        self.events.push_back(C2sEvent::Authenticated(jid));
    }

    fn iq_result(&mut self, req: &Element, payload: Option<Element>) {
        let mut b = ElementBuilder::new("iq", ns::CLIENT)
            .attr_opt("id", req.attr("id"))
            .attr("type", "result");
        if let Some(p) = payload {
            b = b.child(p);
        }
        let el = b.build();
        write_element(&mut self.out, el.root(), &Scope::CLIENT);
    }

    fn iq_error(&mut self, req: &Element, c: StanzaErrorCondition) {
        if let Some(e) = error_reply(req.root(), &StanzaError::new(c)) {
            write_element(&mut self.out, e.root(), &Scope::CLIENT);
        }
    }

    fn on_unbound(&mut self, el: Element) {
        if !el.is("iq", ns::CLIENT) {
            return self.fail(Sec::NotAuthorized);
        }
        if el.attr("type") == Some("set")
            && let Some(bind) = el.get_child("bind", ns::BIND)
        {
            let Some(user) = self.user.clone() else {
                return self.fail(Sec::InternalServerError);
            };
            let requested = bind.get_child("resource", ns::BIND).map(|r| r.text());
            let resource = match requested.filter(|r| !r.trim().is_empty()) {
                Some(r) => r,
                None => {
                    let r = self.random(b"resource");
                    format!(
                        "fedgate-{}",
                        r[..6]
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    )
                }
            };
            let Ok(full) = user.with_resource(&resource) else {
                return self.iq_error(&el, StanzaErrorCondition::BadRequest);
            };
            let jid = ElementBuilder::new("jid", ns::BIND).text(full.to_string());
            self.iq_result(
                &el,
                Some(ElementBuilder::new("bind", ns::BIND).child(jid).build()),
            );
            self.state = State::Bound(full.clone());
            self.events.push_back(C2sEvent::Bound(full));
            return;
        }
        self.on_session_or_refuse(el);
    }

    fn on_session_or_refuse(&mut self, el: Element) {
        if el.is("iq", ns::CLIENT)
            && el.attr("type") == Some("set")
            && el.get_child("session", ns::SESSION).is_some()
        {
            return self.iq_result(&el, None);
        }
        self.iq_error(&el, StanzaErrorCondition::NotAuthorized);
    }

    fn on_bound(&mut self, mut el: Element, jid: FullJid) {
        if !is_stanza(el.root()) || el.ns() != ns::CLIENT {
            return self.fail(Sec::UnsupportedStanzaType);
        }
        if el.is("iq", ns::CLIENT)
            && el.attr("to").is_none()
            && el.attr("type") == Some("set")
            && (el.get_child("session", ns::SESSION).is_some()
                || el.get_child("bind", ns::BIND).is_some())
        {
            if el.get_child("session", ns::SESSION).is_some() {
                return self.iq_result(&el, None);
            }
            return self.iq_error(&el, StanzaErrorCondition::NotAllowed);
        }
        if let Some(to) = el.attr("to")
            && Jid::parse(to).is_err()
        {
            return self.iq_error(&el, StanzaErrorCondition::JidMalformed);
        }
        // RFC 6120 §8.1.2.1: the server stamps `from` with the full JID.
        el.set_attr("from", &jid.to_string());
        self.events.push_back(C2sEvent::Stanza(el));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::{ScramClient, ScramCredentials};

    #[derive(Debug)]
    struct Users;
    impl CredentialVerifier for Users {
        fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredentials> {
            (user == "juliet").then(|| ScramCredentials::derive(hash, "r0m30", b"NaCl", 128))
        }
        fn check_plain(&self, user: &str, password: &str) -> bool {
            user == "juliet" && password == "r0m30"
        }
    }

    fn cfg(require_tls: bool) -> Arc<C2sConfig> {
        Arc::new(C2sConfig {
            domains: vec![DomainPart::new("capulet.test").unwrap()],
            limits: Limits::default(),
            tls_available: true,
            require_tls,
            verifier: Arc::new(Users),
            seed: [3; 32],
            max_auth_failures: 3,
        })
    }

    const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='capulet.test' version='1.0'>";

    fn io(m: &mut C2sIncoming, input: &str) -> String {
        for c in input.as_bytes().chunks(5) {
            m.handle_input(Instant::now(), c);
        }
        String::from_utf8(m.poll_transmit().unwrap_or_default()).unwrap()
    }

    fn tag_text<'a>(s: &'a str, tag: &str) -> &'a str {
        let open = format!("<{tag} xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
        let i = s.find(&open).unwrap() + open.len();
        let j = s[i..].find('<').unwrap();
        &s[i..i + j]
    }

    fn starttls(m: &mut C2sIncoming) {
        let out = io(m, HDR);
        assert!(
            out.contains(
                "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
            ),
            "{out}"
        );
        assert!(
            !out.contains("<mechanisms"),
            "no SASL before TLS when TLS is required"
        );
        let out = io(m, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert_eq!(out, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert_eq!(m.poll_event(), Some(C2sEvent::StartTls));
        m.handle_tls_established(Instant::now());
    }

    fn bind(m: &mut C2sIncoming) {
        let out = io(m, HDR);
        assert!(
            out.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"),
            "{out}"
        );
        let out = io(
            m,
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony</resource></bind></iq>",
        );
        assert_eq!(
            out,
            "<iq id='b1' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet@capulet.test/balcony</jid></bind></iq>"
        );
        let out = io(
            m,
            "<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        );
        assert_eq!(out, "<iq id='s1' type='result'/>");
    }

    #[test]
    fn rfc6120_scram_sha_256_starttls_bind_session() {
        for hash in [ScramHash::Sha256, ScramHash::Sha1] {
            let mut m = C2sIncoming::new(cfg(true), Instant::now());
            starttls(&mut m);
            let out = io(&mut m, HDR);
            assert!(out.contains("<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"));
            let (client, first) = ScramClient::new(hash, "Juliet", "r0m30", "cn0nce");
            let out = io(
                &mut m,
                &format!(
                    "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
                    hash.mechanism(),
                    B64.encode(&first)
                ),
            );
            let server_first =
                String::from_utf8(B64.decode(tag_text(&out, "challenge")).unwrap()).unwrap();
            let (fin, expect_v) = client.respond(&server_first).unwrap();
            let out = io(
                &mut m,
                &format!(
                    "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                    B64.encode(&fin)
                ),
            );
            assert_eq!(
                B64.decode(tag_text(&out, "success")).unwrap(),
                expect_v.as_bytes()
            );
            assert_eq!(
                m.poll_event(),
                Some(C2sEvent::Authenticated(
                    BareJid::parse("juliet@capulet.test").unwrap()
                ))
            );
            bind(&mut m);
            assert_eq!(
                m.poll_event(),
                Some(C2sEvent::Bound(
                    FullJid::parse("juliet@capulet.test/balcony").unwrap()
                ))
            );
            // Stanzas get their `from` stamped, whatever the client wrote.
            io(
                &mut m,
                "<message to='romeo@montague.test' from='evil@x.test' type='chat'><body>hi</body></message>",
            );
            let Some(C2sEvent::Stanza(s)) = m.poll_event() else {
                panic!()
            };
            assert_eq!(s.attr("from"), Some("juliet@capulet.test/balcony"));
        }
    }

    #[test]
    fn plain_only_over_tls_and_failures_are_counted() {
        let mut m = C2sIncoming::new(cfg(false), Instant::now());
        let out = io(&mut m, HDR);
        assert!(out.contains("SCRAM-SHA-256") && !out.contains("PLAIN"));
        let auth = |p: &str| {
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                B64.encode(p)
            )
        };
        let out = io(&mut m, &auth("\0juliet\0r0m30"));
        assert_eq!(
            out,
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><encryption-required/></failure>"
        );
        let out = io(
            &mut m,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NOPE'/>",
        );
        assert!(out.contains("<invalid-mechanism/>"));
        let out = io(
            &mut m,
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>!!!</auth>",
        );
        assert!(
            out.contains("<incorrect-encoding/>") && out.contains("<policy-violation"),
            "{out}"
        );
        assert!(m.is_closed());

        let mut m = C2sIncoming::new(cfg(true), Instant::now());
        starttls(&mut m);
        io(&mut m, HDR);
        let out = io(&mut m, &auth("\0juliet\0wrong"));
        assert!(out.contains("<not-authorized/>"));
        let out = io(&mut m, &auth("\0juliet\0r0m30"));
        assert_eq!(out, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        bind(&mut m);
    }

    #[test]
    fn nothing_before_authentication_and_binding() {
        let mut m = C2sIncoming::new(cfg(false), Instant::now());
        io(&mut m, HDR);
        let out = io(&mut m, "<message to='a@b.test'/>");
        assert!(
            out.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
            "{out}"
        );

        let mut m = C2sIncoming::new(cfg(false), Instant::now());
        let out = io(&mut m, &HDR.replace("capulet.test", "montague.test"));
        assert!(out.contains("<host-unknown"));

        let mut m = C2sIncoming::new(cfg(false), Instant::now());
        let out = io(&mut m, "<!-- no -->");
        assert!(
            out.starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:client'"),
            "{out}"
        );
        assert!(out.contains("<restricted-xml"), "{out}");

        // Authenticated but not bound: stanzas are refused with a stanza error.
        let mut m = C2sIncoming::new(cfg(false), Instant::now());
        io(&mut m, HDR);
        let (c, first) = ScramClient::new(ScramHash::Sha256, "juliet", "r0m30", "n1");
        let out = io(
            &mut m,
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
                B64.encode(&first)
            ),
        );
        let sf = String::from_utf8(B64.decode(tag_text(&out, "challenge")).unwrap()).unwrap();
        let (fin, _) = c.respond(&sf).unwrap();
        io(
            &mut m,
            &format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
                B64.encode(&fin)
            ),
        );
        io(&mut m, HDR);
        let out = io(
            &mut m,
            "<iq type='get' id='q' to='capulet.test'><query xmlns='jabber:iq:roster'/></iq>",
        );
        assert!(
            out.contains("type='error'") && out.contains("<not-authorized"),
            "{out}"
        );
        let out = io(
            &mut m,
            "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        );
        assert!(out.contains("<jid>juliet@capulet.test/fedgate-"), "{out}");
        let out = io(&mut m, "<message to='a@@b'/>");
        assert!(out.contains("<jid-malformed"), "{out}");
    }

    mod robustness {
        use super::*;
        use proptest::prelude::*;

        const PIECES: &[&str] = &[
            HDR,
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj11c2VyLHI9YQ==</auth>",
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMA==</auth>",
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>",
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdzLHI9YSxwPXh4eA==</response>",
            "<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
            "<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
            "<message to='a@b.test'><body>x</body></message>",
            "</stream:stream>",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]
            #[test]
            fn never_panics(ops in proptest::collection::vec((0usize..PIECES.len() + 2, 1usize..9, any::<u8>()), 0..20)) {
                let mut m = C2sIncoming::new(cfg(false), Instant::now());
                for (k, chunk, byte) in ops {
                    let bytes = match k {
                        k if k < PIECES.len() => PIECES[k].as_bytes().to_vec(),
                        k if k == PIECES.len() => vec![byte; chunk],
                        _ => {
                            m.handle_tls_established(Instant::now());
                            continue;
                        }
                    };
                    for c in bytes.chunks(chunk) {
                        m.handle_input(Instant::now(), c);
                    }
                    prop_assert!(m.poll_transmit().map_or(0, |b| b.len()) < 8192);
                    while m.poll_event().is_some() {}
                }
            }
        }
    }
}
