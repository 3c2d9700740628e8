//! Microsoft enhanced presence: the availability number, activity and note
//! of `application/msrtc-event-categories+xml` documents as Lync / Skype for
//! Business send them ([MS-PRES]; Lync 2010/2013 schema "state availability
//! element"), read and written.
//!
//! # Availability numbers
//!
//! | read range | [`Band`] | canonical | written |
//! |---|---|---|---|
//! | below 3000 | Offline (unset / invalid) | Offline | – |
//! | 3000–4499 | Available | Available | 3500 |
//! | 4500–5999 | Idle (Available-Idle) | Idle | – |
//! | 6000–7499 | Busy | Busy | 6500 |
//! | 7500–8999 | Busy-Idle | Busy | – |
//! | 9000–11999 | Do Not Disturb | Do Not Disturb | 9500 |
//! | 12000–14999 | Be Right Back | Be Right Back | 12500 |
//! | 15000–17999 | Away | Away | 15500 |
//! | 18000 and up | Offline | Offline | 18500 |
//!
//! Idle and Extended Away have no user state Lync can be sent ("idle states
//! are machine state and can not be published as user state"); they are
//! written as Away (15500).
//!
//! # Document
//!
//! Read: `<categories>` (namespace `…/2006/09/sip/categories`) with
//! `<category name="state">` holding `<state xsi:type=…>` (the
//! `aggregateState` wins, then `userState`, `machineState`, others), whose
//! `<availability>` and `<activity token>` / `<activity><custom>` are taken,
//! and `<category name="note">` whose `<note><body type="personal">` (else the
//! first body) is the status text. Other categories (contactCard, calendarData,
//! services, …) and unknown elements are ignored. A bare `<state>` root is
//! accepted too.
//!
//! The legacy `text/xml+msrtc.pidf` `<presentity>` document (OCS 2005 style)
//! is read by [`parse_legacy`] (read only).

use crate::model::{Activity, Availability, Presence};
use crate::xml::{self, Element, Error, Limits};

/// Namespace of `<categories>`.
pub const NS_CATEGORIES: &str = "http://schemas.microsoft.com/2006/09/sip/categories";
/// Namespace of `<state>`.
pub const NS_STATE: &str = "http://schemas.microsoft.com/2006/09/sip/state";
/// Namespace of `<note>`.
pub const NS_NOTE: &str = "http://schemas.microsoft.com/2006/09/sip/note";
const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The Lync availability bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    /// 3000–4499.
    Available,
    /// 4500–5999 (Available-Idle).
    Idle,
    /// 6000–7499.
    Busy,
    /// 7500–8999.
    BusyIdle,
    /// 9000–11999.
    DoNotDisturb,
    /// 12000–14999.
    BeRightBack,
    /// 15000–17999.
    Away,
    /// 18000 and up, and below 3000.
    Offline,
}

impl Band {
    /// The band of an availability number.
    pub const fn from_code(code: u32) -> Band {
        match code {
            0..=2999 => Band::Offline,
            3000..=4499 => Band::Available,
            4500..=5999 => Band::Idle,
            6000..=7499 => Band::Busy,
            7500..=8999 => Band::BusyIdle,
            9000..=11999 => Band::DoNotDisturb,
            12000..=14999 => Band::BeRightBack,
            15000..=17999 => Band::Away,
            _ => Band::Offline,
        }
    }

    /// The canonical availability (Busy-Idle reads as Busy).
    pub const fn availability(self) -> Availability {
        match self {
            Band::Available => Availability::Available,
            Band::Idle => Availability::Idle,
            Band::Busy | Band::BusyIdle => Availability::Busy,
            Band::DoNotDisturb => Availability::DoNotDisturb,
            Band::BeRightBack => Availability::BeRightBack,
            Band::Away => Availability::Away,
            Band::Offline => Availability::Offline,
        }
    }
}

/// The availability number written for a canonical state.
pub const fn code_for(a: Availability) -> u32 {
    match a {
        Availability::Available => 3500,
        Availability::Busy => 6500,
        Availability::DoNotDisturb => 9500,
        Availability::BeRightBack => 12500,
        Availability::Idle | Availability::Away | Availability::ExtendedAway => 15500,
        Availability::Offline => 18500,
    }
}

/// The presence-relevant content of a categories document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Categories {
    /// `categories/@uri`, the presentity.
    pub uri: Option<String>,
    /// The availability number, if a state category carried one.
    pub availability: Option<u32>,
    /// The activity: a known `token`, else the `<custom>` text.
    pub activity: Option<Activity>,
    /// The personal note.
    pub note: Option<String>,
}

impl Categories {
    /// The band of the availability number.
    pub fn band(&self) -> Option<Band> {
        self.availability.map(Band::from_code)
    }

    /// The canonical presence, if the document carried an availability.
    pub fn presence(&self) -> Option<Presence> {
        Some(Presence {
            availability: self.band()?.availability(),
            activity: self.activity.clone(),
            status: self.note.clone(),
        })
    }

    /// The document that publishes `p` for `uri`.
    pub fn from_presence(uri: Option<String>, p: &Presence) -> Categories {
        Categories {
            uri,
            availability: Some(code_for(p.availability)),
            activity: p.activity.clone(),
            note: p.status.clone(),
        }
    }
}

/// Read a categories document with the default [`Limits`].
pub fn parse(input: &[u8]) -> Result<Categories, Error> {
    parse_with(input, &Limits::DEFAULT)
}

fn state_rank(state: &Element) -> u8 {
    let t = state.attr_ns(NS_XSI, "type").unwrap_or("");
    let t = t.rsplit(':').next().unwrap_or(t);
    match t {
        "aggregateState" => 0,
        "userState" => 1,
        "machineState" => 2,
        _ => 3,
    }
}

fn read_state(state: &Element) -> Result<(Option<u32>, Option<Activity>), Error> {
    let availability = match state.child(NS_STATE, "availability") {
        Some(a) => {
            let t = a.text();
            Some(
                t.trim()
                    .parse::<u32>()
                    .map_err(|_| Error::invalid("availability", &t))?,
            )
        }
        None => None,
    };
    let activity = state.child(NS_STATE, "activity").and_then(|act| {
        act.attr("token")
            .and_then(|t| Activity::from_ms_token(t.trim()))
            .or_else(|| {
                act.child(NS_STATE, "custom")
                    .map(|c| Activity::Other(c.text()))
            })
            .or_else(|| act.attr("token").map(|t| Activity::Other(t.to_owned())))
    });
    Ok((availability, activity))
}

/// [`parse`] with explicit limits.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<Categories, Error> {
    let root = xml::parse(input, limits)?;
    let mut out = Categories {
        uri: None,
        availability: None,
        activity: None,
        note: None,
    };
    if root.is(NS_STATE, "state") {
        (out.availability, out.activity) = read_state(&root)?;
        return Ok(out);
    }
    if !root.is(NS_CATEGORIES, "categories") {
        return Err(Error::UnexpectedRoot {
            expected: "{http://schemas.microsoft.com/2006/09/sip/categories}categories",
            found_ns: root.ns,
            found: root.name,
        });
    }
    out.uri = root.attr("uri").map(str::to_owned);
    let mut best: Option<(u8, &Element)> = None;
    for cat in root.elements().filter(|e| e.is(NS_CATEGORIES, "category")) {
        match cat.attr("name") {
            Some("state") => {
                for st in cat.elements().filter(|e| e.is(NS_STATE, "state")) {
                    // A state with an availability beats one without.
                    let without = u8::from(st.child(NS_STATE, "availability").is_none());
                    let r = without * 10 + state_rank(st);
                    if best.is_none_or(|(b, _)| r < b) {
                        best = Some((r, st));
                    }
                }
            }
            Some("note") if out.note.is_none() => {
                let bodies: Vec<&Element> = cat
                    .elements()
                    .filter(|e| e.is(NS_NOTE, "note"))
                    .flat_map(|n| n.elements().filter(|b| b.is(NS_NOTE, "body")))
                    .collect();
                out.note = bodies
                    .iter()
                    .find(|b| b.attr("type") == Some("personal"))
                    .or(bodies.first())
                    .map(|b| b.text());
            }
            _ => {}
        }
    }
    if let Some((_, st)) = best {
        (out.availability, out.activity) = read_state(st)?;
    }
    Ok(out)
}

/// Write `c` as an `application/msrtc-event-categories+xml` document: a
/// `state` category with an `aggregateState` and, if there is a note, a
/// `note` category with a personal note.
pub fn write(c: &Categories) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("<categories xmlns=\"http://schemas.microsoft.com/2006/09/sip/categories\"");
    if let Some(uri) = &c.uri {
        out.push_str(" uri=\"");
        xml::escape_attr(&mut out, uri);
        out.push('"');
    }
    out.push('>');
    if c.availability.is_some() || c.activity.is_some() {
        out.push_str("<category name=\"state\"><state xmlns=\"http://schemas.microsoft.com/2006/09/sip/state\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"aggregateState\" manual=\"false\">");
        if let Some(a) = c.availability {
            out.push_str("<availability>");
            out.push_str(&a.to_string());
            out.push_str("</availability>");
        }
        match &c.activity {
            None => {}
            Some(a) => match a.ms_token() {
                Some(t) => {
                    out.push_str("<activity token=\"");
                    out.push_str(t);
                    out.push_str("\"/>");
                }
                None => {
                    out.push_str("<activity><custom LCID=\"1033\">");
                    xml::escape_text(&mut out, a.text());
                    out.push_str("</custom></activity>");
                }
            },
        }
        out.push_str("</state></category>");
    }
    if let Some(n) = &c.note {
        out.push_str("<category name=\"note\"><note xmlns=\"http://schemas.microsoft.com/2006/09/sip/note\"><body type=\"personal\" uri=\"\">");
        xml::escape_text(&mut out, n);
        out.push_str("</body></note></category>");
    }
    out.push_str("</categories>");
    out
}

/// Namespace of the legacy `text/xml+msrtc.pidf` `<presentity>` document.
pub const NS_LEGACY: &str = "http://schemas.microsoft.com/2002/09/sip/presence";

/// A legacy `text/xml+msrtc.pidf` document (OCS 2005 style, [MS-SIP] 2.2.1):
/// `<presentity uri>` with `<availability aggregate>`, `<activity aggregate>`
/// and `<userInfo><note>`. Read only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Legacy {
    /// `presentity/@uri`.
    pub uri: Option<String>,
    /// `availability/@aggregate`: below 100 offline, 300 online.
    pub availability: u32,
    /// `activity/@aggregate`: the start of a range of 100 (see [`Legacy::presence`]).
    pub activity: u32,
    /// `userInfo/note`.
    pub note: Option<String>,
}

impl Legacy {
    /// The canonical presence. Availability below 100 is Offline; otherwise
    /// by activity range: below 200 Away (150–199 is "lunch"), 200–299 Idle,
    /// 300–399 Be Right Back, 400–499 Available, 500–599 Busy (on the phone),
    /// 600–699 Busy, 700–799 Away, 800 and up Available.
    pub fn presence(&self) -> Presence {
        let (availability, activity) = if self.availability < 100 {
            (Availability::Offline, None)
        } else {
            match self.activity {
                0..=199 => (Availability::Away, None),
                200..=299 => (Availability::Idle, None),
                300..=399 => (Availability::BeRightBack, None),
                400..=499 => (Availability::Available, None),
                500..=599 => (Availability::Busy, Some(Activity::OnThePhone)),
                600..=699 => (Availability::Busy, None),
                700..=799 => (Availability::Away, None),
                _ => (Availability::Available, None),
            }
        };
        Presence {
            availability,
            activity,
            status: self.note.clone(),
        }
    }
}

/// Read a legacy `text/xml+msrtc.pidf` document with the default [`Limits`].
pub fn parse_legacy(input: &[u8]) -> Result<Legacy, Error> {
    parse_legacy_with(input, &Limits::DEFAULT)
}

/// [`parse_legacy`] with explicit limits.
pub fn parse_legacy_with(input: &[u8], limits: &Limits) -> Result<Legacy, Error> {
    let root = xml::parse(input, limits)?;
    if root.name != "presentity" {
        return Err(Error::UnexpectedRoot {
            expected: "presentity",
            found_ns: root.ns,
            found: root.name,
        });
    }
    // Attributes appear both unprefixed and prefixed (`m:aggregate`).
    let attr = |e: &Element, name: &str| {
        e.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.clone())
    };
    let number = |name: &'static str| -> Result<u32, Error> {
        let el = root
            .elements()
            .find(|e| e.name == name)
            .ok_or(Error::Missing(name))?;
        let v = attr(el, "aggregate").ok_or(Error::Missing("aggregate"))?;
        v.trim().parse().map_err(|_| Error::invalid(name, &v))
    };
    let availability = number("availability")?;
    let activity = match number("activity") {
        Ok(a) => a,
        Err(Error::Missing(_)) => 400,
        Err(e) => return Err(e),
    };
    let note = root
        .elements()
        .find(|e| e.name == "userInfo")
        .and_then(|u| u.elements().find(|e| e.name == "note"))
        .map(Element::text);
    Ok(Legacy {
        uri: attr(&root, "uri"),
        availability,
        activity,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_ranges() {
        use Availability as A;
        let cases: &[(u32, A)] = &[
            (0, A::Offline),
            (2999, A::Offline),
            (3000, A::Available),
            (3500, A::Available),
            (4499, A::Available),
            (4500, A::Idle),
            (5999, A::Idle),
            (6000, A::Busy),
            (6900, A::Busy),
            (7499, A::Busy),
            (7500, A::Busy),
            (8999, A::Busy),
            (9000, A::DoNotDisturb),
            (11999, A::DoNotDisturb),
            (12000, A::BeRightBack),
            (14999, A::BeRightBack),
            (15000, A::Away),
            (17999, A::Away),
            (18000, A::Offline),
            (u32::MAX, A::Offline),
        ];
        for &(code, a) in cases {
            assert_eq!(Band::from_code(code).availability(), a, "{code}");
        }
        assert_eq!(Band::from_code(7500), Band::BusyIdle);
        assert_eq!(Band::from_code(4500), Band::Idle);
    }

    #[test]
    fn write_codes() {
        use Availability as A;
        for (a, code) in [
            (A::Available, 3500),
            (A::Busy, 6500),
            (A::DoNotDisturb, 9500),
            (A::BeRightBack, 12500),
            (A::Away, 15500),
            (A::Offline, 18500),
            (A::Idle, 15500),
            (A::ExtendedAway, 15500),
        ] {
            assert_eq!(code_for(a), code, "{a}");
        }
    }

    #[test]
    fn reads_lync_notify_body() {
        let doc = br#"<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:bob@contoso.com">
 <category name="contactCard" instance="0" publishTime="2013-01-01T00:00:00Z"><contactCard xmlns="http://schemas.microsoft.com/2006/09/sip/contactcard"><identity><name><displayName>Bob</displayName></name></identity></contactCard></category>
 <category name="state" instance="1" publishTime="2013-01-01T00:00:00Z">
  <state xmlns="http://schemas.microsoft.com/2006/09/sip/state" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="machineState"><availability>5000</availability></state>
 </category>
 <category name="state" instance="0" publishTime="2013-01-01T00:00:00Z">
  <state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="false" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="aggregateState">
   <availability>6500</availability>
   <activity token="in-a-meeting" minAvailability="6500" maxAvailability="8999"/>
   <delimiter xmlns="http://schemas.microsoft.com/2006/09/sip/commontypes"/>
   <timeZoneBias>-60</timeZoneBias><endpointLocation/>
  </state>
 </category>
 <category name="note" instance="0"><note xmlns="http://schemas.microsoft.com/2006/09/sip/note"><body type="OOF" uri="">On leave</body><body type="personal" uri="">Budget review</body></note></category>
</categories>"#;
        let c = parse(doc).unwrap();
        assert_eq!(c.uri.as_deref(), Some("sip:bob@contoso.com"));
        assert_eq!(c.availability, Some(6500));
        let p = c.presence().unwrap();
        assert_eq!(p.availability, Availability::Busy);
        assert_eq!(p.activity, Some(Activity::Meeting));
        assert_eq!(p.status.as_deref(), Some("Budget review"));
    }

    #[test]
    fn reads_user_state_with_custom_activity() {
        // The Lync schema documentation example.
        let doc = br#"<state xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:xsd="http://www.w3.org/2001/XMLSchema" xsi:type="userState"
        xmlns="http://schemas.microsoft.com/2006/09/sip/state">
   <availability>15500</availability>
   <activity><custom LCID="1033">Out of office until next week</custom></activity>
</state>"#;
        let c = parse(doc).unwrap();
        assert_eq!(c.band(), Some(Band::Away));
        assert_eq!(
            c.activity,
            Some(Activity::Other("Out of office until next week".into()))
        );
    }

    #[test]
    fn no_state_and_errors() {
        let c =
            parse(br#"<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories"/>"#)
                .unwrap();
        assert_eq!(c.presence(), None);
        assert!(matches!(
            parse(br#"<state xmlns="http://schemas.microsoft.com/2006/09/sip/state"><availability>lots</availability></state>"#),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            parse(br#"<categories/>"#),
            Err(Error::UnexpectedRoot { .. })
        ));
    }

    #[test]
    fn reads_legacy_msrtc_pidf() {
        let doc = br#"<?xml version="1.0" encoding="utf-8"?>
<presentity uri="sip:carol@contoso.com" xmlns="http://schemas.microsoft.com/2002/09/sip/presence" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <availability aggregate="300" description="online"/>
  <activity aggregate="600" description="Busy"/>
  <displayName displayName="Carol"/>
  <userInfo><note>Back at 3</note><states><state avail="6500" xsi:type="userState"/></states></userInfo>
  <devices><devicePresence epid="x"><deviceName name="PC"/></devicePresence></devices>
</presentity>"#;
        let l = parse_legacy(doc).unwrap();
        assert_eq!(l.uri.as_deref(), Some("sip:carol@contoso.com"));
        assert_eq!((l.availability, l.activity), (300, 600));
        let p = l.presence();
        assert_eq!(p.availability, Availability::Busy);
        assert_eq!(p.status.as_deref(), Some("Back at 3"));
        let ranges: &[(u32, u32, Availability)] = &[
            (0, 400, Availability::Offline),
            (99, 600, Availability::Offline),
            (300, 100, Availability::Away),
            (300, 150, Availability::Away),
            (300, 200, Availability::Idle),
            (300, 300, Availability::BeRightBack),
            (300, 400, Availability::Available),
            (300, 500, Availability::Busy),
            (300, 600, Availability::Busy),
            (300, 700, Availability::Away),
            (300, 800, Availability::Available),
        ];
        for &(avail, act, want) in ranges {
            let l = Legacy {
                uri: None,
                availability: avail,
                activity: act,
                note: None,
            };
            assert_eq!(l.presence().availability, want, "{avail}/{act}");
        }
        assert!(matches!(
            parse_legacy(b"<presentity><activity aggregate='1'/></presentity>"),
            Err(Error::Missing("availability"))
        ));
        assert!(matches!(
            parse_legacy(b"<presentity><availability aggregate='x'/></presentity>"),
            Err(Error::Invalid { .. })
        ));
    }

    fn any_activity() -> impl Strategy<Value = Activity> {
        prop_oneof![
            proptest::sample::select(vec![
                Activity::Meeting,
                Activity::OnThePhone,
                Activity::InAConference,
                Activity::OutOfOffice,
                Activity::UrgentInterruptionsOnly,
            ]),
            "[a-zA-Z][a-zA-Z ]{0,15}".prop_map(Activity::Other),
        ]
    }

    fn any_categories() -> impl Strategy<Value = Categories> {
        (
            proptest::option::of("sip:[a-z&<\"]{1,8}@example\\.com"),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any_activity()),
            proptest::option::of(crate::pidf::tests::any_text()),
        )
            .prop_map(|(uri, availability, activity, note)| Categories {
                uri,
                availability,
                activity,
                note,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn round_trip(c in any_categories()) {
            prop_assert_eq!(parse(write(&c).as_bytes()).unwrap(), c);
        }

        #[test]
        fn canonical_round_trip(
            a in proptest::sample::select(vec![
                Availability::Available, Availability::Busy, Availability::DoNotDisturb,
                Availability::BeRightBack, Availability::Away, Availability::Offline,
            ]),
            activity in proptest::option::of(any_activity()),
            status in proptest::option::of(crate::pidf::tests::any_text()),
        ) {
            let p = Presence { availability: a, activity, status };
            let doc = write(&Categories::from_presence(Some("sip:a@b".into()), &p));
            prop_assert_eq!(parse(doc.as_bytes()).unwrap().presence(), Some(p));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
            let _ = parse_legacy(&bytes);
        }
    }
}
