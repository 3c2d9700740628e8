//! Errors, and the answer each one calls for.

use std::fmt;

use bytes::Bytes;

use crate::headers::Headers;
use crate::limits::Limit;
use crate::message::StartLine;

/// What an element does with a message it cannot accept: answer with a status code
/// (requests only), or drop it silently (responses, and input that is not a SIP
/// request at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Send a final response with this status code (400, 413, 414, 416, 420, 501, 505, 513…).
    Status(u16),
    /// Send nothing; discard the message.
    Drop,
}

impl Answer {
    /// The status code, if a response should be sent.
    pub fn status(self) -> Option<u16> {
        match self {
            Answer::Status(s) => Some(s),
            Answer::Drop => None,
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Status(s) => write!(f, "{s}"),
            Answer::Drop => f.write_str("drop"),
        }
    }
}

/// A header value that does not match its grammar. Returned by the typed decoders
/// (`Via::parse`, `Address::parse`, …); `reason` names the rule that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ValueError {
    /// The rule that failed, e.g. `"bad sent-by port"`.
    pub reason: &'static str,
}

impl ValueError {
    pub(crate) const fn new(reason: &'static str) -> Self {
        ValueError { reason }
    }
}

/// Why a typed header accessor on a [`Message`](crate::Message) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The header is not in the message.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// The header is there, but its value (or one of its comma-separated values)
    /// is malformed.
    #[error("malformed {name} header: {error}")]
    Invalid {
        /// Canonical header name.
        name: &'static str,
        /// What was wrong.
        error: ValueError,
    },
}

/// How a message's length could not be determined (RFC 3261 §7.5, §18.3, §20.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// `Content-Length` is negative, not a number, or too large for this platform.
    #[error("Content-Length is not a non-negative integer")]
    BadContentLength,
    /// `Content-Length` appears more than once.
    #[error("Content-Length appears more than once")]
    RepeatedContentLength,
    /// A stream (TCP/TLS) message without `Content-Length`.
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    /// A datagram whose body is shorter than its `Content-Length`.
    #[error("body is shorter than Content-Length")]
    TruncatedBody,
    /// A datagram whose header block never ends with an empty line.
    #[error("header block is not terminated by an empty line")]
    UnterminatedHeaders,
}

/// What could still be read from a message that failed to parse: the start line if
/// it was well formed, and the headers needed to answer it (`Via`, `From`, `To`,
/// `Call-ID`, `CSeq`), read leniently. Empty when nothing could be recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvage {
    /// The start line, if it parsed.
    pub start: Option<StartLine>,
    /// The `Via`, `From`, `To`, `Call-ID` and `CSeq` lines that could be split, in
    /// order, unfolded. Use the typed accessors of [`Headers`] on them.
    pub headers: Headers,
}

/// A message that could not be parsed or framed.
///
/// Every variant carries the byte offset where the problem was found, the
/// [`Answer`] to give (a status code for requests, `Drop` for responses and for
/// input that is not recognisably a request), and a [`Salvage`] with what was
/// already understood, so that a 400 can still be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request line or status line is malformed.
    #[error("malformed start line at byte {offset}: {reason}")]
    StartLine {
        /// Byte offset in the input.
        offset: usize,
        /// The rule that failed.
        reason: &'static str,
        /// What to do.
        answer: Answer,
        /// What was understood.
        salvage: Box<Salvage>,
    },
    /// A header line is malformed (no colon, bad name, bad characters).
    #[error("malformed header {name:?} at byte {offset}: {reason}")]
    Header {
        /// Byte offset in the input.
        offset: usize,
        /// The header name as it appears (may be empty).
        name: Bytes,
        /// The rule that failed.
        reason: &'static str,
        /// What to do.
        answer: Answer,
        /// What was understood.
        salvage: Box<Salvage>,
    },
    /// The message length cannot be determined. On a stream this closes the
    /// connection (see [`Error::closes_connection`]).
    #[error("framing error at byte {offset}: {kind}")]
    Framing {
        /// Byte offset in the input.
        offset: usize,
        /// What went wrong.
        kind: FramingError,
        /// The header concerned (`Content-Length`), if any.
        name: Option<Bytes>,
        /// What to do.
        answer: Answer,
        /// What was understood.
        salvage: Box<Salvage>,
    },
    /// A configured [`Limits`](crate::Limits) value was exceeded.
    #[error("limit {limit} exceeded at byte {offset}")]
    Limit {
        /// Byte offset in the input.
        offset: usize,
        /// Which limit.
        limit: Limit,
        /// What to do.
        answer: Answer,
        /// What was understood.
        salvage: Box<Salvage>,
    },
}

impl Error {
    /// Byte offset in the input where the problem was found.
    pub fn offset(&self) -> usize {
        match self {
            Error::StartLine { offset, .. }
            | Error::Header { offset, .. }
            | Error::Framing { offset, .. }
            | Error::Limit { offset, .. } => *offset,
        }
    }

    /// The answer to give: a status code for a request, or `Drop`.
    pub fn answer(&self) -> Answer {
        match self {
            Error::StartLine { answer, .. }
            | Error::Header { answer, .. }
            | Error::Framing { answer, .. }
            | Error::Limit { answer, .. } => *answer,
        }
    }

    /// The header the error is about, if any.
    pub fn header(&self) -> Option<&Bytes> {
        match self {
            Error::Header { name, .. } => Some(name),
            Error::Framing { name, .. } => name.as_ref(),
            _ => None,
        }
    }

    /// What was understood before the error.
    pub fn salvage(&self) -> &Salvage {
        match self {
            Error::StartLine { salvage, .. }
            | Error::Header { salvage, .. }
            | Error::Framing { salvage, .. }
            | Error::Limit { salvage, .. } => salvage,
        }
    }

    /// True when a stream connection cannot be resynchronised after this error and
    /// must be closed (framing errors and exceeded limits; any error on a stream
    /// leaves the framing in doubt, so in practice a stream driver closes on all).
    pub fn closes_connection(&self) -> bool {
        matches!(self, Error::Framing { .. } | Error::Limit { .. })
    }
}
