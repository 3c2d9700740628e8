//! Request methods: the ones this crate knows, and any extension token.

use bytes::Bytes;

use crate::chars;
use crate::error::ValueError;

/// A SIP method (`Method = INVITEm / ACKm / … / extension-method`, RFC 3261 §25.1).
///
/// Methods are case-sensitive. An extension method holds its token; a known method
/// name is never held as `Extension` (construct with [`Method::parse`] or
/// [`Method::from_static`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// REGISTER
    Register,
    /// OPTIONS
    Options,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// MESSAGE (RFC 3428)
    Message,
    /// INFO (RFC 6086)
    Info,
    /// PRACK (RFC 3262)
    Prack,
    /// UPDATE (RFC 3311)
    Update,
    /// REFER (RFC 3515)
    Refer,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token (`BENOTIFY`, `SERVICE`, …).
    Extension(Bytes),
}

const KNOWN: &[(&str, Method)] = &[
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("REGISTER", Method::Register),
    ("OPTIONS", Method::Options),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("MESSAGE", Method::Message),
    ("INFO", Method::Info),
    ("PRACK", Method::Prack),
    ("UPDATE", Method::Update),
    ("REFER", Method::Refer),
    ("PUBLISH", Method::Publish),
];

impl Method {
    /// Parses a method token (a slice of `src` or the whole of it).
    pub fn parse(src: &Bytes) -> Result<Method, ValueError> {
        Self::from_slice(src, src)
    }

    /// A method from a static token; `Err` if it is not a token.
    pub fn from_static(s: &'static str) -> Result<Method, ValueError> {
        Self::parse(&Bytes::from_static(s.as_bytes()))
    }

    pub(crate) fn from_slice(src: &Bytes, s: &[u8]) -> Result<Method, ValueError> {
        if let Some(m) = Self::known(s) {
            return Ok(m);
        }
        if !chars::is_token(s) {
            return Err(ValueError::new("method is not a token"));
        }
        Ok(Method::Extension(chars::sub(src, s)))
    }

    /// The known method named exactly `s` (methods are case-sensitive), if any.
    #[inline]
    pub(crate) fn known(s: &[u8]) -> Option<Method> {
        Some(match s {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"MESSAGE" => Method::Message,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"REFER" => Method::Refer,
            b"PUBLISH" => Method::Publish,
            _ => return None,
        })
    }

    /// True if a method parsed from the token `s` would equal `self`, without
    /// building it: a known name is never an `Extension`, so an `Extension`
    /// holding a known name (only constructible by hand) equals nothing parsed.
    #[inline]
    pub(crate) fn eq_token(&self, s: &[u8]) -> bool {
        match self {
            Method::Extension(b) => b[..] == *s && Self::known(s).is_none(),
            m => Self::known(s).as_ref() == Some(m),
        }
    }

    /// The method name.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Method::Extension(b) => b,
            known => KNOWN
                .iter()
                .find(|(_, m)| m == known)
                .map_or(&b""[..], |(n, _)| n.as_bytes()),
        }
    }

    /// True for methods other than the fourteen this crate names.
    pub fn is_extension(&self) -> bool {
        matches!(self, Method::Extension(_))
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is ASCII.
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}
