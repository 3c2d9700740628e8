//! # fedgate-sip
//!
//! The SIP message codec of fedgate: a message model, a zero-copy parser, a
//! validator, a canonical serializer and stream framing, for RFC 3261 messages as
//! exchanged with Microsoft Lync / Skype for Business and other SIP peers.
//!
//! **What it does**
//! - Parses requests and responses from a UDP datagram ([`parse_datagram`]) or frames
//!   them off a TCP/TLS stream ([`frame_stream`], [`StreamFramer`]), including RFC
//!   5626 CRLF keep-alives. Header names and values are [`bytes::Bytes`] slices of
//!   the input; line folds are unfolded (the only case that copies).
//! - Accepts everything RFC 3261's grammar allows, as exercised by the RFC 4475
//!   torture tests: folded lines, compact and mixed-case names, whitespace before
//!   the colon, extension methods, `sip:`/`sips:`/`tel:`/opaque URIs, quoted-pairs
//!   (NUL included), `%XX` escapes (kept, decoded on request by [`unescape`]).
//! - Decodes typed headers on demand ([`Headers::via`], [`Headers::from`],
//!   [`Headers::cseq`], …), so one broken optional header does not sink a message.
//! - Validates (RFC 3261 §8.2, §16.3) in a separate step, [`validate()`], which says
//!   which status to answer; [`check_policy`] adds the checks that depend on what
//!   the element supports (416, 420, 405/501, 483).
//! - Serializes canonically ([`Message::encode`]): `parse(encode(m)) == m`.
//! - Keeps Microsoft extensions untouched: `epid`, `ms-received-port`,
//!   `ms-received-cid`, `ms-key-info`, `ms-diagnostics`, `ms-text-format`, …
//! - Bounds what a peer can make it hold ([`Limits`]).
//!
//! **What it does not do**: no I/O and no clocks; no transactions or dialogs (see
//! `fedgate-sip-txn`); no SDP, PIDF or multipart body parsing (bodies are opaque
//! `Bytes`); no authentication headers beyond keeping them; no `Date` parsing; no
//! URI comparison rules (RFC 3261 §19.1.4).
//!
//! # Entry points
//!
//! | what | function / type |
//! |---|---|
//! | one UDP datagram | [`parse_datagram`] (or [`Message::parse`] with default limits) |
//! | TCP/TLS stream | [`StreamFramer::decode`] over a `BytesMut`; stateless [`frame_stream`] |
//! | header iteration | [`Message::headers`] → [`Headers::iter`], [`Headers::get_named`], [`HeaderRef`] |
//! | borrowed typed views (no allocation) | [`Message::vias`], [`Message::top_via_ref`], [`Message::from_ref`], [`Message::to_ref`], [`Message::call_id_ref`], [`Message::cseq_ref`], [`Message::contact_refs`]; see [`view`] |
//! | typed headers | [`Message::via`], [`Message::top_via`], [`Message::from`], [`Message::to`], [`Message::call_id`], [`Message::cseq`], [`Message::contact`], [`Message::content_length`], and the rest on [`Headers`] |
//! | validation | [`validate()`], then [`check_policy`] |
//! | serializer | [`Message::encode`], [`Message::to_bytes`]; [`HeaderValue::encode`] for typed values |
//!
//! # Cost model
//!
//! An untyped parse makes 2–3 heap allocations whatever the header count: the
//! header list (one `Vec` with capacity, names and values stored as offsets into
//! the input `Bytes`), the Request-URI's parameter list if it has parameters, and
//! the reference count that `bytes` creates the first time a `Vec`-backed `Bytes`
//! is sliced. A folded header costs one more (its unfolded copy). Typed values hold
//! `Bytes` slices of the input (no copies) and one `Vec` per non-empty parameter
//! list; common parameter names (`tag`, `branch`, `epid`, `transport`, `lr`, …) and
//! `SIP`/`2.0` in Via are static `Bytes` equal to the received bytes, so they touch
//! no reference count. Typed accessors slice the message buffer directly, without
//! an intermediate `Bytes` per header value.
//!
//! # Errors and answers
//!
//! | error | requests | responses |
//! |---|---|---|
//! | malformed start line, header line, or header value read by [`validate()`] | 400 | drop |
//! | SIP-Version other than 2.0 ([`validate()`]) | 505 | drop |
//! | CSeq method ≠ request method ([`validate()`]) | 400; 501 if the method is an unknown extension | — |
//! | Content-Length negative, non-numeric, repeated; missing on a stream; body short in a datagram | 400, and close a stream | drop |
//! | [`Limits`] exceeded | 513 (headers), 413 (body), 414 (request line) | drop |
//! | [`check_policy`] | 416 scheme, 405/501 method, 420 (+ Unsupported list), 483 | — |
//!
//! # Example
//!
//! ```
//! use fedgate_sip::{parse_datagram, validate, Limits, Method};
//!
//! let wire = b"MESSAGE sip:bob@contoso.com SIP/2.0\r\n\
//! Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK776;ms-received-port=5061\r\n\
//! Max-Forwards: 70\r\n\
//! From: \"Alice\" <sip:alice@fabrikam.com>;tag=a1;epid=d6277c8671\r\n\
//! To: <sip:bob@contoso.com>\r\n\
//! Call-ID: 1@fabrikam.com\r\n\
//! CSeq: 1 MESSAGE\r\n\
//! Content-Type: text/plain\r\n\
//! Content-Length: 2\r\n\
//! \r\n\
//! hi";
//! let msg = parse_datagram(bytes::Bytes::from_static(wire), &Limits::default()).unwrap();
//! validate(&msg).unwrap();
//! assert_eq!(msg.method(), Some(&Method::Message));
//! assert_eq!(msg.from().unwrap().epid().unwrap().as_ref(), b"d6277c8671");
//! assert_eq!(msg.top_via().unwrap().branch().unwrap().as_ref(), b"z9hG4bK776");
//! assert_eq!(&msg.body[..], b"hi");
//! // Canonical output parses back to the same message.
//! assert_eq!(fedgate_sip::Message::parse(msg.to_bytes()).unwrap(), msg);
//! ```
#![forbid(unsafe_code)]

mod chars;
pub mod error;
pub mod headers;
pub mod limits;
pub mod message;
pub mod method;
pub mod parse;
pub mod typed;
pub mod uri;
pub mod validate;
pub mod view;

pub use error::{Answer, Error, FramingError, HeaderError, Salvage, ValueError};
pub use headers::{Header, HeaderKind, HeaderRef, Headers};
pub use limits::{Limit, Limits};
pub use message::{Message, Reason, RequestLine, StartLine, StatusCode, StatusLine, Version};
pub use method::Method;
pub use parse::{Frame, StreamFramer, frame_stream, parse_datagram};
pub use typed::{
    Address, CSeq, CallId, Contacts, ContentLength, DeltaSeconds, Event, HeaderValue, MaxForwards,
    MediaType, OptionTag, SubscriptionState, TokenParams, Transport, Via, unquote,
};
pub use uri::{AbsoluteUri, Host, Param, Params, SipUri, TelUri, Uri, unescape};
pub use validate::{Policy, Rejection, Validated, check_policy, validate, validate_views};
pub use view::{
    AddressRef, AddressRefs, CSeqRef, CallIdRef, ContactRefs, HostRef, ParamsIter, ParamsRef,
    SipUriRef, TelUriRef, UriParamsRef, UriRef, ViaRef, ViaRefs,
};
