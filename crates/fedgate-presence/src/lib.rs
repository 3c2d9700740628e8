//! fedgate-presence: the canonical presence model of the fedgate federation
//! gateway, the seven availability mapping tables, and the presence codecs.
//!
//! # What it does
//!
//! * [`model`]: a canonical [`Presence`] (an [`Availability`], an optional
//!   [`Activity`] such as "In a meeting", optional status text) and the
//!   [`Family`] of client that shows it (`lync`, `xmpp-local`, `jabber`,
//!   `xmpp-fed`, `jabber-fed`, `sametime`, `webex`).
//! * [`tables`]: Tables 1–7 of `spec/presence-mapping.md` as data, one
//!   [`tables::Row`] per cell, and [`tables::map`], which applies them,
//!   including the rule that status text travels (Lync Busy or Do Not
//!   Disturb reaches an XMPP client as Away with the status "Busy").
//! * Codecs, reading and writing, tolerant of unknown extensions and bounded
//!   by [`Limits`] (size, depth, element and attribute counts; DTDs refused):
//!   [`pidf`] (RFC 3863 + RFC 4480 RPID + RFC 8048 `<show/>`), [`msrtc`]
//!   (Microsoft availability numbers in `msrtc-event-categories` documents)
//!   and [`xmpp`] (`<presence/>` show, status, priority). The readers take
//!   `&[u8]` straight from the network and return typed [`Error`]s; they never
//!   panic.
//! * [`stox`]: the SIP ⇄ XMPP interworking tables of RFC 8048 (presence),
//!   RFC 7572 (messages) and RFC 7247 (errors, addresses with XEP-0106).
//! * [`checker`]: the logic of the `map` example, a command-line checker.
//!
//! # What it does not do
//!
//! No I/O, no clock, no subscriptions or authorization (that is
//! `fedgate-policy`), no SIP or XMPP framing (`fedgate-sip`, `fedgate-xmpp`),
//! no multipart/RLMI unwrapping of Lync NOTIFY bodies (hand it the
//! `msrtc-event-categories` part), no aggregation across time (debouncing),
//! no PRECIS case folding of JIDs, and no writer for the legacy
//! `text/xml+msrtc.pidf` format (it is read only).
//!
//! # Example
//!
//! ```
//! use fedgate_presence::{msrtc, tables, xmpp, Family, FamilyPresence, StatusRule};
//!
//! // A Lync contact publishes Do Not Disturb with a note.
//! let body = br#"<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories">
//!   <category name="state"><state xmlns="http://schemas.microsoft.com/2006/09/sip/state"
//!     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="aggregateState">
//!     <availability>9500</availability></state></category>
//!   <category name="note"><note xmlns="http://schemas.microsoft.com/2006/09/sip/note">
//!     <body type="personal">Writing the budget</body></note></category>
//! </categories>"#;
//! let lync = msrtc::parse(body)?.presence().expect("has a state");
//!
//! // Table 1 row 3: Do Not Disturb reaches a third-party XMPP client as Away "Busy".
//! let src = FamilyPresence { family: Family::Lync, presence: lync };
//! let local = tables::map_presence(StatusRule::Tables, &src, Family::XmppLocal).expect("Table 1");
//! let stanza = xmpp::write(&xmpp::XmppPresence::from_presence(&local.presence, 0));
//! assert_eq!(stanza, r#"<presence xmlns="jabber:client"><show>away</show><status>Busy</status></presence>"#);
//! # Ok::<(), fedgate_presence::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checker;
pub mod model;
pub mod msrtc;
pub mod pidf;
pub mod stox;
pub mod tables;
mod xml;
pub mod xmpp;

pub use model::{Activity, Availability, Family, FamilyPresence, Presence, UnknownName};
pub use tables::{Mapped, StatusRule};
pub use xml::{Error, Limits};
