//! # fedgate-xmpp
//!
//! The sans-IO XMPP core of fedgate: an incremental XML stream reader, element trees and
//! a writer, typed stanzas and errors, JIDs, dialback keys and the server-to-server
//! negotiation state machines. No sockets, no TLS, no clock: bytes and time go in,
//! bytes, events and deadlines come out (the quinn-proto pattern).
//!
//! ## What it does
//! - [`StreamReader`]: XML stream reader on `xmlparser`, incremental over any chunk
//!   boundary, namespace-aware, entity/character references decoded, RFC 6120 §11.1
//!   restricted XML enforced, well-formedness checks `xmlparser` leaves to its caller
//!   (nesting, duplicate attributes, UTF-8), and [`Limits`] on everything.
//! - [`Element`]: arena element trees (three allocations per stanza), [`writer`] that
//!   escapes correctly.
//! - [`stanza`]: `message`, `presence`, `iq`, stanza errors (RFC 6120 §8.3) and
//!   [`StreamError`] (§4.9) as typed values with their XML.
//! - [`jid`]: RFC 7622 addresses with a documented PRECIS subset.
//! - [`dialback`]: XEP-0185 keys.
//! - [`s2s`]: initiating and receiving stream negotiation (STARTTLS, SASL EXTERNAL,
//!   Server Dialback) with per-domain authorization of every stanza.
//! - [`c2s`]: the server side of client streams for local users: STARTTLS, SASL
//!   ([`sasl`]: SCRAM-SHA-256, SCRAM-SHA-1, PLAIN over TLS only) against a
//!   [`sasl::CredentialVerifier`], resource binding, the legacy session.
//! - [`check`]: what the reader makes of a byte stream (the `xmppcheck` example).
//!
//! The state machines ([`s2s::S2sOutgoing`], [`s2s::S2sIncoming`],
//! [`c2s::C2sIncoming`]) share one run-loop contract: `handle_input(now, bytes)`,
//! then write `poll_transmit()`, act on every `poll_event()` (`StartTls` means: flush,
//! handshake, `handle_tls_established`), and call `handle_timeout(now)` at
//! `poll_timeout()`. Their state diagrams are in the module docs.
//!
//! ## What it does not do
//! - No I/O, DNS, TLS or certificate validation: the driver (fedgate-node) does those
//!   and tells the state machines the result.
//! - No SCRAM channel binding (`-PLUS`), no SASLprep of passwords, no XEP-0198 stream
//!   management, no XEP-0288 bidi, no in-band registration.
//! - Not full PRECIS (RFC 8264/8265/8266): see [`jid`] for the subset.
//!
//! ## Example
//! ```
//! use fedgate_xmpp::{Event, Limits, StreamKind, StreamReader, stanza::Stanza};
//! use std::time::Instant;
//!
//! let mut reader = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
//! let bytes = b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
//!     xmlns:stream='http://etherx.jabber.org/streams' from='a.test' to='b.test' version='1.0'>\
//!     <message from='alice@a.test' to='bob@b.test' type='chat'><body>hi &lt;3</body></message>";
//! for chunk in bytes.chunks(7) {
//!     reader.feed(chunk);
//!     while let Some(event) = reader.poll_event().unwrap() {
//!         if let Event::Element(el) = event {
//!             let Ok(Stanza::Message(m)) = Stanza::try_from(&el) else { panic!() };
//!             assert_eq!(m.body(), Some("hi <3"));
//!         }
//!     }
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod macros {
    macro_rules! conditions {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// Every condition, in RFC order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// The element name of the condition.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s,)* } }
            /// Parses an element name; `None` for names the RFC does not define.
            pub fn from_name(s: &str) -> Option<Self> { match s { $($s => Some($name::$v),)* _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
}

pub mod c2s;
pub mod check;
pub mod dialback;
pub mod error;
pub mod jid;
mod limits;
pub mod ns;
mod reader;
pub mod s2s;
pub mod sasl;
pub mod stanza;
mod tree;
pub mod writer;

pub use error::{ReadError, StreamError, StreamErrorCondition};
pub use jid::{BareJid, DomainPart, FullJid, Jid, JidError};
pub use limits::{LimitKind, Limits};
pub use reader::{Event, StreamHeader, StreamKind, StreamReader};
pub use tree::{Attrs, Children, Element, ElementBuilder, ElementRef, NodeRef};

#[cfg(test)]
pub(crate) mod test_util {
    use crate::{Element, Event, Limits, StreamKind, StreamReader};

    pub(crate) const HEADER: &str = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>";

    /// Reads `xml` as the only element of an s2s stream.
    pub(crate) fn parse_one(xml: &str) -> Element {
        let mut r = StreamReader::new(
            StreamKind::Server,
            Limits::default(),
            std::time::Instant::now(),
        );
        r.set_authenticated();
        r.feed(HEADER.as_bytes());
        r.feed(xml.as_bytes());
        assert!(matches!(r.poll_event(), Ok(Some(Event::StreamOpen(_)))));
        match r.poll_event() {
            Ok(Some(Event::Element(e))) => e,
            other => panic!("{other:?}"),
        }
    }
}
