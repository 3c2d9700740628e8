//! RFC 8048 presence notifications: the two syntax tables as data, and the
//! conversions between an XMPP `<presence/>` and a PIDF document they imply.

use super::SyntaxRow;
use crate::pidf::{self, Contact, Document, Priority};
use crate::xmpp::XmppPresence;

const fn row(
    cite: &'static str,
    source: &'static str,
    target: &'static str,
    notes: &'static str,
) -> SyntaxRow {
    SyntaxRow {
        cite,
        source,
        target,
        notes,
    }
}

/// RFC 8048 §7 Table 1: presence syntax mapping from XMPP to SIP ("MUST be as shown").
pub const XMPP_TO_SIP: &[SyntaxRow] = &[
    row(
        "RFC 8048 Table 1 row 1",
        "<presence/> stanza",
        "\"Event: presence\"",
        "1",
    ),
    row(
        "RFC 8048 Table 1 row 2",
        "XMPP resource identifier",
        "tuple 'id' attribute",
        "2",
    ),
    row("RFC 8048 Table 1 row 3", "from", "From", ""),
    row("RFC 8048 Table 1 row 4", "id", "no mapping", "3"),
    row("RFC 8048 Table 1 row 5", "to", "To", ""),
    row("RFC 8048 Table 1 row 6", "type", "basic status", "4,5"),
    row("RFC 8048 Table 1 row 7", "xml:lang", "Content-Language", ""),
    row(
        "RFC 8048 Table 1 row 8",
        "<priority/>",
        "priority for tuple",
        "6",
    ),
    row("RFC 8048 Table 1 row 9", "<show/>", "no mapping", "7"),
    row("RFC 8048 Table 1 row 10", "<status/>", "<note/>", ""),
];

/// RFC 8048 §8 Table 2: presence syntax mapping from SIP to XMPP.
pub const SIP_TO_XMPP: &[SyntaxRow] = &[
    row("RFC 8048 Table 2 row 1", "basic status", "type", "1"),
    row("RFC 8048 Table 2 row 2", "Content-Language", "xml:lang", ""),
    row("RFC 8048 Table 2 row 3", "From", "from", ""),
    row(
        "RFC 8048 Table 2 row 4",
        "priority for tuple",
        "<priority/>",
        "2",
    ),
    row("RFC 8048 Table 2 row 5", "To", "to", ""),
    row("RFC 8048 Table 2 row 6", "<note/>", "<status/>", ""),
    row("RFC 8048 Table 2 row 7", "<show/>", "<show/>", "3"),
];

/// PIDF `<basic>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basic {
    /// `open`.
    Open,
    /// `closed`.
    Closed,
}

/// Table 1 row 6, notes 4-5: no `type` → `open`; `type='unavailable'` → `closed`.
pub const fn basic_for_type(available: bool) -> Basic {
    if available {
        Basic::Open
    } else {
        Basic::Closed
    }
}

/// Table 2 row 1, note 1: `open` → no `type` (available); `closed` → `unavailable`.
pub const fn available_for_basic(basic: Basic) -> bool {
    matches!(basic, Basic::Open)
}

/// Table 1 row 8, note 6: XMPP priority −128..127 → PIDF priority 0..1.
/// Negative priorities MUST NOT be mapped; 0 → 0, 127 → 1, linear in
/// between, truncated to three decimals (1 → 0.007, 2 → 0.015, 126 → 0.992,
/// the note's own examples).
pub fn pidf_priority(xmpp: i8) -> Option<Priority> {
    let p = u32::try_from(xmpp).ok()?;
    Priority::new(u16::try_from(p * 1000 / 127).ok()?)
}

/// Table 2 row 4: PIDF priority → XMPP priority, the inverse of
/// [`pidf_priority`] (rounded up, so every value round-trips).
pub fn xmpp_priority(pidf: Priority) -> i8 {
    let v = (u32::from(pidf.thousandths()) * 127).div_ceil(1000);
    i8::try_from(v).unwrap_or(i8::MAX)
}

/// XMPP → SIP (Table 1): the PIDF document for `<presence/>` from
/// `entity`/`resource`. Resource → tuple id `ID-…` (row 2), type → basic
/// (row 6), priority → contact priority (row 8, `contact` is the SIP contact
/// URI to carry it), show → `<show xmlns='jabber:client'>` in `<status>`
/// (row 9, note 7's recommendation), status → note (row 10).
pub fn xmpp_to_pidf(
    x: &XmppPresence,
    entity: &str,
    resource: Option<&str>,
    contact: Option<&str>,
) -> Document {
    Document {
        entity: entity.to_owned(),
        tuple_id: Some(pidf::tuple_id_for_resource(resource.unwrap_or("fedgate"))),
        contact: contact.map(|uri| Contact {
            uri: uri.to_owned(),
            priority: pidf_priority(x.priority),
        }),
        presence: x.to_presence(),
    }
}

/// SIP → XMPP (Table 2): the `<presence/>` for a PIDF document. Basic → type
/// (row 1), tuple priority → `<priority/>` (row 4), note → `<status/>`
/// (row 6), `<show/>` → `<show/>` (row 7, with RPID read as well).
pub fn pidf_to_xmpp(doc: &Document) -> XmppPresence {
    let priority = doc
        .contact
        .as_ref()
        .and_then(|c| c.priority)
        .map_or(0, xmpp_priority);
    XmppPresence::from_presence(&doc.presence, priority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Availability;
    use crate::stox::lookup;
    use crate::xmpp::Show;

    fn x(available: bool, show: Option<Show>, status: Option<&str>, priority: i8) -> XmppPresence {
        XmppPresence {
            available,
            show,
            status: status.map(str::to_owned),
            priority,
        }
    }

    fn through_pidf(p: &XmppPresence) -> (String, XmppPresence) {
        let doc = xmpp_to_pidf(
            p,
            "pres:juliet@example.com",
            Some("balcony"),
            Some("sip:j@h"),
        );
        let text = pidf::write(&doc);
        let back = pidf::parse(text.as_bytes()).unwrap();
        (text, pidf_to_xmpp(&back))
    }

    // ---- Table 1, one test per row ----
    #[test]
    fn t1_r1_presence_is_event_presence() {
        assert_eq!(
            lookup(XMPP_TO_SIP, "<presence/> stanza").unwrap().target,
            "\"Event: presence\""
        );
    }
    #[test]
    fn t1_r2_resource_is_tuple_id() {
        let doc = xmpp_to_pidf(&x(true, None, None, 0), "pres:a@b", Some("balcony"), None);
        assert_eq!(doc.tuple_id.as_deref(), Some("ID-balcony"));
        assert_eq!(
            lookup(XMPP_TO_SIP, "XMPP resource identifier")
                .unwrap()
                .notes,
            "2"
        );
    }
    #[test]
    fn t1_r3_from() {
        assert_eq!(lookup(XMPP_TO_SIP, "from").unwrap().target, "From");
    }
    #[test]
    fn t1_r4_id_not_mapped() {
        assert_eq!(lookup(XMPP_TO_SIP, "id").unwrap().target, "no mapping");
    }
    #[test]
    fn t1_r5_to() {
        assert_eq!(lookup(XMPP_TO_SIP, "to").unwrap().target, "To");
    }
    #[test]
    fn t1_r6_type_is_basic() {
        assert_eq!(basic_for_type(true), Basic::Open);
        assert_eq!(basic_for_type(false), Basic::Closed);
        let (text, _) = through_pidf(&x(true, None, None, 0));
        assert!(text.contains("<basic>open</basic>"));
        let (text, back) = through_pidf(&x(false, None, None, 0));
        assert!(text.contains("<basic>closed</basic>"));
        assert!(!back.available);
    }
    #[test]
    fn t1_r7_xml_lang() {
        assert_eq!(
            lookup(XMPP_TO_SIP, "xml:lang").unwrap().target,
            "Content-Language"
        );
    }
    #[test]
    fn t1_r8_priority() {
        assert_eq!(pidf_priority(-1), None);
        assert_eq!(pidf_priority(0), Priority::new(0));
        assert_eq!(pidf_priority(1), Priority::new(7));
        assert_eq!(pidf_priority(2), Priority::new(15));
        assert_eq!(pidf_priority(126), Priority::new(992));
        assert_eq!(pidf_priority(127), Priority::new(1000));
        let (text, back) = through_pidf(&x(true, None, None, 64));
        assert!(text.contains("priority=\"0.503\""), "{text}");
        assert_eq!(back.priority, 64);
    }
    #[test]
    fn t1_r9_show_goes_inside_status() {
        let (text, back) = through_pidf(&x(true, Some(Show::Away), None, 0));
        assert!(
            text.contains("<show xmlns=\"jabber:client\">away</show></status>"),
            "{text}"
        );
        assert_eq!(back.show, Some(Show::Away));
        assert_eq!(lookup(XMPP_TO_SIP, "<show/>").unwrap().target, "no mapping");
    }
    #[test]
    fn t1_r10_status_is_note() {
        let (text, back) = through_pidf(&x(true, None, Some("Walking the dog"), 0));
        assert!(text.contains("<note>Walking the dog</note>"));
        assert_eq!(back.status.as_deref(), Some("Walking the dog"));
    }

    // ---- Table 2, one test per row ----
    fn sip(basic: &str, extra: &str) -> XmppPresence {
        let doc = format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:romeo@example.net'><tuple id='ID-x'><status><basic>{basic}</basic>{extra}</status><contact priority='0.5'>sip:r@h</contact></tuple><note>Gone fishing</note></presence>"
        );
        pidf_to_xmpp(&pidf::parse(doc.as_bytes()).unwrap())
    }
    #[test]
    fn t2_r1_basic_is_type() {
        assert!(sip("open", "").available);
        assert!(!sip("closed", "").available);
        assert!(available_for_basic(Basic::Open));
        assert!(!available_for_basic(Basic::Closed));
    }
    #[test]
    fn t2_r2_content_language() {
        assert_eq!(
            lookup(SIP_TO_XMPP, "Content-Language").unwrap().target,
            "xml:lang"
        );
    }
    #[test]
    fn t2_r3_from() {
        assert_eq!(lookup(SIP_TO_XMPP, "From").unwrap().target, "from");
    }
    #[test]
    fn t2_r4_priority() {
        assert_eq!(sip("open", "").priority, 64);
        for p in 0..=127i8 {
            assert_eq!(xmpp_priority(pidf_priority(p).unwrap()), p);
        }
    }
    #[test]
    fn t2_r5_to() {
        assert_eq!(lookup(SIP_TO_XMPP, "To").unwrap().target, "to");
    }
    #[test]
    fn t2_r6_note_is_status() {
        assert_eq!(sip("open", "").status.as_deref(), Some("Gone fishing"));
    }
    #[test]
    fn t2_r7_show_is_show() {
        let p = sip("open", "<show xmlns='jabber:client'>dnd</show>");
        assert_eq!(p.show, Some(Show::Dnd));
        assert_eq!(p.to_presence().availability, Availability::DoNotDisturb);
        assert_eq!(lookup(SIP_TO_XMPP, "<show/>").unwrap().target, "<show/>");
    }

    #[test]
    fn tables_are_complete() {
        assert_eq!(XMPP_TO_SIP.len(), 10);
        assert_eq!(SIP_TO_XMPP.len(), 7);
    }
}
