//! The seven availability mapping tables of `spec/presence-mapping.md`, as data,
//! and the mapping function that applies them.
//!
//! Each table is a set of [`Row`]s, one per (source row, target column) cell.
//! A row reads "when `from` shows [`Row::when`], `to` shows [`Row::then`]".
//!
//! # How a mapping is chosen
//!
//! [`map`] looks for the table of the `(from, to)` pair; without one the pair is
//! *unmapped* (`None`): the gateway never routes, say, Sametime to Lync.
//! Within the table:
//!
//! 1. a row whose source state **and** status pattern match wins (the patterned
//!    rows: Table 4 row 3, Table 5 row 3, Table 7 row 5; status compared
//!    ignoring ASCII case and surrounding blanks);
//! 2. otherwise the row whose source state matches;
//! 3. otherwise (a state the table does not list, e.g. Lync Available-Idle,
//!    Jabber Away towards Lync) the target shows the same state if its family
//!    [can show](Family::can_show) it;
//! 4. otherwise the state is replaced by its nearest neighbour (Idle, Be Right
//!    Back and Extended Away → Away; Busy → Do Not Disturb) and steps 1–3 run
//!    again. Away, Available, Do Not Disturb and Offline are shown by every
//!    family, so this ends after at most two steps.
//!
//! # Status text
//!
//! A row's [`StatusOut`] says what happens to the status text: a quoted text in
//! the table is [`StatusOut::Fixed`] and replaces the source's text (Lync Busy →
//! XMPP Away "Busy"); "with status message" is [`StatusOut::Keep`]; a row that
//! says neither is [`StatusOut::Unspecified`]. Under [`StatusRule::Tables`] (the
//! default, used by [`map`] and the checker) unspecified means the target shows
//! no text; under [`StatusRule::Travel`] the source's text travels.

use crate::model::{Availability, Family, FamilyPresence, Presence};
use std::fmt;

/// What a row does with the status text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusOut {
    /// The table gives no text for the target.
    Unspecified,
    /// The target shows this text (quoted in the table).
    Fixed(&'static str),
    /// "with status message": the target keeps the source's text.
    Keep,
}

/// The source side of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct When {
    /// The source state.
    pub availability: Availability,
    /// A status text the source must show for this row to apply.
    pub status: Option<&'static str>,
}

/// The target side of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Then {
    /// The target state.
    pub availability: Availability,
    /// What happens to the status text.
    pub status: StatusOut,
}

/// One cell of one of the seven tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Row {
    /// Table number, 1 to 7, as in `spec/presence-mapping.md`.
    pub table: u8,
    /// Row number within the table, 1-based, header not counted.
    pub row: u8,
    /// Source family (the table's first column).
    pub from: Family,
    /// Target family (the cell's column).
    pub to: Family,
    /// Source state.
    pub when: When,
    /// Target state.
    pub then: Then,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "presence-mapping.md Table {} row {} ({} -> {})",
            self.table, self.row, self.from, self.to
        )
    }
}

use Availability::{Available, Away, BeRightBack, Busy, DoNotDisturb, ExtendedAway, Idle, Offline};
use Family::{Jabber, JabberFed, Lync, Sametime, Webex, XmppFed, XmppLocal};
use StatusOut::{Fixed, Keep, Unspecified};

#[allow(clippy::too_many_arguments)]
const fn r(
    table: u8,
    row: u8,
    from: Family,
    to: Family,
    when: Availability,
    when_status: Option<&'static str>,
    then: Availability,
    status: StatusOut,
) -> Row {
    Row {
        table,
        row,
        from,
        to,
        when: When {
            availability: when,
            status: when_status,
        },
        then: Then {
            availability: then,
            status,
        },
    }
}

// ---- Table 1 - from Lync -------------------------------------------------
const T1_XMPP_LOCAL: &[Row] = &[
    r(
        1,
        1,
        Lync,
        XmppLocal,
        Available,
        None,
        Available,
        Unspecified,
    ), // T1 r1: Available | Available
    r(1, 2, Lync, XmppLocal, Busy, None, Away, Fixed("Busy")), // T1 r2: Busy | Away, status "Busy"
    r(
        1,
        3,
        Lync,
        XmppLocal,
        DoNotDisturb,
        None,
        Away,
        Fixed("Busy"),
    ), // T1 r3: Do Not Disturb | Away, status "Busy"
    r(1, 4, Lync, XmppLocal, BeRightBack, None, Away, Unspecified), // T1 r4: Be Right Back | Away
    r(1, 5, Lync, XmppLocal, Away, None, Away, Unspecified),   // T1 r5: Away | Away
    r(1, 6, Lync, XmppLocal, Offline, None, Offline, Unspecified), // T1 r6: Offline | Offline
];
const T1_JABBER: &[Row] = &[
    r(1, 1, Lync, Jabber, Available, None, Available, Unspecified), // T1 r1: Available | Available
    r(1, 2, Lync, Jabber, Busy, None, Busy, Unspecified),           // T1 r2: Busy | Busy
    r(1, 3, Lync, Jabber, DoNotDisturb, None, Busy, Unspecified),   // T1 r3: Do Not Disturb | Busy
    r(1, 4, Lync, Jabber, BeRightBack, None, Away, Unspecified),    // T1 r4: Be Right Back | Away
    r(1, 5, Lync, Jabber, Away, None, Away, Unspecified),           // T1 r5: Away | Away
    r(1, 6, Lync, Jabber, Offline, None, Offline, Unspecified),     // T1 r6: Offline | Offline
];

// ---- Table 2 - from Jabber 8.x to Lync -----------------------------------
const T2_LYNC: &[Row] = &[
    r(2, 1, Jabber, Lync, Available, None, Available, Unspecified), // T2 r1: Available | Available
    r(2, 2, Jabber, Lync, Busy, None, Busy, Unspecified),           // T2 r2: Busy | Busy
    r(2, 3, Jabber, Lync, DoNotDisturb, None, Busy, Unspecified),   // T2 r3: Do Not Disturb | Busy
    r(2, 4, Jabber, Lync, Offline, None, Offline, Unspecified),     // T2 r4: Offline | Offline
];

// ---- Table 3 - from a local third-party XMPP client to Lync --------------
const T3_LYNC: &[Row] = &[
    r(
        3,
        1,
        XmppLocal,
        Lync,
        Available,
        None,
        Available,
        Unspecified,
    ), // T3 r1: Available | Available
    r(3, 2, XmppLocal, Lync, Away, None, Away, Unspecified), // T3 r2: Away | Away
    r(3, 3, XmppLocal, Lync, ExtendedAway, None, Away, Unspecified), // T3 r3: Extended Away | Away
    r(3, 4, XmppLocal, Lync, DoNotDisturb, None, Busy, Unspecified), // T3 r4: Do Not Disturb | Busy
    r(3, 5, XmppLocal, Lync, Offline, None, Offline, Unspecified), // T3 r5: Offline | Offline
];

// ---- Table 4 - from Sametime 8.2 -----------------------------------------
const T4_XMPP_LOCAL: &[Row] = &[
    r(
        4,
        1,
        Sametime,
        XmppLocal,
        Available,
        None,
        Available,
        Unspecified,
    ), // T4 r1: Available | Available
    r(
        4,
        2,
        Sametime,
        XmppLocal,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T4 r2: Do Not Disturb | Do Not Disturb
    r(
        4,
        3,
        Sametime,
        XmppLocal,
        Available,
        Some("In a meeting"),
        Available,
        Fixed("In a meeting"),
    ), // T4 r3: Available, status "In a meeting" | Available, status "In a meeting"
    r(4, 4, Sametime, XmppLocal, Away, None, Away, Unspecified), // T4 r4: Away | Away
    r(
        4,
        5,
        Sametime,
        XmppLocal,
        Offline,
        None,
        Offline,
        Unspecified,
    ), // T4 r5: Offline | Offline
];
const T4_JABBER: &[Row] = &[
    r(4, 1, Sametime, Jabber, Available, None, Available, Keep), // T4 r1: Available | Available, with status message
    r(
        4,
        2,
        Sametime,
        Jabber,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Keep,
    ), // T4 r2: Do Not Disturb | Do Not Disturb, with status message
    r(
        4,
        3,
        Sametime,
        Jabber,
        Available,
        Some("In a meeting"),
        Available,
        Keep,
    ), // T4 r3: Available, status "In a meeting" | Available, with status message
    r(4, 4, Sametime, Jabber, Away, None, Away, Keep), // T4 r4: Away | Away, with status message
    r(4, 5, Sametime, Jabber, Offline, None, Offline, Unspecified), // T4 r5: Offline | Offline
];

// ---- Table 5 - from Webex Connect ----------------------------------------
const T5_XMPP_LOCAL: &[Row] = &[
    r(
        5,
        1,
        Webex,
        XmppLocal,
        Available,
        None,
        Available,
        Unspecified,
    ), // T5 r1: Available | Available
    r(
        5,
        2,
        Webex,
        XmppLocal,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T5 r2: Do Not Disturb | Do Not Disturb
    r(
        5,
        3,
        Webex,
        XmppLocal,
        Away,
        Some("In a meeting"),
        Available,
        Fixed("In a meeting"),
    ), // T5 r3: Away, status "In a meeting" | Available, status "In a meeting"
    r(5, 4, Webex, XmppLocal, Away, None, Away, Unspecified), // T5 r4: Away | Away
    r(5, 5, Webex, XmppLocal, Offline, None, Offline, Unspecified), // T5 r5: Offline | Offline
];
const T5_JABBER: &[Row] = &[
    r(5, 1, Webex, Jabber, Available, None, Available, Unspecified), // T5 r1: Available | Available
    r(
        5,
        2,
        Webex,
        Jabber,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T5 r2: Do Not Disturb | Do Not Disturb
    r(
        5,
        3,
        Webex,
        Jabber,
        Away,
        Some("In a meeting"),
        Away,
        Fixed("In a meeting"),
    ), // T5 r3: Away, status "In a meeting" | Away, status "In a meeting"
    r(5, 4, Webex, Jabber, Away, None, Away, Unspecified),           // T5 r4: Away | Away
    r(5, 5, Webex, Jabber, Offline, None, Offline, Unspecified),     // T5 r5: Offline | Offline
];

// ---- Table 6 - from Jabber 8.x to federated clients ----------------------
const T6_JABBER_FED: &[Row] = &[
    r(
        6,
        1,
        Jabber,
        JabberFed,
        Available,
        None,
        Available,
        Unspecified,
    ), // T6 r1: Available | Available
    r(
        6,
        2,
        Jabber,
        JabberFed,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T6 r2: Do Not Disturb | Do Not Disturb
    r(6, 3, Jabber, JabberFed, Busy, None, Busy, Unspecified), // T6 r3: Busy | Busy
    r(6, 4, Jabber, JabberFed, Idle, None, Idle, Unspecified), // T6 r4: Idle | Idle
    r(6, 5, Jabber, JabberFed, Offline, None, Offline, Unspecified), // T6 r5: Offline | Offline
];
const T6_XMPP_FED: &[Row] = &[
    r(
        6,
        1,
        Jabber,
        XmppFed,
        Available,
        None,
        Available,
        Unspecified,
    ), // T6 r1: Available | Available
    r(
        6,
        2,
        Jabber,
        XmppFed,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T6 r2: Do Not Disturb | Do Not Disturb
    r(6, 3, Jabber, XmppFed, Busy, None, Away, Unspecified), // T6 r3: Busy | Away
    r(6, 4, Jabber, XmppFed, Idle, None, Idle, Unspecified), // T6 r4: Idle | Idle
    r(6, 5, Jabber, XmppFed, Offline, None, Offline, Unspecified), // T6 r5: Offline | Offline
];
const T6_WEBEX: &[Row] = &[
    r(6, 1, Jabber, Webex, Available, None, Available, Unspecified), // T6 r1: Available | Available
    r(
        6,
        2,
        Jabber,
        Webex,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T6 r2: Do Not Disturb | Do Not Disturb
    r(6, 3, Jabber, Webex, Busy, None, Idle, Unspecified),           // T6 r3: Busy | Idle
    r(6, 4, Jabber, Webex, Idle, None, Idle, Unspecified),           // T6 r4: Idle | Idle
    r(6, 5, Jabber, Webex, Offline, None, Offline, Unspecified),     // T6 r5: Offline | Offline
];
const T6_SAMETIME: &[Row] = &[
    r(
        6,
        1,
        Jabber,
        Sametime,
        Available,
        None,
        Available,
        Unspecified,
    ), // T6 r1: Available | Available
    r(
        6,
        2,
        Jabber,
        Sametime,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T6 r2: Do Not Disturb | Do Not Disturb
    r(6, 3, Jabber, Sametime, Busy, None, Away, Unspecified), // T6 r3: Busy | Away
    r(6, 4, Jabber, Sametime, Idle, None, Idle, Unspecified), // T6 r4: Idle | Idle
    r(6, 5, Jabber, Sametime, Offline, None, Offline, Unspecified), // T6 r5: Offline | Offline
];

// ---- Table 7 - from a local third-party XMPP client to federated clients --
const T7_JABBER_FED: &[Row] = &[
    r(
        7,
        1,
        XmppLocal,
        JabberFed,
        Available,
        None,
        Available,
        Unspecified,
    ), // T7 r1: Available | Available
    r(
        7,
        2,
        XmppLocal,
        JabberFed,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T7 r2: Do Not Disturb | Do Not Disturb
    r(7, 3, XmppLocal, JabberFed, Away, None, Away, Unspecified), // T7 r3: Away | Away
    r(
        7,
        4,
        XmppLocal,
        JabberFed,
        ExtendedAway,
        None,
        Away,
        Unspecified,
    ), // T7 r4: Extended Away | Away
    r(
        7,
        5,
        XmppLocal,
        JabberFed,
        Away,
        Some("Idle"),
        Idle,
        Unspecified,
    ), // T7 r5: Away, status "Idle" | Idle
    r(
        7,
        6,
        XmppLocal,
        JabberFed,
        Offline,
        None,
        Offline,
        Unspecified,
    ), // T7 r6: Offline | Offline
];
const T7_XMPP_FED: &[Row] = &[
    r(
        7,
        1,
        XmppLocal,
        XmppFed,
        Available,
        None,
        Available,
        Unspecified,
    ), // T7 r1: Available | Available
    r(
        7,
        2,
        XmppLocal,
        XmppFed,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T7 r2: Do Not Disturb | Do Not Disturb
    r(7, 3, XmppLocal, XmppFed, Away, None, Away, Unspecified), // T7 r3: Away | Away
    r(
        7,
        4,
        XmppLocal,
        XmppFed,
        ExtendedAway,
        None,
        ExtendedAway,
        Unspecified,
    ), // T7 r4: Extended Away | Extended Away
    r(
        7,
        5,
        XmppLocal,
        XmppFed,
        Away,
        Some("Idle"),
        Away,
        Fixed("Idle"),
    ), // T7 r5: Away, status "Idle" | Away, status "Idle"
    r(
        7,
        6,
        XmppLocal,
        XmppFed,
        Offline,
        None,
        Offline,
        Unspecified,
    ), // T7 r6: Offline | Offline
];
const T7_WEBEX: &[Row] = &[
    r(
        7,
        1,
        XmppLocal,
        Webex,
        Available,
        None,
        Available,
        Unspecified,
    ), // T7 r1: Available | Available
    r(
        7,
        2,
        XmppLocal,
        Webex,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T7 r2: Do Not Disturb | Do Not Disturb
    r(7, 3, XmppLocal, Webex, Away, None, Away, Unspecified), // T7 r3: Away | Away
    r(
        7,
        4,
        XmppLocal,
        Webex,
        ExtendedAway,
        None,
        ExtendedAway,
        Unspecified,
    ), // T7 r4: Extended Away | Extended Away
    r(
        7,
        5,
        XmppLocal,
        Webex,
        Away,
        Some("Idle"),
        Away,
        Fixed("Idle"),
    ), // T7 r5: Away, status "Idle" | Away, status "Idle"
    r(7, 6, XmppLocal, Webex, Offline, None, Offline, Unspecified), // T7 r6: Offline | Offline
];
const T7_SAMETIME: &[Row] = &[
    r(
        7,
        1,
        XmppLocal,
        Sametime,
        Available,
        None,
        Available,
        Unspecified,
    ), // T7 r1: Available | Available
    r(
        7,
        2,
        XmppLocal,
        Sametime,
        DoNotDisturb,
        None,
        DoNotDisturb,
        Unspecified,
    ), // T7 r2: Do Not Disturb | Do Not Disturb
    r(7, 3, XmppLocal, Sametime, Away, None, Away, Unspecified), // T7 r3: Away | Away
    r(
        7,
        4,
        XmppLocal,
        Sametime,
        ExtendedAway,
        None,
        Away,
        Unspecified,
    ), // T7 r4: Extended Away | Away
    r(
        7,
        5,
        XmppLocal,
        Sametime,
        Away,
        Some("Idle"),
        Away,
        Fixed("Idle"),
    ), // T7 r5: Away, status "Idle" | Away, status "Idle"
    r(
        7,
        6,
        XmppLocal,
        Sametime,
        Offline,
        None,
        Offline,
        Unspecified,
    ), // T7 r6: Offline | Offline
];

/// Every (from, to) table column, in table order.
pub const TABLES: &[&[Row]] = &[
    T1_XMPP_LOCAL,
    T1_JABBER,
    T2_LYNC,
    T3_LYNC,
    T4_XMPP_LOCAL,
    T4_JABBER,
    T5_XMPP_LOCAL,
    T5_JABBER,
    T6_JABBER_FED,
    T6_XMPP_FED,
    T6_WEBEX,
    T6_SAMETIME,
    T7_JABBER_FED,
    T7_XMPP_FED,
    T7_WEBEX,
    T7_SAMETIME,
];

/// Every row of every table.
pub fn rows() -> impl Iterator<Item = &'static Row> {
    TABLES.iter().flat_map(|t| t.iter())
}

/// The rows that map `from` to `to`, or `None` when no table covers the pair.
pub const fn table(from: Family, to: Family) -> Option<&'static [Row]> {
    Some(match (from, to) {
        (Lync, XmppLocal) => T1_XMPP_LOCAL,
        (Lync, Jabber) => T1_JABBER,
        (Jabber, Lync) => T2_LYNC,
        (XmppLocal, Lync) => T3_LYNC,
        (Sametime, XmppLocal) => T4_XMPP_LOCAL,
        (Sametime, Jabber) => T4_JABBER,
        (Webex, XmppLocal) => T5_XMPP_LOCAL,
        (Webex, Jabber) => T5_JABBER,
        (Jabber, JabberFed) => T6_JABBER_FED,
        (Jabber, XmppFed) => T6_XMPP_FED,
        (Jabber, Webex) => T6_WEBEX,
        (Jabber, Sametime) => T6_SAMETIME,
        (XmppLocal, JabberFed) => T7_JABBER_FED,
        (XmppLocal, XmppFed) => T7_XMPP_FED,
        (XmppLocal, Webex) => T7_WEBEX,
        (XmppLocal, Sametime) => T7_SAMETIME,
        _ => return None,
    })
}

/// What to do with status text when a row does not mention it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatusRule {
    /// The tables as written: no text unless quoted or "with status message".
    #[default]
    Tables,
    /// The source's text travels unless the row quotes a replacement.
    Travel,
}

/// How a mapping was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A table row (possibly after replacing the source state by its nearest
    /// neighbour, see the module doc, step 4).
    Row {
        /// The row applied.
        row: &'static Row,
        /// The source state was replaced by this one first.
        nearest: Option<Availability>,
    },
    /// No row names the state; the target shows it natively (step 3).
    SameState {
        /// The source state was replaced by this one first.
        nearest: Option<Availability>,
    },
}

/// The result of a mapping, borrowing the status text from the source or the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped<'a> {
    /// The state the target shows.
    pub availability: Availability,
    /// The status text the target shows, if any.
    pub status: Option<&'a str>,
    /// Which rule decided it.
    pub via: Via,
}

/// The nearest state used when neither a row nor the target family knows a state.
const fn nearest(a: Availability) -> Option<Availability> {
    match a {
        Idle | BeRightBack | ExtendedAway => Some(Away),
        Busy => Some(DoNotDisturb),
        Available | DoNotDisturb | Away | Offline => None,
    }
}

fn status_matches(pattern: &str, status: Option<&str>) -> bool {
    status.is_some_and(|s| s.trim().eq_ignore_ascii_case(pattern))
}

fn find_row(rows: &'static [Row], a: Availability, status: Option<&str>) -> Option<&'static Row> {
    let mut generic = None;
    for row in rows {
        if row.when.availability != a {
            continue;
        }
        match row.when.status {
            Some(p) if status_matches(p, status) => return Some(row),
            Some(_) => {}
            None => {
                if generic.is_none() {
                    generic = Some(row);
                }
            }
        }
    }
    generic
}

/// Map a state (and the source's status text) from `from` to `to` with
/// [`StatusRule::Tables`]. `None` means no table covers the pair.
///
/// ```
/// use fedgate_presence::{tables, Availability, Family};
/// let m = tables::map(Family::Lync, Family::XmppLocal, Availability::DoNotDisturb, None).unwrap();
/// assert_eq!((m.availability, m.status), (Availability::Away, Some("Busy")));
/// ```
pub fn map<'a>(
    from: Family,
    to: Family,
    availability: Availability,
    status: Option<&'a str>,
) -> Option<Mapped<'a>> {
    map_with(StatusRule::Tables, from, to, availability, status)
}

/// [`map`] with an explicit [`StatusRule`].
pub fn map_with<'a>(
    rule: StatusRule,
    from: Family,
    to: Family,
    availability: Availability,
    status: Option<&'a str>,
) -> Option<Mapped<'a>> {
    let rows = table(from, to)?;
    let unspecified = match rule {
        StatusRule::Tables => None,
        StatusRule::Travel => status,
    };
    let mut state = availability;
    let mut replaced = None;
    loop {
        if let Some(row) = find_row(rows, state, status) {
            let out = match row.then.status {
                Fixed(text) => Some(text),
                Keep => status,
                Unspecified => unspecified,
            };
            return Some(Mapped {
                availability: row.then.availability,
                status: out,
                via: Via::Row {
                    row,
                    nearest: replaced,
                },
            });
        }
        if to.can_show(state) {
            return Some(Mapped {
                availability: state,
                status: unspecified,
                via: Via::SameState { nearest: replaced },
            });
        }
        // Every family shows Away and Do Not Disturb, so `nearest` is always
        // Some here; the fallback keeps this total without a panic path.
        match nearest(state) {
            Some(n) => {
                state = n;
                replaced = Some(n);
            }
            None => {
                return Some(Mapped {
                    availability: state,
                    status: unspecified,
                    via: Via::SameState { nearest: replaced },
                });
            }
        }
    }
}

/// Map a whole [`FamilyPresence`] to another family.
///
/// The status pattern of a row is compared with the source's status text, or
/// with its activity's text when it has none (RPID `meeting` matches
/// "In a meeting"). The activity itself travels unchanged.
pub fn map_presence(
    rule: StatusRule,
    source: &FamilyPresence,
    to: Family,
) -> Option<FamilyPresence> {
    let p = &source.presence;
    let m = map_with(
        rule,
        source.family,
        to,
        p.availability,
        p.effective_status(),
    )?;
    Some(FamilyPresence {
        family: to,
        presence: Presence {
            availability: m.availability,
            activity: p.activity.clone(),
            status: m.status.map(str::to_owned),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activity;
    use proptest::prelude::*;

    #[test]
    fn rows_sit_in_their_table() {
        for t in TABLES {
            for row in *t {
                assert_eq!(table(row.from, row.to), Some(*t), "{row}");
            }
        }
        assert_eq!(rows().count(), 12 + 4 + 5 + 10 + 10 + 20 + 24);
    }

    #[test]
    fn every_row_target_is_showable() {
        for row in rows() {
            assert!(row.to.can_show(row.then.availability), "{row}");
        }
    }

    #[test]
    fn unmapped_pairs() {
        assert!(map(Sametime, Lync, Available, None).is_none());
        assert!(map(Lync, Lync, Available, None).is_none());
        assert!(map(Lync, XmppFed, Available, None).is_none());
    }

    #[test]
    fn fallback_rules() {
        // Lync Available-Idle has no row in Table 1: xmpp-local has no Idle -> Away.
        let m = map(Lync, XmppLocal, Idle, None).unwrap();
        assert_eq!(m.availability, Away);
        assert!(matches!(
            m.via,
            Via::Row {
                nearest: Some(Away),
                ..
            }
        ));
        // Jabber shows Idle natively.
        let m = map(Lync, Jabber, Idle, None).unwrap();
        assert_eq!(m.availability, Idle);
        assert_eq!(m.via, Via::SameState { nearest: None });
        // Jabber Away has no row in Table 2; Lync shows Away.
        assert_eq!(map(Jabber, Lync, Away, None).unwrap().availability, Away);
        // Jabber Idle -> Lync: no Idle user state -> Away.
        assert_eq!(map(Jabber, Lync, Idle, None).unwrap().availability, Away);
        // A Busy from Sametime reaches an XMPP client as Do Not Disturb.
        assert_eq!(
            map(Sametime, XmppLocal, Busy, None).unwrap().availability,
            DoNotDisturb
        );
    }

    #[test]
    fn status_rules() {
        let m = map(Lync, XmppLocal, Away, Some("lunch")).unwrap();
        assert_eq!(m.status, None);
        let m = map_with(StatusRule::Travel, Lync, XmppLocal, Away, Some("lunch")).unwrap();
        assert_eq!(m.status, Some("lunch"));
        // A quoted text wins over the source's text under both rules.
        let m = map_with(StatusRule::Travel, Lync, XmppLocal, Busy, Some("x")).unwrap();
        assert_eq!(m.status, Some("Busy"));
        // Pattern matching ignores case and blanks.
        let m = map(Webex, XmppLocal, Away, Some("  in A meeting ")).unwrap();
        assert_eq!(
            (m.availability, m.status),
            (Available, Some("In a meeting"))
        );
    }

    #[test]
    fn activity_matches_status_pattern() {
        let src = FamilyPresence {
            family: Webex,
            presence: Presence::new(Away).with_activity(Activity::Meeting),
        };
        let out = map_presence(StatusRule::Tables, &src, XmppLocal).unwrap();
        assert_eq!(out.family, XmppLocal);
        assert_eq!(out.presence.availability, Available);
        assert_eq!(out.presence.status.as_deref(), Some("In a meeting"));
        assert_eq!(out.presence.activity, Some(Activity::Meeting));
    }

    fn any_status() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some("In a meeting".to_owned())),
            Just(Some("Idle".to_owned())),
            Just(Some("Busy".to_owned())),
            "[ -~]{0,20}".prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every state of every family maps, for every pair a table covers,
        /// to a state the target family can show; and status text is only
        /// ever the source's own or a text quoted in the tables.
        #[test]
        fn every_state_maps_to_something_defined(
            from in proptest::sample::select(Family::ALL.to_vec()),
            to in proptest::sample::select(Family::ALL.to_vec()),
            a in proptest::sample::select(Availability::ALL.to_vec()),
            status in any_status(),
            travel in any::<bool>(),
        ) {
            let rule = if travel { StatusRule::Travel } else { StatusRule::Tables };
            let m = map_with(rule, from, to, a, status.as_deref());
            match table(from, to) {
                None => prop_assert!(m.is_none()),
                Some(_) => {
                    let m = m.expect("covered pair maps");
                    prop_assert!(to.can_show(m.availability), "{from} {a} -> {to} {}", m.availability);
                    if let Some(s) = m.status {
                        let quoted = rows().any(|r| matches!(r.then.status, Fixed(t) if t == s));
                        prop_assert!(quoted || Some(s) == status.as_deref());
                    }
                    // Offline always stays Offline and nothing else becomes Offline.
                    prop_assert_eq!(a == Offline, m.availability == Offline);
                }
            }
        }
    }
}
