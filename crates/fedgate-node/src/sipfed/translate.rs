//! The pure half of the SIP gateway: addresses (SIP URI ⇄ JID with XEP-0106, RFC 7247
//! §5), presence documents (PIDF / Microsoft categories ⇄ `<presence/>` through Tables
//! 1–3) and errors (RFC 7247 §6 both ways). No I/O, no state; unit-tested here.

use bytes::Bytes;
use fedgate_presence::stox::address::{jid_to_sip, sip_to_jid};
use fedgate_presence::stox::errors::{ErrorContext, sip_code, xmpp_condition};
use fedgate_presence::{Availability, Family, Presence, msrtc, pidf, tables, xmpp as pxmpp};
use fedgate_sip::Address;
use fedgate_xmpp::stanza::{StanzaError, StanzaErrorCondition as Cond, error_reply};
use fedgate_xmpp::{BareJid, Element, ElementBuilder, ns};

use crate::core::{JABBER_STATE_NS, client_family};

/// `application/pidf+xml`.
pub const PIDF: &str = "application/pidf+xml";
/// Microsoft's `application/msrtc-event-categories+xml`.
pub const MSRTC: &str = "application/msrtc-event-categories+xml";
/// Microsoft's legacy `text/xml+msrtc.pidf` (read only).
pub const MSRTC_LEGACY: &str = "text/xml+msrtc.pidf";

/// The document format a watcher gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    /// RFC 3863 PIDF.
    Pidf,
    /// Microsoft categories (`msrtc-event-categories`).
    Msrtc,
}

impl DocFormat {
    /// From the SUBSCRIBE's Accept types (in order, lowercased, without parameters):
    /// Microsoft's categories when listed before PIDF (or PIDF is not listed at all);
    /// PIDF otherwise, and when there is no Accept (RFC 3856 §6.7).
    pub fn from_accept(accept: &[String]) -> DocFormat {
        for t in accept {
            match t.as_str() {
                PIDF => return DocFormat::Pidf,
                MSRTC => return DocFormat::Msrtc,
                _ => {}
            }
        }
        DocFormat::Pidf
    }

    /// Its Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            DocFormat::Pidf => PIDF,
            DocFormat::Msrtc => MSRTC,
        }
    }
}

/// A SIP address as a bare JID (`sip:o'malley@lync.test` → `o\27malley@lync.test`);
/// `None` for a URI that has no JID (no user part, `sips:`, `tel:`, bad escapes).
pub fn jid_of(a: &Address) -> Option<BareJid> {
    let uri = String::from_utf8(a.uri.to_vec()).ok()?;
    let j = sip_to_jid(&uri).ok()?;
    BareJid::parse(&format!("{}@{}", j.local, j.domain)).ok()
}

/// A bare JID as a SIP address (`<sip:user@domain>`).
pub fn address_of(jid: &BareJid) -> Option<Address> {
    let uri = jid_to_sip(&jid.to_string()).ok()?;
    fedgate_sip_txn::ua::address(&format!("<{uri}>")).ok()
}

/// A bare JID as a SIP URI string (the PIDF `entity`).
pub fn sip_uri_of(jid: &BareJid) -> String {
    jid_to_sip(&jid.to_string()).unwrap_or_else(|_| format!("sip:{jid}"))
}

/// Reads a NOTIFY body (PIDF, Microsoft categories or the legacy Microsoft PIDF) as a
/// canonical presence of the Lync family. `None`: empty, unknown type, unreadable, or a
/// categories document without availability (a partial update with nothing to show).
pub fn read_notify(content_type: Option<&[u8]>, body: &[u8]) -> Option<Presence> {
    if body.is_empty() {
        return None;
    }
    let ct = content_type.map(|c| {
        String::from_utf8_lossy(c)
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })?;
    let r = match ct.as_str() {
        PIDF => pidf::parse(body).map(|d| Some(d.presence)),
        MSRTC => msrtc::parse(body).map(|c| c.presence()),
        MSRTC_LEGACY => msrtc::parse_legacy(body).map(|l| Some(l.presence())),
        other => {
            tracing::debug!(
                content_type = other,
                "sip gateway: NOTIFY body type not read"
            );
            return None;
        }
    };
    match r {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "sip gateway: unreadable NOTIFY body");
            None
        }
    }
}

/// Maps a presence from family `from` to family `to` by the tables (status text as the
/// tables say). Pairs without a table keep the state and drop the text.
pub fn map(p: &Presence, from: Family, to: Family) -> Presence {
    match tables::map(from, to, p.availability, p.effective_status()) {
        Some(m) => Presence {
            availability: m.availability,
            activity: None,
            status: m.status.map(str::to_owned),
        },
        None => Presence::new(p.availability),
    }
}

/// A Lync user's presence (Table 1 to `local`) as the `<presence/>` from `remote` to
/// `local_user`: `unavailable` for Offline, else `<show/>` and `<status/>`.
pub fn presence_stanza(
    p: &Presence,
    local_family: Family,
    remote: &BareJid,
    local_user: &BareJid,
) -> Element {
    let m = map(p, Family::Lync, local_family);
    let x = pxmpp::XmppPresence::from_presence(&m, 0);
    let mut b = ElementBuilder::new("presence", ns::CLIENT)
        .attr("from", remote.to_string())
        .attr("to", local_user.to_string());
    if !x.available {
        b = b.attr("type", "unavailable");
    }
    if let Some(show) = x.show {
        b.push_child(ElementBuilder::new("show", ns::CLIENT).text(show.as_str()));
    }
    if let Some(status) = x.status {
        b.push_child(ElementBuilder::new("status", ns::CLIENT).text(status));
    }
    b.build()
}

/// A local client's `<presence/>` (available or `unavailable`) in canonical form, with
/// the client's family ([`client_family`]: `jabber` when it carries the
/// [`JABBER_STATE_NS`] `<state/>` element, whose `busy`/`idle` is then the
/// availability; `xmpp-local` otherwise); `None` when it cannot be read.
pub fn local_presence(el: &Element) -> Option<(Family, Presence)> {
    let family = client_family(el);
    if el.attr("type") == Some("unavailable") {
        return Some((family, Presence::new(Availability::Offline)));
    }
    let mut p = match pxmpp::parse(el.to_xml().as_bytes()) {
        Ok(p) => p.to_presence(),
        Err(e) => {
            tracing::debug!(error = %e, "sip gateway: local presence not readable");
            return None;
        }
    };
    if family == Family::Jabber
        && let Some(state) = el.get_child("state", JABBER_STATE_NS)
    {
        match state.text().trim() {
            "busy" => p.availability = Availability::Busy,
            "idle" => p.availability = Availability::Idle,
            _ => {}
        }
    }
    Some((family, p))
}

/// The NOTIFY body for a watcher: `p` (the local user's presence, family
/// `local_family`) mapped to Lync (Table 3 for `xmpp-local`, Table 2 for `jabber`), in
/// `format`, for the presentity `entity` (a SIP URI).
pub fn notify_body(
    p: &Presence,
    local_family: Family,
    format: DocFormat,
    entity: &str,
) -> (&'static str, Bytes) {
    let m = map(p, local_family, Family::Lync);
    let text = match format {
        DocFormat::Pidf => pidf::write(&pidf::Document {
            entity: entity.to_owned(),
            tuple_id: None,
            contact: None,
            presence: m,
        }),
        DocFormat::Msrtc => msrtc::write(&msrtc::Categories::from_presence(
            Some(entity.to_owned()),
            &m,
        )),
    };
    (format.content_type(), Bytes::from(text))
}

/// The stanza error condition for a SIP final status (RFC 7247 §6.2), e.g. 404 →
/// `item-not-found`, 480 → `recipient-unavailable`, 403 → `forbidden`, 408 →
/// `remote-server-timeout`.
pub fn condition_for_status(status: u16) -> Cond {
    xmpp_condition(status)
        .and_then(|c| Cond::from_name(c.name()))
        .unwrap_or(Cond::RecipientUnavailable)
}

/// The SIP status for a stanza error condition (RFC 7247 §6.1); `full_jid`: the
/// addressee was a full JID (a SIP request to one endpoint), which picks 404 over 604
/// for `item-not-found`.
pub fn status_for_condition(c: Cond, full_jid: bool) -> u16 {
    let ctx = ErrorContext {
        full_jid,
        ..ErrorContext::default()
    };
    fedgate_presence::stox::errors::Condition::from_name(c.as_str())
        .map(|c| sip_code(c, ctx))
        .unwrap_or(500)
}

/// The error answer to a local stanza (`jabber:client`, from the local user), with
/// `cond` and optional text; `None` for an error stanza.
pub fn bounce(el: &Element, cond: Cond, text: Option<&str>) -> Option<Element> {
    let mut e = StanzaError::new(cond);
    e.text = text.map(str::to_owned);
    error_reply(el.root(), &e)
}

/// A `<message type='chat'/>` from `remote` to `local_user`.
pub fn chat(remote: &BareJid, local_user: &BareJid, body: &str) -> Element {
    ElementBuilder::new("message", ns::CLIENT)
        .attr("from", remote.to_string())
        .attr("to", local_user.to_string())
        .attr("type", "chat")
        .child(ElementBuilder::new("body", ns::CLIENT).text(body.to_owned()))
        .build()
}

/// XEP-0085 chat state from a typing indication.
pub fn chat_state(remote: &BareJid, local_user: &BareJid, active: bool) -> Element {
    let state = if active { "composing" } else { "paused" };
    ElementBuilder::new("message", ns::CLIENT)
        .attr("from", remote.to_string())
        .attr("to", local_user.to_string())
        .attr("type", "chat")
        .child(ElementBuilder::new(state, "http://jabber.org/protocol/chatstates").build())
        .build()
}

/// The typing state of a XEP-0085 chat state in a message: `composing` → `Some(true)`
/// (RFC 3994 `active`); `paused`, `active`, `inactive`, `gone` → `Some(false)`
/// (`idle`); no chat state → `None`.
pub fn typing_of(el: &Element) -> Option<bool> {
    const NS: &str = "http://jabber.org/protocol/chatstates";
    if el.get_child("composing", NS).is_some() {
        return Some(true);
    }
    ["paused", "active", "inactive", "gone"]
        .iter()
        .any(|s| el.get_child(s, NS).is_some())
        .then_some(false)
}

/// A presence stanza of `kind` (`subscribe`, `subscribed`, `unsubscribed`, …) from
/// `from` to `to`.
pub fn presence_of_type(kind: &str, from: &BareJid, to: &BareJid) -> Element {
    ElementBuilder::new("presence", ns::CLIENT)
        .attr("from", from.to_string())
        .attr("to", to.to_string())
        .attr("type", kind)
        .build()
}

/// A presence error from `remote` to `local_user` (a subscription that failed).
pub fn presence_error(remote: &BareJid, local_user: &BareJid, cond: Cond) -> Element {
    ElementBuilder::new("presence", ns::CLIENT)
        .attr("from", remote.to_string())
        .attr("to", local_user.to_string())
        .attr("type", "error")
        .child(StanzaError::new(cond).to_element(ns::CLIENT))
        .build()
}

/// The text of a MESSAGE body: `text/plain` as is; `text/html` with its tags removed;
/// other types (`im-iscomposing`, `ms-imdn`, …): `None`. Trailing line ends (which
/// some agents add to every body) are dropped.
pub fn message_text(content_type: &[u8], body: &[u8]) -> Option<String> {
    let ct = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    let ct = ct.split(';').next().unwrap_or("").trim().to_owned();
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end_matches(['\r', '\n']);
    match ct.as_str() {
        "text/plain" | "" => Some(text.to_owned()),
        "text/html" => {
            let mut out = String::with_capacity(text.len());
            let mut in_tag = false;
            for c in text.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => out.push(c),
                    _ => {}
                }
            }
            Some(
                out.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&"),
            )
        }
        _ => None,
    }
}

/// Why a local message cannot go to a SIP contact: group chat (a `groupchat` message or
/// a XEP-0249 / XEP-0045 invitation to a room). The seed: no three-way session with a
/// SIP contact.
pub fn is_group_chat(el: &Element) -> bool {
    el.attr("type") == Some("groupchat")
        || el.get_child("x", "jabber:x:conference").is_some()
        || el
            .get_child("x", "http://jabber.org/protocol/muc#user")
            .is_some()
}

/// The body of a local message, if any.
pub fn body_of(el: &Element) -> Option<String> {
    el.get_child("body", ns::CLIENT).map(|b| b.text())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::core::util::parse_stanza;

    fn j(s: &str) -> BareJid {
        BareJid::parse(s).unwrap()
    }

    fn msrtc_doc(code: u32) -> Vec<u8> {
        format!(
            r#"<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:bob@lync.test">
<category name="state"><state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="aggregateState"><availability>{code}</availability><activity token="in-a-meeting"/></state></category>
<category name="note"><note xmlns="http://schemas.microsoft.com/2006/09/sip/note"><body type="personal">Budget review</body></note></category></categories>"#
        )
        .into_bytes()
    }

    fn show_status(el: &Element) -> (Option<&str>, Option<String>, Option<String>) {
        (
            el.attr("type"),
            el.get_child("show", ns::CLIENT).map(|c| c.text()),
            el.get_child("status", ns::CLIENT).map(|c| c.text()),
        )
    }

    #[test]
    fn addresses_both_ways_with_xep0106() {
        let a = fedgate_sip_txn::ua::address("<sip:o'malley@Lync.Test>;tag=x").unwrap();
        assert_eq!(jid_of(&a).unwrap().to_string(), "o\\27malley@lync.test");
        let back = address_of(&j("o\\27malley@lync.test")).unwrap();
        assert_eq!(
            String::from_utf8(back.uri.to_vec()).unwrap(),
            "sip:o'malley@lync.test"
        );
        let no_user = fedgate_sip_txn::ua::address("<sip:lync.test>").unwrap();
        assert!(jid_of(&no_user).is_none());
        assert_eq!(
            sip_uri_of(&j("juliet@fedgate-a.test")),
            "sip:juliet@fedgate-a.test"
        );
    }

    #[test]
    fn accept_picks_the_format() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(DocFormat::from_accept(&[]), DocFormat::Pidf);
        // Lync's usual Accept: xpidf, legacy msrtc pidf, PIDF → PIDF.
        assert_eq!(
            DocFormat::from_accept(&v(&[
                "application/xpidf+xml",
                "text/xml+msrtc.pidf",
                "application/pidf+xml"
            ])),
            DocFormat::Pidf
        );
        assert_eq!(DocFormat::from_accept(&v(&[MSRTC, PIDF])), DocFormat::Msrtc);
        assert_eq!(DocFormat::from_accept(&v(&[PIDF, MSRTC])), DocFormat::Pidf);
        assert_eq!(DocFormat::from_accept(&v(&[MSRTC])), DocFormat::Msrtc);
    }

    /// Table 1: 6500 (Busy) → Away "Busy"; 9500 (DND) → Away "Busy"; 15500 → Away;
    /// 18500 → unavailable; 3500 → available.
    #[test]
    fn table1_msrtc_to_xmpp_local() {
        let (bob, juliet) = (j("bob@lync.test"), j("juliet@fedgate-a.test"));
        let ct = Some(MSRTC.as_bytes());
        let cases = [
            (6500, (None, Some("away"), Some("Busy"))),
            (9500, (None, Some("away"), Some("Busy"))),
            (12500, (None, Some("away"), None)),
            (15500, (None, Some("away"), None)),
            (18500, (Some("unavailable"), None, None)),
            (3500, (None, None, None)),
        ];
        for (code, want) in cases {
            let p = read_notify(ct, &msrtc_doc(code)).unwrap();
            let el = presence_stanza(&p, Family::XmppLocal, &bob, &juliet);
            let got = show_status(&el);
            assert_eq!(
                (got.0, got.1.as_deref(), got.2.as_deref()),
                want,
                "availability {code}"
            );
            assert_eq!(el.attr("from"), Some("bob@lync.test"));
            assert_eq!(el.attr("to"), Some("juliet@fedgate-a.test"));
        }
        // Jabber clients show Busy (Table 1, third column): dnd, no "Busy" rewrite to away.
        let p = read_notify(ct, &msrtc_doc(6500)).unwrap();
        let el = presence_stanza(&p, Family::Jabber, &bob, &juliet);
        assert_ne!(show_status(&el).1.as_deref(), Some("away"));
    }

    #[test]
    fn pidf_notify_read_and_unknown_types_ignored() {
        let doc = pidf::write(&pidf::Document {
            entity: "sip:bob@lync.test".into(),
            tuple_id: None,
            contact: None,
            presence: Presence::new(Availability::Away),
        });
        let p = read_notify(Some(b"application/pidf+xml; charset=UTF-8"), doc.as_bytes()).unwrap();
        assert_eq!(p.availability, Availability::Away);
        assert!(read_notify(Some(b"application/rlmi+xml"), b"<x/>").is_none());
        assert!(read_notify(Some(PIDF.as_bytes()), b"").is_none());
        assert!(read_notify(Some(PIDF.as_bytes()), b"<not-pidf").is_none());
        assert!(read_notify(None, b"<x/>").is_none());
    }

    /// Table 3 (xmpp-local → Lync): dnd → Busy, xa → Away, away → Away, available →
    /// Available, unavailable → Offline; in PIDF and in Microsoft's format.
    #[test]
    fn table3_local_to_lync_documents() {
        let pres = |x: &str| parse_stanza(x).unwrap();
        let cases = [
            (
                "<presence xmlns='jabber:client'><show>dnd</show></presence>",
                6500,
                "open",
            ),
            (
                "<presence xmlns='jabber:client'><show>xa</show></presence>",
                15500,
                "open",
            ),
            (
                "<presence xmlns='jabber:client'><show>away</show></presence>",
                15500,
                "open",
            ),
            ("<presence xmlns='jabber:client'/>", 3500, "open"),
            (
                "<presence xmlns='jabber:client' type='unavailable'/>",
                18500,
                "closed",
            ),
        ];
        for (x, code, basic) in cases {
            let (family, p) = local_presence(&pres(x)).unwrap();
            assert_eq!(family, Family::XmppLocal);
            let (ct, body) = notify_body(&p, family, DocFormat::Msrtc, "sip:j@a.test");
            assert_eq!(ct, MSRTC);
            let c = msrtc::parse(&body).unwrap();
            assert_eq!(c.availability, Some(code), "{x}");
            let (ct, body) = notify_body(&p, Family::XmppLocal, DocFormat::Pidf, "sip:j@a.test");
            assert_eq!(ct, PIDF);
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(
                text.contains(&format!("<basic>{basic}</basic>")),
                "{x}: {text}"
            );
            assert!(text.contains("entity=\"sip:j@a.test\""));
        }
        // Table 3 row 4 in PIDF: dnd reads back as Busy.
        let (_, p) = local_presence(&pres(
            "<presence xmlns='jabber:client'><show>dnd</show></presence>",
        ))
        .unwrap();
        let (_, body) = notify_body(&p, Family::XmppLocal, DocFormat::Pidf, "sip:j@a.test");
        assert_eq!(
            pidf::parse(&body).unwrap().presence.availability,
            Availability::Busy
        );
        // Table 2: a Jabber-style client's Busy (announced with the state element) is
        // Busy for Lync.
        let (family, p) = local_presence(&pres(&format!(
            "<presence xmlns='jabber:client'><show>dnd</show><state xmlns='{JABBER_STATE_NS}'>busy</state></presence>"
        )))
        .unwrap();
        assert_eq!(
            (family, p.availability),
            (Family::Jabber, Availability::Busy)
        );
        let (_, body) = notify_body(&p, family, DocFormat::Msrtc, "sip:j@a.test");
        assert_eq!(msrtc::parse(&body).unwrap().availability, Some(6500));
    }

    #[test]
    fn rfc7247_errors_both_ways() {
        assert_eq!(condition_for_status(404), Cond::ItemNotFound);
        assert_eq!(condition_for_status(480), Cond::RecipientUnavailable);
        assert_eq!(condition_for_status(403), Cond::Forbidden);
        assert_eq!(condition_for_status(408), Cond::RemoteServerTimeout);
        assert_eq!(status_for_condition(Cond::ItemNotFound, true), 404);
        assert_eq!(status_for_condition(Cond::ItemNotFound, false), 604);
        assert_eq!(status_for_condition(Cond::Forbidden, true), 403);
        assert_eq!(status_for_condition(Cond::RecipientUnavailable, true), 480);
    }

    #[test]
    fn bounces_swap_addresses_and_group_chat_is_recognised() {
        let m = parse_stanza(
            "<message xmlns='jabber:client' from='juliet@fedgate-a.test/r' to='bob@lync.test' type='groupchat' id='m1'><body>hi</body></message>",
        )
        .unwrap();
        assert!(is_group_chat(&m));
        let b = bounce(&m, Cond::FeatureNotImplemented, Some("no group chat")).unwrap();
        assert_eq!(b.attr("to"), Some("juliet@fedgate-a.test/r"));
        assert_eq!(b.attr("from"), Some("bob@lync.test"));
        assert_eq!(b.attr("type"), Some("error"));
        let invite = parse_stanza(
            "<message xmlns='jabber:client' from='juliet@fedgate-a.test/r' to='bob@lync.test'><x xmlns='jabber:x:conference' jid='room@muc.fedgate-a.test'/></message>",
        )
        .unwrap();
        assert!(is_group_chat(&invite));
        let chat = parse_stanza(
            "<message xmlns='jabber:client' from='juliet@fedgate-a.test/r' to='bob@lync.test' type='chat'><body>hi</body></message>",
        )
        .unwrap();
        assert!(!is_group_chat(&chat));
        assert_eq!(body_of(&chat).as_deref(), Some("hi"));
    }

    #[test]
    fn xep0085_chat_states_to_typing_and_back() {
        let st = |inner: &str| {
            parse_stanza(&format!(
                "<message xmlns='jabber:client' from='juliet@fedgate-a.test/r' to='bob@lync.test' type='chat'>{inner}</message>"
            ))
            .unwrap()
        };
        let ns = "xmlns='http://jabber.org/protocol/chatstates'";
        assert_eq!(typing_of(&st(&format!("<composing {ns}/>"))), Some(true));
        assert_eq!(typing_of(&st(&format!("<paused {ns}/>"))), Some(false));
        assert_eq!(typing_of(&st(&format!("<active {ns}/>"))), Some(false));
        assert_eq!(typing_of(&st("<composing/>")), None, "wrong namespace");
        assert_eq!(typing_of(&st("<body>hi</body>")), None);
        let back = chat_state(&j("bob@lync.test"), &j("juliet@fedgate-a.test"), true);
        assert_eq!(typing_of(&back), Some(true));
        let back = chat_state(&j("bob@lync.test"), &j("juliet@fedgate-a.test"), false);
        assert_eq!(typing_of(&back), Some(false));
    }

    #[test]
    fn message_bodies() {
        assert_eq!(
            message_text(b"text/plain; charset=UTF-8", "Grüße\r\n".as_bytes()).as_deref(),
            Some("Grüße")
        );
        assert_eq!(
            message_text(b"text/html", b"<b>bold</b> &amp; more").as_deref(),
            Some("bold & more")
        );
        assert!(message_text(b"application/im-iscomposing+xml", b"<x/>").is_none());
    }
}
