//! PIDF (RFC 3863) with RPID (RFC 4480) activities, read and written.
//!
//! # What is read
//!
//! * `<presence entity>` (required) in `urn:ietf:params:xml:ns:pidf`.
//! * Every `<tuple>`: `<status><basic>open|closed</basic>`, the RFC 8048 §7
//!   `<show xmlns='jabber:client'>` inside `<status>`, `<contact priority>`.
//! * RPID `<activities>` and `<user-input>` wherever they appear (on `dm:person`
//!   as RFC 4480 says, or inside a tuple as older clients do), in
//!   `urn:ietf:params:xml:ns:pidf:rpid` or the older
//!   `urn:ietf:params:xml:ns:pidf:status:rpid`.
//! * Notes: the first presence-level `<note>`, else the first tuple note,
//!   else the first `dm:note` of a person.
//! * Everything else (data-model devices, CIPID, timestamps, vendor
//!   extensions, `mustUnderstand`) is ignored.
//!
//! # Availability
//!
//! Per open tuple, the first rule that applies: `<fg:state>` (see below);
//! `show dnd` → Busy if RPID says `busy`, else Do Not Disturb; `show xa` →
//! Extended Away; `show away` → Idle if RPID `user-input` is `idle`, else Away;
//! `show chat` → Available; no `<show>`: RPID `busy` → Busy, `away` → Away
//! (Idle with user-input idle), user-input idle → Idle, otherwise Available
//! (an activity such as `vacation` stays an activity). A closed tuple
//! is Offline; several tuples give the most available one; no tuple at all
//! gives Offline unless RPID data is present.
//!
//! Be Right Back has no PIDF/RPID form. Following RFC 8048 §7 ("include both
//! `<show/>` and the custom extension"), it is written as `show away` + RPID
//! `away` plus `<fg:state xmlns:fg='urn:x-fedgate:presence'>be-right-back</fg:state>`
//! inside `<status>`; readers that do not know the extension see Away.

use crate::model::{Activity, Availability, Presence};
use crate::xml::{self, Element, Error, Limits};

/// PIDF namespace.
pub const NS_PIDF: &str = "urn:ietf:params:xml:ns:pidf";
/// RPID namespace (RFC 4480).
pub const NS_RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
/// Pre-RFC RPID namespace still seen in the wild (e.g. Cisco phones).
pub const NS_RPID_OLD: &str = "urn:ietf:params:xml:ns:pidf:status:rpid";
/// PIDF data model namespace (RFC 4479).
pub const NS_DM: &str = "urn:ietf:params:xml:ns:pidf:data-model";
/// The namespace of `<show/>` inside PIDF (RFC 8048 §7).
pub const NS_JABBER_CLIENT: &str = "jabber:client";
/// fedgate's extension namespace for states PIDF cannot express.
pub const NS_FEDGATE: &str = "urn:x-fedgate:presence";

/// A PIDF `<contact priority>`, in thousandths: 0..=1000 (0 to 1, three decimals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(u16);

impl Priority {
    /// `thousandths` must be at most 1000.
    pub const fn new(thousandths: u16) -> Option<Priority> {
        if thousandths <= 1000 {
            Some(Priority(thousandths))
        } else {
            None
        }
    }

    /// The value in thousandths.
    pub const fn thousandths(self) -> u16 {
        self.0
    }

    /// Parse an `xs:decimal` between 0 and 1 with at most three decimals.
    pub fn parse(s: &str) -> Option<Priority> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if (int.is_empty() && frac.is_empty())
            || frac.len() > 3
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || int.len() > 4
        {
            return None;
        }
        let int: u16 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut f: u16 = 0;
        for (i, b) in frac.bytes().enumerate() {
            f += u16::from(b - b'0') * [100, 10, 1][i];
        }
        Priority::new(int.checked_mul(1000)?.checked_add(f)?)
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            1000 => f.write_str("1"),
            0 => f.write_str("0"),
            v => {
                let s = format!("{v:03}");
                write!(f, "0.{}", s.trim_end_matches('0'))
            }
        }
    }
}

/// `<contact>` of the tuple: a URI and its optional priority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The contact URI.
    pub uri: String,
    /// `priority` attribute.
    pub priority: Option<Priority>,
}

/// A PIDF document as this crate reads and writes it: one presentity, with
/// its presence aggregated over tuples.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Document {
    /// `entity` attribute (`pres:` or `sip:` URI).
    pub entity: String,
    /// `id` of the tuple that decided the availability (the first tuple if
    /// all are equal); `None` if the document has no tuple.
    pub tuple_id: Option<String>,
    /// `<contact>` of that tuple.
    pub contact: Option<Contact>,
    /// The canonical presence.
    pub presence: Presence,
}

/// Whether `s` is an `xs:ID` (an XML NCName, checked on its ASCII subset:
/// letter or `_` first, then letters, digits, `-`, `_`, `.`; non-ASCII is
/// accepted).
pub fn is_tuple_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.') || !c.is_ascii())
}

/// A tuple id for an XMPP resource, as RFC 8048 §7 note 2 recommends:
/// `ID-` + the resource, with characters an `xs:ID` cannot hold replaced by `_`.
pub fn tuple_id_for_resource(resource: &str) -> String {
    let mut s = String::from("ID-");
    s.extend(resource.chars().map(|c| {
        if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
            c
        } else {
            '_'
        }
    }));
    s
}

/// Read a PIDF document with the default [`Limits`].
pub fn parse(input: &[u8]) -> Result<Document, Error> {
    parse_with(input, &Limits::DEFAULT)
}

#[derive(Default)]
struct Rpid {
    busy: bool,
    away: bool,
    idle: bool,
    any: bool,
    activity: Option<Activity>,
}

fn is_rpid(ns: &str) -> bool {
    ns == NS_RPID || ns == NS_RPID_OLD
}

fn read_rpid(root: &Element) -> Rpid {
    let mut r = Rpid::default();
    for e in root.descendants() {
        if !is_rpid(&e.ns) {
            continue;
        }
        match e.name.as_str() {
            "activities" => {
                r.any = true;
                for a in e.elements().filter(|a| is_rpid(&a.ns)) {
                    match a.name.as_str() {
                        "busy" => r.busy = true,
                        "away" => r.away = true,
                        "unknown" | "note" => {}
                        name => {
                            let act = if name == "other" {
                                Some(Activity::Other(a.text()))
                            } else {
                                Activity::from_rpid_name(name)
                            };
                            if r.activity.is_none() {
                                r.activity = act;
                            }
                        }
                    }
                }
            }
            "user-input" => {
                r.any = true;
                r.idle = e.text().trim() == "idle";
            }
            _ => {}
        }
    }
    r
}

fn tuple_availability(tuple: &Element, rpid: &Rpid) -> Availability {
    use Availability as A;
    let status = tuple.child(NS_PIDF, "status");
    let child = |ns: &str, name: &str| status.and_then(|s| s.child(ns, name)).map(Element::text);
    if child(NS_PIDF, "basic").is_some_and(|b| b.trim() == "closed") {
        return A::Offline;
    }
    if let Some(fg) = child(NS_FEDGATE, "state")
        && let Some(a) = fedgate_state(fg.trim())
    {
        return a;
    }
    match child(NS_JABBER_CLIENT, "show").as_deref().map(str::trim) {
        Some("dnd") if rpid.busy => A::Busy,
        Some("dnd") => A::DoNotDisturb,
        Some("xa") => A::ExtendedAway,
        Some("away") if rpid.idle => A::Idle,
        Some("away") => A::Away,
        _ if rpid.busy => A::Busy,
        _ if rpid.away && rpid.idle => A::Idle,
        _ if rpid.away => A::Away,
        _ if rpid.idle => A::Idle,
        _ => A::Available,
    }
}

fn fedgate_state(s: &str) -> Option<Availability> {
    Some(match s {
        "be-right-back" => Availability::BeRightBack,
        _ => return None,
    })
}

/// [`parse`] with explicit limits.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<Document, Error> {
    let root = xml::parse(input, limits)?;
    if !root.is(NS_PIDF, "presence") {
        return Err(Error::UnexpectedRoot {
            expected: "{urn:ietf:params:xml:ns:pidf}presence",
            found_ns: root.ns,
            found: root.name,
        });
    }
    let entity = root
        .attr("entity")
        .ok_or(Error::Missing("presence/@entity"))?
        .to_owned();
    let rpid = read_rpid(&root);

    let mut best: Option<(Availability, &Element)> = None;
    for tuple in root.elements().filter(|e| e.is(NS_PIDF, "tuple")) {
        let a = tuple_availability(tuple, &rpid);
        if best.is_none_or(|(b, _)| a < b) {
            best = Some((a, tuple));
        }
    }
    let availability = match best {
        Some((a, _)) => a,
        None if rpid.any => tuple_availability(&root, &rpid),
        None => Availability::Offline,
    };
    let tuple = best.map(|(_, t)| t);
    let tuple_id = match tuple {
        Some(t) => Some(t.attr("id").ok_or(Error::Missing("tuple/@id"))?.to_owned()),
        None => None,
    };
    let contact = match tuple.and_then(|t| t.child(NS_PIDF, "contact")) {
        Some(c) => Some(Contact {
            uri: c.text().trim().to_owned(),
            priority: match c.attr("priority") {
                Some(p) => Some(Priority::parse(p).ok_or_else(|| Error::invalid("priority", p))?),
                None => None,
            },
        }),
        None => None,
    };
    let status = root
        .child(NS_PIDF, "note")
        .or_else(|| tuple.and_then(|t| t.child(NS_PIDF, "note")))
        .or_else(|| {
            root.elements()
                .filter(|e| e.is(NS_DM, "person"))
                .find_map(|p| p.child(NS_DM, "note"))
        })
        .map(Element::text);

    Ok(Document {
        entity,
        tuple_id,
        contact,
        presence: Presence {
            availability,
            activity: rpid.activity,
            status,
        },
    })
}

/// Write `doc` as `application/pidf+xml`.
///
/// One tuple (id `doc.tuple_id`, or `ID-fedgate`; an id that is not an
/// `xs:ID` is given an `ID-` prefix and cleaned), a presence-level `<note>`
/// for the status text, and a `dm:person` with RPID activities and user-input
/// when the presence needs them.
pub fn write(doc: &Document) -> String {
    use Availability as A;
    let p = &doc.presence;
    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    out.push_str("<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"");
    xml::escape_attr(&mut out, &doc.entity);
    out.push_str("\"><tuple id=\"");
    let id = doc.tuple_id.as_deref().unwrap_or("ID-fedgate");
    if is_tuple_id(id) {
        xml::escape_attr(&mut out, id);
    } else {
        xml::escape_attr(&mut out, &tuple_id_for_resource(id));
    }
    out.push_str("\"><status><basic>");
    out.push_str(if p.availability == A::Offline {
        "closed"
    } else {
        "open"
    });
    out.push_str("</basic>");
    let show = match p.availability {
        A::Available | A::Offline => None,
        A::Idle | A::BeRightBack | A::Away => Some("away"),
        A::ExtendedAway => Some("xa"),
        A::Busy | A::DoNotDisturb => Some("dnd"),
    };
    if let Some(show) = show {
        out.push_str("<show xmlns=\"jabber:client\">");
        out.push_str(show);
        out.push_str("</show>");
    }
    if p.availability == A::BeRightBack {
        out.push_str("<fg:state xmlns:fg=\"urn:x-fedgate:presence\">be-right-back</fg:state>");
    }
    out.push_str("</status>");
    if let Some(c) = &doc.contact {
        out.push_str("<contact");
        if let Some(prio) = c.priority {
            out.push_str(" priority=\"");
            out.push_str(&prio.to_string());
            out.push('"');
        }
        out.push('>');
        xml::escape_text(&mut out, &c.uri);
        out.push_str("</contact>");
    }
    out.push_str("</tuple>");
    if let Some(s) = &p.status {
        out.push_str("<note>");
        xml::escape_text(&mut out, s);
        out.push_str("</note>");
    }
    let state_activity = match p.availability {
        A::Busy => Some("busy"),
        A::Away | A::ExtendedAway | A::BeRightBack => Some("away"),
        _ => None,
    };
    let idle = p.availability == A::Idle;
    if state_activity.is_some() || p.activity.is_some() || idle {
        out.push_str("<dm:person id=\"p\">");
        if state_activity.is_some() || p.activity.is_some() {
            out.push_str("<rpid:activities>");
            if let Some(a) = state_activity {
                out.push_str("<rpid:");
                out.push_str(a);
                out.push_str("/>");
            }
            match &p.activity {
                Some(Activity::Other(t)) => {
                    out.push_str("<rpid:other>");
                    xml::escape_text(&mut out, t);
                    out.push_str("</rpid:other>");
                }
                Some(a) => match a.rpid_name() {
                    Some(n) => {
                        out.push_str("<rpid:");
                        out.push_str(n);
                        out.push_str("/>");
                    }
                    // Microsoft-only activities travel as free text.
                    None => {
                        out.push_str("<rpid:other>");
                        xml::escape_text(&mut out, a.text());
                        out.push_str("</rpid:other>");
                    }
                },
                None => {}
            }
            out.push_str("</rpid:activities>");
        }
        if idle {
            out.push_str("<rpid:user-input>idle</rpid:user-input>");
        }
        out.push_str("</dm:person>");
    }
    out.push_str("</presence>");
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_rfc8048_example() {
        let doc =
            br#"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:romeo@example.net'>
  <tuple id='ID-dr4hcr0st3lup4c'>
    <status>
      <basic>open</basic>
      <show xmlns='jabber:client'>away</show>
    </status>
  </tuple>
  <note xml:lang='en'>Walking the dog</note>
</presence>"#;
        let d = parse(doc).unwrap();
        assert_eq!(d.entity, "pres:romeo@example.net");
        assert_eq!(d.tuple_id.as_deref(), Some("ID-dr4hcr0st3lup4c"));
        assert_eq!(d.presence.availability, Availability::Away);
        assert_eq!(d.presence.status.as_deref(), Some("Walking the dog"));
    }

    #[test]
    fn reads_rfc4480_person_activities_and_unknown_extensions() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    xmlns:x="urn:example:vendor"
    entity="sip:alice@example.com">
  <tuple id="t1"><status><basic>open</basic><x:foo mustUnderstand="false">?</x:foo></status>
    <contact priority="0.8">sip:alice@pc.example.com</contact><timestamp>2005-01-01T00:00:00Z</timestamp></tuple>
  <x:bar><x:baz/></x:bar>
  <dm:person id="p1"><rpid:activities><rpid:on-the-phone/><rpid:busy/></rpid:activities>
    <rpid:mood><rpid:happy/></rpid:mood><dm:note>Call me later</dm:note></dm:person>
  <dm:device id="d1"><dm:deviceID>mac:1</dm:deviceID></dm:device>
</presence>"#;
        let d = parse(doc).unwrap();
        assert_eq!(d.presence.availability, Availability::Busy);
        assert_eq!(d.presence.activity, Some(Activity::OnThePhone));
        assert_eq!(d.presence.status.as_deref(), Some("Call me later"));
        assert_eq!(
            d.contact,
            Some(Contact {
                uri: "sip:alice@pc.example.com".into(),
                priority: Priority::new(800)
            })
        );
    }

    #[test]
    fn aggregates_tuples_and_reads_old_rpid_namespace() {
        let doc = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:e="urn:ietf:params:xml:ns:pidf:status:rpid" entity="sip:b@x">
  <tuple id="a"><status><basic>closed</basic></status></tuple>
  <tuple id="b"><status><basic>open</basic><e:activities><e:away/></e:activities></status></tuple>
</presence>"#;
        let d = parse(doc).unwrap();
        assert_eq!(d.presence.availability, Availability::Away);
        assert_eq!(d.tuple_id.as_deref(), Some("b"));
        let closed = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:b@x"><tuple id="a"><status><basic>closed</basic></status></tuple></presence>"#;
        assert_eq!(
            parse(closed).unwrap().presence.availability,
            Availability::Offline
        );
        let empty = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:b@x"/>"#;
        assert_eq!(
            parse(empty).unwrap().presence.availability,
            Availability::Offline
        );
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            parse(br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"/>"#),
            Err(Error::Missing(_))
        ));
        assert!(matches!(
            parse(br#"<presence entity="x"/>"#),
            Err(Error::UnexpectedRoot { .. })
        ));
        assert!(matches!(
            parse(br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"><tuple id="t"><status/><contact priority="2">u</contact></tuple></presence>"#),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn priority_text() {
        for (s, v) in [
            ("0", 0),
            ("1", 1000),
            ("0.5", 500),
            ("0.007", 7),
            (".25", 250),
            ("1.000", 1000),
        ] {
            assert_eq!(Priority::parse(s), Priority::new(v), "{s}");
        }
        for s in ["", ".", "1.5", "2", "0.0001", "-0.1", "a"] {
            assert_eq!(Priority::parse(s), None, "{s}");
        }
        assert_eq!(Priority(7).to_string(), "0.007");
        assert_eq!(Priority(500).to_string(), "0.5");
    }

    #[test]
    fn tuple_ids() {
        assert!(is_tuple_id("ID-x.y_z"));
        assert!(!is_tuple_id("1abc"));
        assert!(!is_tuple_id(""));
        assert_eq!(tuple_id_for_resource("my phone/1"), "ID-my_phone_1");
        assert!(is_tuple_id(&tuple_id_for_resource("9 lives")));
    }

    pub(crate) fn any_activity() -> impl Strategy<Value = Activity> {
        prop_oneof![
            proptest::sample::select(vec![
                Activity::Meeting,
                Activity::OnThePhone,
                Activity::Vacation,
                Activity::Appointment,
                Activity::Travel,
                Activity::Worship,
            ]),
            "[a-zA-Z][a-zA-Z ]{0,15}".prop_map(Activity::Other),
        ]
    }

    pub(crate) fn any_text() -> impl Strategy<Value = String> {
        "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{fffe}\u{ffff}]{0,24}"
    }

    fn any_document() -> impl Strategy<Value = Document> {
        (
            "(sip|pres):[a-z0-9.&'<>\"]{1,12}@example\\.com",
            proptest::option::of("[A-Za-z_][A-Za-z0-9._-]{0,10}"),
            proptest::option::of(("sip:[a-z]{1,8}@h", proptest::option::of(0u16..=1000))),
            proptest::sample::select(Availability::ALL.to_vec()),
            proptest::option::of(any_activity()),
            proptest::option::of(any_text()),
        )
            .prop_map(
                |(entity, tuple_id, contact, availability, activity, status)| Document {
                    entity,
                    tuple_id: Some(tuple_id.unwrap_or_else(|| "ID-fedgate".into())),
                    contact: contact.map(|(uri, p)| Contact {
                        uri,
                        priority: p.and_then(Priority::new),
                    }),
                    presence: Presence {
                        availability,
                        activity,
                        status,
                    },
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn round_trip(d in any_document()) {
            prop_assert_eq!(parse(write(&d).as_bytes()).unwrap(), d);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
