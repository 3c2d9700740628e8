//! The canonical presence model: availability, activity, status text and the
//! client family a presence came from.

use std::fmt;
use std::str::FromStr;

/// The canonical availability states, named as the mapping tables write them.
///
/// The order of the variants is the "most available first" order used to
/// aggregate several tuples or resources into one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Availability {
    /// "Available".
    Available,
    /// "Idle" (Cisco Jabber 8.x, Webex; Lync Available-Idle).
    Idle,
    /// "Busy" (Lync, Cisco Jabber 8.x).
    Busy,
    /// "Do Not Disturb" (XMPP `dnd`).
    DoNotDisturb,
    /// "Be Right Back" (Lync).
    BeRightBack,
    /// "Away" (XMPP `away`).
    Away,
    /// "Extended Away" (XMPP `xa`).
    ExtendedAway,
    /// "Offline" (XMPP `type='unavailable'`, PIDF `closed`).
    Offline,
}

impl Availability {
    /// Every state, in "most available first" order.
    pub const ALL: [Availability; 8] = [
        Availability::Available,
        Availability::Idle,
        Availability::Busy,
        Availability::DoNotDisturb,
        Availability::BeRightBack,
        Availability::Away,
        Availability::ExtendedAway,
        Availability::Offline,
    ];

    /// The name as the mapping tables write it (`"Do Not Disturb"`).
    pub const fn name(self) -> &'static str {
        match self {
            Availability::Available => "Available",
            Availability::Idle => "Idle",
            Availability::Busy => "Busy",
            Availability::DoNotDisturb => "Do Not Disturb",
            Availability::BeRightBack => "Be Right Back",
            Availability::Away => "Away",
            Availability::ExtendedAway => "Extended Away",
            Availability::Offline => "Offline",
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known [`Availability`] or [`Family`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} name {name:?}")]
pub struct UnknownName {
    /// What was being parsed ("state" or "family").
    pub kind: &'static str,
    /// The rejected input.
    pub name: String,
}

/// Compare two names ignoring ASCII case and treating ' ', '-' and '_' alike.
fn loose_eq(a: &str, b: &str) -> bool {
    let norm = |c: u8| match c {
        b'-' | b'_' => b' ',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

impl FromStr for Availability {
    type Err = UnknownName;

    /// Accepts the table names (`"Do Not Disturb"`, `"Extended Away"`),
    /// ignoring case and with `-`/`_` accepted for spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Availability::ALL
            .into_iter()
            .find(|a| loose_eq(a.name(), s))
            .ok_or_else(|| UnknownName {
                kind: "state",
                name: s.to_owned(),
            })
    }
}

/// The family of client a presence comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `lync`: Microsoft Lync / Skype for Business / Office 365 over SIP federation.
    Lync,
    /// `xmpp-local`: a third-party XMPP client connected to this service.
    XmppLocal,
    /// `jabber`: a Cisco Jabber 8.x-style client of this service.
    Jabber,
    /// `xmpp-fed`: a third-party XMPP client in a federated XMPP domain.
    XmppFed,
    /// `jabber-fed`: a Jabber 8.x-style client in a federated domain.
    JabberFed,
    /// `sametime`: IBM Sametime 8.2 over XMPP federation.
    Sametime,
    /// `webex`: Webex Connect / Webex Messenger over XMPP federation.
    Webex,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 7] = [
        Family::Lync,
        Family::XmppLocal,
        Family::Jabber,
        Family::XmppFed,
        Family::JabberFed,
        Family::Sametime,
        Family::Webex,
    ];

    /// The short name used by the spec and the checker (`xmpp-local`).
    pub const fn name(self) -> &'static str {
        match self {
            Family::Lync => "lync",
            Family::XmppLocal => "xmpp-local",
            Family::Jabber => "jabber",
            Family::XmppFed => "xmpp-fed",
            Family::JabberFed => "jabber-fed",
            Family::Sametime => "sametime",
            Family::Webex => "webex",
        }
    }

    /// Whether a client of this family can display `a` natively.
    ///
    /// This is the vocabulary of each family as it appears in the seven
    /// tables, as source or target (Lync's Idle bands are read but Lync
    /// cannot be sent an Idle user state, so Lync does not "show" Idle).
    /// Used for the fallback of states that no table row names.
    pub const fn can_show(self, a: Availability) -> bool {
        use Availability as A;
        match self {
            // Tables 1-3: Available, Busy, DND, BRB, Away, Offline.
            Family::Lync => matches!(
                a,
                A::Available | A::Busy | A::DoNotDisturb | A::BeRightBack | A::Away | A::Offline
            ),
            // Tables 3, 7 and RFC 6121 <show/>: chat/none, away, xa, dnd, unavailable.
            Family::XmppLocal => matches!(
                a,
                A::Available | A::Away | A::ExtendedAway | A::DoNotDisturb | A::Offline
            ),
            // As xmpp-local, plus Idle: Table 6 row 4 shows Jabber Idle as
            // Idle on a federated XMPP client.
            Family::XmppFed => matches!(
                a,
                A::Available | A::Away | A::ExtendedAway | A::DoNotDisturb | A::Idle | A::Offline
            ),
            // Tables 1, 2, 6: Available, Busy, DND, Idle, Away, Offline.
            Family::Jabber | Family::JabberFed => matches!(
                a,
                A::Available | A::Busy | A::DoNotDisturb | A::Idle | A::Away | A::Offline
            ),
            // Tables 4, 6, 7: Available, DND, Away, Offline, Idle.
            Family::Sametime => matches!(
                a,
                A::Available | A::DoNotDisturb | A::Away | A::Idle | A::Offline
            ),
            // Tables 5, 6, 7: as Sametime, plus Extended Away (Table 7 row 4).
            Family::Webex => matches!(
                a,
                A::Available | A::DoNotDisturb | A::Away | A::ExtendedAway | A::Idle | A::Offline
            ),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Family::ALL
            .into_iter()
            .find(|f| loose_eq(f.name(), s))
            .ok_or_else(|| UnknownName {
                kind: "family",
                name: s.to_owned(),
            })
    }
}

/// What the person is doing, qualifying the availability.
///
/// The variants are the RFC 4480 §3.2 activities except `away` and `busy`,
/// which this crate reads as availability rather than activity, plus the
/// Microsoft `in-a-conference`, `out-of-office` and `urgent-interruptions-only`
/// tokens, and free text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Activity {
    /// RPID `appointment`.
    Appointment,
    /// RPID `breakfast`.
    Breakfast,
    /// RPID `dinner`.
    Dinner,
    /// RPID `holiday`.
    Holiday,
    /// RPID `in-transit`.
    InTransit,
    /// RPID `looking-for-work`.
    LookingForWork,
    /// RPID `meal`.
    Meal,
    /// RPID `meeting`; Microsoft `in-a-meeting`. Displayed "In a meeting".
    Meeting,
    /// RPID `on-the-phone`; Microsoft `on-the-phone`.
    OnThePhone,
    /// RPID `performance`.
    Performance,
    /// RPID `permanent-absence`.
    PermanentAbsence,
    /// RPID `playing`.
    Playing,
    /// RPID `presentation`.
    Presentation,
    /// RPID `shopping`.
    Shopping,
    /// RPID `sleeping`.
    Sleeping,
    /// RPID `spectator`.
    Spectator,
    /// RPID `steering`.
    Steering,
    /// RPID `travel`.
    Travel,
    /// RPID `tv`.
    Tv,
    /// RPID `vacation`.
    Vacation,
    /// RPID `working`.
    Working,
    /// RPID `worship`.
    Worship,
    /// Microsoft `in-a-conference`.
    InAConference,
    /// Microsoft `out-of-office`.
    OutOfOffice,
    /// Microsoft `urgent-interruptions-only`.
    UrgentInterruptionsOnly,
    /// Free text (RPID `<other>`, Microsoft `<custom>`).
    Other(String),
}

/// (activity, RPID element name, Microsoft token, display text)
const ACTIVITY_NAMES: &[(Activity, Option<&str>, Option<&str>, &str)] = &[
    (
        Activity::Appointment,
        Some("appointment"),
        None,
        "Appointment",
    ),
    (Activity::Breakfast, Some("breakfast"), None, "Breakfast"),
    (Activity::Dinner, Some("dinner"), None, "Dinner"),
    (Activity::Holiday, Some("holiday"), None, "Holiday"),
    (Activity::InTransit, Some("in-transit"), None, "In transit"),
    (
        Activity::LookingForWork,
        Some("looking-for-work"),
        None,
        "Looking for work",
    ),
    (Activity::Meal, Some("meal"), None, "Meal"),
    (
        Activity::Meeting,
        Some("meeting"),
        Some("in-a-meeting"),
        "In a meeting",
    ),
    (
        Activity::OnThePhone,
        Some("on-the-phone"),
        Some("on-the-phone"),
        "On the phone",
    ),
    (
        Activity::Performance,
        Some("performance"),
        None,
        "Performance",
    ),
    (
        Activity::PermanentAbsence,
        Some("permanent-absence"),
        None,
        "Permanent absence",
    ),
    (Activity::Playing, Some("playing"), None, "Playing"),
    (
        Activity::Presentation,
        Some("presentation"),
        None,
        "Presenting",
    ),
    (Activity::Shopping, Some("shopping"), None, "Shopping"),
    (Activity::Sleeping, Some("sleeping"), None, "Sleeping"),
    (Activity::Spectator, Some("spectator"), None, "Spectator"),
    (Activity::Steering, Some("steering"), None, "Driving"),
    (Activity::Travel, Some("travel"), None, "Travelling"),
    (Activity::Tv, Some("tv"), None, "Watching TV"),
    (Activity::Vacation, Some("vacation"), None, "On vacation"),
    (Activity::Working, Some("working"), None, "Working"),
    (Activity::Worship, Some("worship"), None, "Worship"),
    (
        Activity::InAConference,
        None,
        Some("in-a-conference"),
        "In a conference",
    ),
    (
        Activity::OutOfOffice,
        None,
        Some("out-of-office"),
        "Out of office",
    ),
    (
        Activity::UrgentInterruptionsOnly,
        None,
        Some("urgent-interruptions-only"),
        "Urgent interruptions only",
    ),
];

impl Activity {
    /// The RFC 4480 element name, if RPID has one.
    pub fn rpid_name(&self) -> Option<&'static str> {
        ACTIVITY_NAMES
            .iter()
            .find(|(a, ..)| a == self)
            .and_then(|(_, r, ..)| *r)
    }

    /// The activity for an RFC 4480 element name (not `away`, `busy`, `other`, `unknown`).
    pub fn from_rpid_name(name: &str) -> Option<Activity> {
        ACTIVITY_NAMES
            .iter()
            .find(|(_, r, ..)| *r == Some(name))
            .map(|(a, ..)| a.clone())
    }

    /// The Microsoft `activity/@token`, if Microsoft defines one.
    pub fn ms_token(&self) -> Option<&'static str> {
        ACTIVITY_NAMES
            .iter()
            .find(|(a, ..)| a == self)
            .and_then(|(_, _, m, _)| *m)
    }

    /// The activity for a Microsoft `activity/@token`.
    pub fn from_ms_token(token: &str) -> Option<Activity> {
        ACTIVITY_NAMES
            .iter()
            .find(|(_, _, m, _)| *m == Some(token))
            .map(|(a, ..)| a.clone())
    }

    /// Human-readable text, as a client would display it (`"In a meeting"`).
    pub fn text(&self) -> &str {
        match self {
            Activity::Other(t) => t,
            a => ACTIVITY_NAMES
                .iter()
                .find(|(x, ..)| x == a)
                .map_or("", |(.., t)| t),
        }
    }
}

/// A presence in canonical form: availability, optional activity, optional status text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Presence {
    /// The availability state.
    pub availability: Availability,
    /// What the person is doing, if known.
    pub activity: Option<Activity>,
    /// Free status text (XMPP `<status/>`, PIDF `<note/>`, Lync note).
    pub status: Option<String>,
}

impl Presence {
    /// A presence with only an availability.
    pub const fn new(availability: Availability) -> Self {
        Presence {
            availability,
            activity: None,
            status: None,
        }
    }

    /// Builder: set the status text.
    pub fn with_status(mut self, status: impl Into<String>) -> Self {
        self.status = Some(status.into());
        self
    }

    /// Builder: set the activity.
    pub fn with_activity(mut self, activity: Activity) -> Self {
        self.activity = Some(activity);
        self
    }

    /// The text a status pattern is compared with: the status text, or the
    /// activity's display text when there is no status text.
    pub fn effective_status(&self) -> Option<&str> {
        self.status
            .as_deref()
            .or_else(|| self.activity.as_ref().map(Activity::text))
    }
}

/// A [`Presence`] together with the family of the client that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FamilyPresence {
    /// The family of the client.
    pub family: Family,
    /// The presence, as that client shows it.
    pub presence: Presence,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Availability::ALL {
            assert_eq!(a.name().parse::<Availability>(), Ok(a));
        }
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>(), Ok(f));
        }
        assert_eq!(
            "do-not-disturb".parse::<Availability>(),
            Ok(Availability::DoNotDisturb)
        );
        assert!("Snoozing".parse::<Availability>().is_err());
        assert!("msn".parse::<Family>().is_err());
    }

    #[test]
    fn activity_tables_are_consistent() {
        for (a, r, m, _) in ACTIVITY_NAMES {
            if let Some(r) = r {
                assert_eq!(Activity::from_rpid_name(r).as_ref(), Some(a));
            }
            if let Some(m) = m {
                assert_eq!(Activity::from_ms_token(m).as_ref(), Some(a));
            }
            assert!(!a.text().is_empty());
        }
        assert_eq!(Activity::Meeting.text(), "In a meeting");
        assert_eq!(Activity::Other("x".into()).text(), "x");
    }

    #[test]
    fn every_family_shows_the_universal_states() {
        for f in Family::ALL {
            for a in [
                Availability::Available,
                Availability::Away,
                Availability::DoNotDisturb,
                Availability::Offline,
            ] {
                assert!(f.can_show(a), "{f} {a}");
            }
        }
    }
}
