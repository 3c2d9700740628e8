//! Stream errors (RFC 6120 §4.9) and the reader's error type.

use crate::limits::LimitKind;
use crate::ns;
use crate::tree::{Element, ElementRef};
use crate::writer::escape_text;

conditions! {
    /// Stream error conditions, RFC 6120 §4.9.3.
    StreamErrorCondition {
        /// §4.9.3.1
        BadFormat = "bad-format",
        /// §4.9.3.2
        BadNamespacePrefix = "bad-namespace-prefix",
        /// §4.9.3.3
        Conflict = "conflict",
        /// §4.9.3.4
        ConnectionTimeout = "connection-timeout",
        /// §4.9.3.5
        HostGone = "host-gone",
        /// §4.9.3.6
        HostUnknown = "host-unknown",
        /// §4.9.3.7
        ImproperAddressing = "improper-addressing",
        /// §4.9.3.8
        InternalServerError = "internal-server-error",
        /// §4.9.3.9
        InvalidFrom = "invalid-from",
        /// §4.9.3.10
        InvalidNamespace = "invalid-namespace",
        /// §4.9.3.11
        InvalidXml = "invalid-xml",
        /// §4.9.3.12
        NotAuthorized = "not-authorized",
        /// §4.9.3.13
        NotWellFormed = "not-well-formed",
        /// §4.9.3.14
        PolicyViolation = "policy-violation",
        /// §4.9.3.15
        RemoteConnectionFailed = "remote-connection-failed",
        /// §4.9.3.16
        Reset = "reset",
        /// §4.9.3.17
        ResourceConstraint = "resource-constraint",
        /// §4.9.3.18
        RestrictedXml = "restricted-xml",
        /// §4.9.3.19
        SeeOtherHost = "see-other-host",
        /// §4.9.3.20
        SystemShutdown = "system-shutdown",
        /// §4.9.3.21
        UndefinedCondition = "undefined-condition",
        /// §4.9.3.22
        UnsupportedEncoding = "unsupported-encoding",
        /// §4.9.3.23
        UnsupportedFeature = "unsupported-feature",
        /// §4.9.3.24
        UnsupportedStanzaType = "unsupported-stanza-type",
        /// §4.9.3.25
        UnsupportedVersion = "unsupported-version",
    }
}

/// A stream error as sent in `<stream:error/>` (RFC 6120 §4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// The defined condition.
    pub condition: StreamErrorCondition,
    /// For `see-other-host`: the host (and port) to connect to instead.
    pub see_other_host: Option<String>,
    /// Optional human-readable text (sent without `xml:lang`).
    pub text: Option<String>,
}

impl StreamError {
    /// A stream error with only a condition.
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            see_other_host: None,
            text: None,
        }
    }

    /// Appends `<stream:error>…</stream:error>` to `out`. The `stream` prefix is bound on
    /// the element itself, so it is correct even where the peer's header used another
    /// prefix (jabberd2#126).
    pub fn write_to(&self, out: &mut String) {
        out.push_str("<stream:error xmlns:stream='");
        out.push_str(ns::STREAM);
        out.push_str("'><");
        out.push_str(self.condition.as_str());
        out.push_str(" xmlns='urn:ietf:params:xml:ns:xmpp-streams'");
        match &self.see_other_host {
            Some(h) if self.condition == StreamErrorCondition::SeeOtherHost => {
                out.push('>');
                escape_text(out, h);
                out.push_str("</see-other-host>");
            }
            _ => out.push_str("/>"),
        }
        if let Some(t) = &self.text {
            out.push_str("<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>");
            escape_text(out, t);
            out.push_str("</text>");
        }
        out.push_str("</stream:error>");
    }

    /// The XML of the error element.
    pub fn to_xml(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }

    /// Reads a received `<stream:error/>` element. Unknown conditions map to
    /// `undefined-condition`; `None` if the element is not a stream error.
    pub fn from_element(el: ElementRef<'_>) -> Option<Self> {
        if el.name() != "error" || el.ns() != ns::STREAM {
            return None;
        }
        let mut e = StreamError::new(StreamErrorCondition::UndefinedCondition);
        let mut found = false;
        for c in el.elements() {
            if c.ns() != ns::STREAM_ERRORS {
                continue;
            }
            if c.name() == "text" {
                e.text = Some(c.text());
            } else if !found {
                found = true;
                if let Some(cond) = StreamErrorCondition::from_name(c.name()) {
                    e.condition = cond;
                    if cond == StreamErrorCondition::SeeOtherHost {
                        e.see_other_host = Some(c.text());
                    }
                }
            }
        }
        Some(e)
    }

    /// Convenience for [`StreamError::from_element`] on an owned element.
    pub fn from_owned(el: &Element) -> Option<Self> {
        Self::from_element(el.root())
    }
}

impl From<StreamErrorCondition> for StreamError {
    fn from(c: StreamErrorCondition) -> Self {
        StreamError::new(c)
    }
}

/// What made the stream reader fail. Each maps to the stream error to send
/// ([`ReadError::condition`]); after an error the reader stays failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Not well-formed XML (or not namespace-well-formed, or bad UTF-8).
    #[error("not well-formed XML at byte {offset}: {reason}")]
    NotWellFormed {
        /// What was wrong.
        reason: &'static str,
        /// Offset in the stream (bytes since the last reset) where the unit started.
        offset: u64,
    },
    /// XML that RFC 6120 §11.1 forbids: a DTD, entity declaration or reference other
    /// than the predefined ones, a processing instruction or a comment.
    #[error("restricted XML at byte {offset}: {what}")]
    RestrictedXml {
        /// Which construct.
        what: &'static str,
        /// Offset in the stream.
        offset: u64,
    },
    /// A configured [`Limits`](crate::Limits) value was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(LimitKind),
    /// The stream root or content namespace is wrong (RFC 6120 §4.9.3.10).
    #[error("invalid namespace: {0}")]
    InvalidNamespace(String),
    /// A namespace prefix other than `stream` on the stream header (§4.9.3.2).
    #[error("bad namespace prefix on the stream header: {0}")]
    BadNamespacePrefix(String),
    /// Well-formed XML that cannot be processed (e.g. text between stanzas).
    #[error("bad format: {0}")]
    BadFormat(&'static str),
    /// The XML declaration named an encoding other than UTF-8.
    #[error("unsupported encoding")]
    UnsupportedEncoding,
}

impl ReadError {
    /// The stream error condition to send for this error.
    pub fn condition(&self) -> StreamErrorCondition {
        match self {
            ReadError::NotWellFormed { .. } => StreamErrorCondition::NotWellFormed,
            ReadError::RestrictedXml { .. } => StreamErrorCondition::RestrictedXml,
            ReadError::Limit(_) => StreamErrorCondition::PolicyViolation,
            ReadError::InvalidNamespace(_) => StreamErrorCondition::InvalidNamespace,
            ReadError::BadNamespacePrefix(_) => StreamErrorCondition::BadNamespacePrefix,
            ReadError::BadFormat(_) => StreamErrorCondition::BadFormat,
            ReadError::UnsupportedEncoding => StreamErrorCondition::UnsupportedEncoding,
        }
    }

    /// The stream error to send for this error.
    pub fn to_stream_error(&self) -> StreamError {
        StreamError::new(self.condition())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::escape_attr;

    #[test]
    fn rfc6120_4_9_3_all_conditions_round_trip_names() {
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for c in StreamErrorCondition::ALL {
            assert_eq!(StreamErrorCondition::from_name(c.as_str()), Some(*c));
        }
        assert_eq!(StreamErrorCondition::from_name("nope"), None);
    }

    #[test]
    fn stream_error_xml() {
        let mut e = StreamError::new(StreamErrorCondition::HostUnknown);
        e.text = Some("a<b".into());
        assert_eq!(
            e.to_xml(),
            "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a&lt;b</text></stream:error>"
        );
    }

    #[test]
    fn escape_helpers_are_used() {
        let mut s = String::new();
        escape_attr(&mut s, "'");
        assert_eq!(s, "&apos;");
    }
}
