//! XMPP `<presence/>` availability (RFC 6121 §4.7): `type`, `<show/>`,
//! `<status/>` and `<priority/>`, as a small typed value with a reader and a
//! writer. Other children (caps, vCard updates, …) are ignored on reading.
//!
//! The full stanza layer (addresses, ids, errors, subscriptions) lives in
//! `fedgate-xmpp`; this module only reads and writes what availability needs.

use crate::model::{Availability, Presence};
use crate::xml::{self, Element, Error, Limits};

/// RFC 6121 §4.7.2.1 `<show/>` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Show {
    /// `away`: temporarily away.
    Away,
    /// `chat`: actively interested in chatting.
    Chat,
    /// `dnd`: busy (RFC 8048: "merely means busy").
    Dnd,
    /// `xa`: away for an extended period.
    Xa,
}

impl Show {
    /// The element text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Show::Away => "away",
            Show::Chat => "chat",
            Show::Dnd => "dnd",
            Show::Xa => "xa",
        }
    }

    /// Parse the element text (surrounding blanks ignored).
    pub fn parse(s: &str) -> Option<Show> {
        Some(match s.trim() {
            "away" => Show::Away,
            "chat" => Show::Chat,
            "dnd" => Show::Dnd,
            "xa" => Show::Xa,
            _ => return None,
        })
    }
}

/// The availability part of an XMPP `<presence/>` stanza.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct XmppPresence {
    /// `false` for `type='unavailable'`.
    pub available: bool,
    /// `<show/>`, if any.
    pub show: Option<Show>,
    /// `<status/>` text, if any (the one without `xml:lang`, else the first).
    pub status: Option<String>,
    /// `<priority/>`, −128..=127; 0 when absent (RFC 6121 §4.7.2.3).
    pub priority: i8,
}

/// Namespaces a `<presence/>` may be in: client, server, or none (an element
/// cut out of a stream by a tokenizer that did not carry the default namespace).
const STANZA_NS: [&str; 3] = ["jabber:client", "jabber:server", ""];

/// Read a `<presence>` element (with the default [`Limits`]).
///
/// Accepts `jabber:client`, `jabber:server` or no namespace; `type` must be
/// absent or `unavailable` (subscription stanzas are the stanza layer's).
pub fn parse(input: &[u8]) -> Result<XmppPresence, Error> {
    parse_with(input, &Limits::DEFAULT)
}

/// [`parse`] with explicit limits.
pub fn parse_with(input: &[u8], limits: &Limits) -> Result<XmppPresence, Error> {
    let root = xml::parse(input, limits)?;
    if root.name != "presence" || !STANZA_NS.contains(&root.ns.as_str()) {
        return Err(Error::UnexpectedRoot {
            expected: "{jabber:client}presence",
            found_ns: root.ns,
            found: root.name,
        });
    }
    from_element(&root)
}

pub(crate) fn from_element(root: &Element) -> Result<XmppPresence, Error> {
    let available = match root.attr("type") {
        None => true,
        Some("unavailable") => false,
        Some(t) => return Err(Error::invalid("presence type", t)),
    };
    let mut out = XmppPresence {
        available,
        ..XmppPresence::default()
    };
    let mut status_lang: Option<String> = None;
    let mut seen_priority = false;
    for child in root.elements().filter(|e| e.ns == root.ns) {
        match child.name.as_str() {
            "show" => {
                let t = child.text();
                out.show = Some(Show::parse(&t).ok_or_else(|| Error::invalid("show", &t))?);
            }
            "status" => {
                let lang = child.attr_ns(xml::XML_NS, "lang");
                // Keep the first; replace it once by a status without xml:lang.
                if out.status.is_none() || (status_lang.is_some() && lang.is_none()) {
                    out.status = Some(child.text());
                    status_lang = lang.map(str::to_owned);
                }
            }
            "priority" if !seen_priority => {
                seen_priority = true;
                let t = child.text();
                out.priority = t
                    .trim()
                    .parse::<i8>()
                    .map_err(|_| Error::invalid("priority", &t))?;
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Append the `<show/>`, `<status/>` and `<priority/>` children (priority only
/// when non-zero) to `out`.
pub fn write_children(p: &XmppPresence, out: &mut String) {
    if let Some(show) = p.show {
        out.push_str("<show>");
        out.push_str(show.as_str());
        out.push_str("</show>");
    }
    if let Some(status) = &p.status {
        out.push_str("<status>");
        xml::escape_text(out, status);
        out.push_str("</status>");
    }
    if p.priority != 0 {
        out.push_str("<priority>");
        out.push_str(&p.priority.to_string());
        out.push_str("</priority>");
    }
}

/// Write a whole `<presence xmlns='jabber:client'>` element.
pub fn write(p: &XmppPresence) -> String {
    let mut out = String::with_capacity(96);
    out.push_str("<presence xmlns=\"jabber:client\"");
    if !p.available {
        out.push_str(" type=\"unavailable\"");
    }
    out.push('>');
    write_children(p, &mut out);
    out.push_str("</presence>");
    out
}

impl XmppPresence {
    /// The canonical presence: no type → Available (or per `<show/>`: `chat`
    /// Available, `away` Away, `xa` Extended Away, `dnd` Do Not Disturb);
    /// `unavailable` → Offline. Status text is kept.
    pub fn to_presence(&self) -> Presence {
        let availability = if !self.available {
            Availability::Offline
        } else {
            match self.show {
                None | Some(Show::Chat) => Availability::Available,
                Some(Show::Away) => Availability::Away,
                Some(Show::Xa) => Availability::ExtendedAway,
                Some(Show::Dnd) => Availability::DoNotDisturb,
            }
        };
        Presence {
            availability,
            activity: None,
            status: self.status.clone(),
        }
    }

    /// The nearest XMPP form of a canonical presence: Idle and Be Right Back
    /// become `away`, Busy becomes `dnd`. XMPP has no activity, so an activity
    /// without status text travels as its text (`"In a meeting"`).
    pub fn from_presence(p: &Presence, priority: i8) -> XmppPresence {
        let (available, show) = match p.availability {
            Availability::Available => (true, None),
            Availability::Idle | Availability::BeRightBack | Availability::Away => {
                (true, Some(Show::Away))
            }
            Availability::ExtendedAway => (true, Some(Show::Xa)),
            Availability::Busy | Availability::DoNotDisturb => (true, Some(Show::Dnd)),
            Availability::Offline => (false, None),
        };
        XmppPresence {
            available,
            show,
            status: p.effective_status().map(str::to_owned),
            priority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activity;
    use proptest::prelude::*;

    #[test]
    fn reads_rfc6121_example_and_ignores_extensions() {
        let doc = br#"<presence xmlns='jabber:client' from='juliet@example.com/balcony'>
            <show>away</show>
            <status xml:lang='de'>abwesend</status>
            <status>be right back</status>
            <priority>-1</priority>
            <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/>
            <show xmlns='urn:other'>bogus</show>
          </presence>"#;
        let p = parse(doc).unwrap();
        assert_eq!(
            p,
            XmppPresence {
                available: true,
                show: Some(Show::Away),
                status: Some("be right back".into()),
                priority: -1,
            }
        );
        assert_eq!(p.to_presence().availability, Availability::Away);
    }

    #[test]
    fn unavailable_and_errors() {
        let p = parse(b"<presence type='unavailable'/>").unwrap();
        assert!(!p.available);
        assert_eq!(p.to_presence().availability, Availability::Offline);
        assert!(matches!(
            parse(b"<presence type='subscribe'/>"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            parse(b"<presence><show>busy</show></presence>"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            parse(b"<presence><priority>300</priority></presence>"),
            Err(Error::Invalid { .. })
        ));
        assert!(matches!(
            parse(b"<message xmlns='jabber:client'/>"),
            Err(Error::UnexpectedRoot { .. })
        ));
    }

    #[test]
    fn canonical_mapping() {
        let cases = [
            (Availability::Available, true, None),
            (Availability::Idle, true, Some(Show::Away)),
            (Availability::Busy, true, Some(Show::Dnd)),
            (Availability::DoNotDisturb, true, Some(Show::Dnd)),
            (Availability::BeRightBack, true, Some(Show::Away)),
            (Availability::Away, true, Some(Show::Away)),
            (Availability::ExtendedAway, true, Some(Show::Xa)),
            (Availability::Offline, false, None),
        ];
        for (a, avail, show) in cases {
            let x = XmppPresence::from_presence(&Presence::new(a), 0);
            assert_eq!((x.available, x.show), (avail, show), "{a}");
        }
        let x = XmppPresence::from_presence(
            &Presence::new(Availability::Away).with_activity(Activity::Meeting),
            0,
        );
        assert_eq!(x.status.as_deref(), Some("In a meeting"));
    }

    fn any_presence() -> impl Strategy<Value = XmppPresence> {
        (
            any::<bool>(),
            proptest::option::of(proptest::sample::select(vec![
                Show::Away,
                Show::Chat,
                Show::Dnd,
                Show::Xa,
            ])),
            proptest::option::of("[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\u{fffe}\u{ffff}]{0,24}"),
            any::<i8>(),
        )
            .prop_map(|(available, show, status, priority)| XmppPresence {
                available,
                show,
                status,
                priority,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn round_trip(p in any_presence()) {
            prop_assert_eq!(parse(write(&p).as_bytes()).unwrap(), p);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }
    }
}
