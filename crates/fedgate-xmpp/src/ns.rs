//! Namespace names used by this crate.

/// `http://etherx.jabber.org/streams` (RFC 6120 §4.8.1).
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// `jabber:server`, the s2s content namespace.
pub const SERVER: &str = "jabber:server";
/// `jabber:client`, the c2s content namespace.
pub const CLIENT: &str = "jabber:client";
/// `jabber:server:dialback` (XEP-0220), bound to the `db` prefix.
pub const DIALBACK: &str = "jabber:server:dialback";
/// `urn:xmpp:features:dialback`, the dialback stream feature (XEP-0220 §2.4).
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
/// `urn:ietf:params:xml:ns:xmpp-streams`, stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// `urn:ietf:params:xml:ns:xmpp-stanzas`, stanza error conditions.
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// `urn:ietf:params:xml:ns:xmpp-tls`.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl`.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-bind`.
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// `urn:ietf:params:xml:ns:xmpp-session` (legacy, RFC 3921).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// The namespace the `xml` prefix is always bound to.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
