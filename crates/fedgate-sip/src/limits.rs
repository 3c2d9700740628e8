//! Limits on what a peer can make the parser hold.

use std::fmt;

/// Size limits, checked while parsing. Exceeding one gives [`Error::Limit`](crate::Error::Limit).
///
/// | field | default | answer when exceeded (requests; responses are dropped) |
/// |---|---|---|
/// | `max_message_size` | 65 536 bytes (64 KiB) | 513 Message Too Large if the header block is too big; 413 Request Entity Too Large if the body makes it too big |
/// | `max_headers` | 256 header fields (lines after unfolding) | 513 |
/// | `max_line_length` | 8 192 bytes for one (unfolded) header field or the start line | 513; 414 Request-URI Too Long for the request line |
///
/// The defaults sit well above RFC 4475's `longreq.dat` (3 515 bytes, a 1 KB
/// display name, 34 Via values in 25 lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole message: start line, headers and body.
    pub max_message_size: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Length of one logical line (a header field with its folds, or the start line).
    pub max_line_length: usize,
}

impl Limits {
    /// The documented defaults.
    pub const DEFAULT: Limits = Limits {
        max_message_size: 64 * 1024,
        max_headers: 256,
        max_line_length: 8 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// The header block alone exceeds `max_message_size`.
    HeaderBlockSize,
    /// Headers plus `Content-Length` exceed `max_message_size`.
    BodySize,
    /// More than `max_headers` header fields.
    HeaderCount,
    /// A header field longer than `max_line_length`.
    HeaderLength,
    /// A start line longer than `max_line_length`.
    StartLineLength,
}

impl Limit {
    /// The status a server answers a request with.
    pub fn status(self) -> u16 {
        match self {
            Limit::BodySize => 413,
            Limit::StartLineLength => 414,
            Limit::HeaderBlockSize | Limit::HeaderCount | Limit::HeaderLength => 513,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::HeaderBlockSize => "max_message_size (headers)",
            Limit::BodySize => "max_message_size (body)",
            Limit::HeaderCount => "max_headers",
            Limit::HeaderLength => "max_line_length (header)",
            Limit::StartLineLength => "max_line_length (start line)",
        })
    }
}
