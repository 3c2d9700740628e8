//! Limits on what a peer may make us buffer or track.

use std::time::Duration;

/// Limits applied to one XML stream. Exceeding any of them is answered with the
/// `<policy-violation/>` stream error and the stream is closed (RFC 6120 §4.9.3.14).
///
/// Every byte the reader buffers belongs to the stanza being read, so
/// [`Limits::max_stanza_bytes`] also bounds the reader's memory (plus one chunk handed to
/// [`StreamReader::feed`](crate::StreamReader::feed)). With the defaults, one stream
/// holds at most about: 256 KiB of unparsed bytes (one unfinished tag), 256 KiB of
/// decoded names and text, and 10 000 elements (+ as many text nodes) of ~100 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element (stanza or nonza) in bytes, from its `<` to the `>` that
    /// closes it, once the stream is authenticated. Also bounds the stream header.
    /// Default 256 KiB (Prosody uses 512 KiB, ejabberd 64 KiB-ish for c2s).
    pub max_stanza_bytes: usize,
    /// Largest top-level element before [`StreamReader::set_authenticated`] is called.
    /// Default 16 KiB (Prosody 0.12: 10 000 bytes). Features, dialback and SASL fit easily.
    ///
    /// [`StreamReader::set_authenticated`]: crate::StreamReader::set_authenticated
    pub max_stanza_bytes_unauthenticated: usize,
    /// Deepest nesting inside a stanza; the stanza element itself is depth 1. Default 32.
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element. Default 32.
    pub max_attributes: usize,
    /// Most elements in one stanza (the stanza itself included). Bounds the tree a
    /// stanza of [`Limits::max_stanza_bytes`] can make us build (each element costs
    /// about 100 bytes of nodes). Default 10 000.
    pub max_elements: usize,
    /// How long a stream may stay unauthenticated before the reader fails it with
    /// `<policy-violation/>`. The driver learns the deadline from `poll_timeout`.
    /// Default 60 s.
    pub unauthenticated_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_stanza_bytes_unauthenticated: 16 * 1024,
            max_depth: 32,
            max_attributes: 32,
            max_elements: 10_000,
            unauthenticated_lifetime: Duration::from_secs(60),
        }
    }
}

/// Which limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`Limits::max_stanza_bytes`] (or the unauthenticated variant).
    StanzaSize,
    /// [`Limits::max_depth`].
    Depth,
    /// [`Limits::max_attributes`].
    Attributes,
    /// [`Limits::max_elements`].
    Elements,
    /// [`Limits::unauthenticated_lifetime`].
    UnauthenticatedLifetime,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::StanzaSize => "stanza size",
            LimitKind::Depth => "element depth",
            LimitKind::Attributes => "attributes per element",
            LimitKind::Elements => "elements per stanza",
            LimitKind::UnauthenticatedLifetime => "unauthenticated stream lifetime",
        })
    }
}
