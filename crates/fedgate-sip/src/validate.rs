//! Validation, separate from parsing: RFC 3261 §8.2 (UAS) and §16.3 (proxy)
//! checks that every element makes, and the optional policy checks that depend on
//! what the element supports.

use bytes::Bytes;

use crate::chars;
use crate::error::{Answer, HeaderError, ValueError};
use crate::headers::{HeaderKind, Headers, split_list};
use crate::message::{Message, StartLine, Version};
use crate::method::Method;
use crate::typed::OptionTag;
use crate::uri::Uri;
use crate::view::{self, ContactRefs};

/// Why a message must not be processed, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{answer}: {reason}")]
pub struct Rejection {
    /// A status code for requests; `Drop` for responses.
    pub answer: Answer,
    /// Why, in a few words (fit for a Warning header or a log line).
    pub reason: &'static str,
    /// The header concerned, if any (canonical name).
    pub header: Option<&'static str>,
    /// For 420 Bad Extension: the option tags to list in `Unsupported`.
    pub unsupported: Vec<Bytes>,
}

fn rej(answer: Answer, reason: &'static str, header: Option<&'static str>) -> Rejection {
    Rejection {
        answer,
        reason,
        header,
        unsupported: Vec::new(),
    }
}

/// The checks every element makes on a parsed message before acting on it.
///
/// Requests (answers in brackets):
/// - SIP-Version must be 2.0 (505);
/// - the Request-URI must not carry URI headers (400, RFC 3261 §19.1.1);
/// - `To`, `From`, `Call-ID`, `CSeq` exactly once, `Via` at least once,
///   `Max-Forwards` and `Content-Length` at most once (400);
/// - `Via`, `From`, `To`, `Call-ID`, `CSeq`, and if present `Max-Forwards` (0–255),
///   `Contact`, `Route`, `Record-Route`, `Require`, `Proxy-Require` and
///   `Content-Type` must decode (400);
/// - the CSeq method must equal the request method: 400, or 501 when the request
///   method is an extension this crate does not know (RFC 4475 §3.1.2.18).
///
/// Responses: the same header checks; any failure is [`Answer::Drop`].
///
/// Application checks (416, 420, 483, 501 for unsupported methods) are in
/// [`check_policy`].
///
/// Allocates nothing and touches no reference count: the headers are counted in
/// one pass and decoded with the borrowed views of [`crate::view`], which accept
/// exactly what the owned decoders accept (so the verdicts are those of decoding
/// with [`Headers::via`], [`Headers::from`], …; `tests/validate_views.rs` checks
/// this against an owned implementation).
pub fn validate(msg: &Message) -> Result<(), Rejection> {
    validate_views(msg).map(|_| ())
}

/// The headers [`validate`] decodes, as borrowed views, for a caller that acts on
/// them next (a transaction layer matching the request): decoding them again
/// would cost as much as validating.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Validated<'a> {
    /// The top Via value, as [`Headers::top_via_ref`] reads it (`None` only if the
    /// first Via line is empty: then the top value is on a later line, and
    /// `top_via_ref` fails).
    pub top_via: Option<view::ViaRef<'a>>,
    /// From.
    pub from: view::AddressRef<'a>,
    /// To.
    pub to: view::AddressRef<'a>,
    /// Call-ID.
    pub call_id: view::CallIdRef<'a>,
    /// CSeq.
    pub cseq: view::CSeqRef<'a>,
}

/// [`validate`], returning the decoded top Via, From, To, Call-ID and CSeq on
/// success. Same checks, same verdicts, same cost.
pub fn validate_views(msg: &Message) -> Result<Validated<'_>, Rejection> {
    let req = msg.request_line();
    let answer = |s| {
        if req.is_some() {
            Answer::Status(s)
        } else {
            Answer::Drop
        }
    };
    if msg.version() != Version::SIP_2_0 {
        return Err(rej(answer(505), "SIP version not supported", None));
    }
    if let Some(Uri::Sip(u)) = req.map(|r| &r.uri)
        && u.headers.is_some()
    {
        return Err(rej(answer(400), "headers in Request-URI", None));
    }
    let h = msg.headers();
    // One pass over the header list counts every kind looked at below.
    let n = Counts::of(h);
    for (kind, c) in [
        (HeaderKind::To, n.to),
        (HeaderKind::From, n.from),
        (HeaderKind::CallId, n.call_id),
        (HeaderKind::CSeq, n.cseq),
    ] {
        match c {
            1 => {}
            0 => {
                return Err(rej(
                    answer(400),
                    "missing mandatory header",
                    Some(kind.name()),
                ));
            }
            _ => {
                return Err(rej(
                    answer(400),
                    "mandatory header repeated",
                    Some(kind.name()),
                ));
            }
        }
    }
    for (kind, c) in [
        (HeaderKind::MaxForwards, n.max_forwards),
        (HeaderKind::ContentLength, n.content_length),
        (HeaderKind::ContentType, n.content_type),
    ] {
        if c > 1 {
            return Err(rej(
                answer(400),
                "single-valued header repeated",
                Some(kind.name()),
            ));
        }
    }
    let bad = |e: HeaderError| match e {
        HeaderError::Missing(n) => rej(answer(400), "missing mandatory header", Some(n)),
        HeaderError::Invalid { name, .. } => rej(answer(400), "malformed header", Some(name)),
    };
    // The borrowed views decide exactly as the owned decoders (tests/views.rs,
    // tests/validate_views.rs) and allocate nothing.
    let mut vias = h.vias().map_err(bad)?;
    let top_via = vias.next().transpose().map_err(bad)?;
    for v in vias {
        v.map_err(bad)?;
    }
    // `vias` skips empty lines; `top_via_ref` reads the first line only.
    let top_via = top_via.filter(|_| {
        h.get(HeaderKind::Via)
            .is_some_and(|first| !first.value().is_empty())
    });
    let from = h.from_ref().map_err(bad)?;
    let to = h.to_ref().map_err(bad)?;
    let call_id = h.call_id_ref().map_err(bad)?;
    let cseq = h.cseq_ref().map_err(bad)?;
    if let Some(r) = req {
        if n.max_forwards == 1 {
            h.max_forwards().map_err(bad)?;
        }
        if n.content_type == 1
            && let Some(ct) = h.get(HeaderKind::ContentType)
        {
            view::check_media_type(ct.value())
                .map_err(|error| bad(invalid(HeaderKind::ContentType, error)))?;
        }
        if n.contact > 0 {
            match h.contact_refs().map_err(bad)? {
                ContactRefs::Star => {}
                ContactRefs::Addresses(a) => {
                    for c in a {
                        c.map_err(bad)?;
                    }
                }
            }
        }
        if n.route > 0 {
            for a in h.route_refs() {
                a.map_err(bad)?;
            }
        }
        if n.record_route > 0 {
            for a in h.record_route_refs() {
                a.map_err(bad)?;
            }
        }
        if n.require > 0 {
            option_tags(h, HeaderKind::Require).map_err(bad)?;
        }
        if n.proxy_require > 0 {
            option_tags(h, HeaderKind::ProxyRequire).map_err(bad)?;
        }
        if !r.method.eq_token(cseq.method_bytes()) {
            let code = if r.method.is_extension() { 501 } else { 400 };
            return Err(rej(
                Answer::Status(code),
                "CSeq method does not match the request method",
                Some("CSeq"),
            ));
        }
    }
    Ok(Validated {
        top_via,
        from,
        to,
        call_id,
        cseq,
    })
}

/// How many lines of each kind [`validate`] looks at.
#[derive(Default)]
struct Counts {
    to: usize,
    from: usize,
    call_id: usize,
    cseq: usize,
    max_forwards: usize,
    content_length: usize,
    content_type: usize,
    contact: usize,
    route: usize,
    record_route: usize,
    require: usize,
    proxy_require: usize,
}

impl Counts {
    #[inline]
    fn of(h: &Headers) -> Counts {
        let mut n = Counts::default();
        for k in h.kinds() {
            let Some(k) = k else { continue };
            let c = match k {
                HeaderKind::To => &mut n.to,
                HeaderKind::From => &mut n.from,
                HeaderKind::CallId => &mut n.call_id,
                HeaderKind::CSeq => &mut n.cseq,
                HeaderKind::MaxForwards => &mut n.max_forwards,
                HeaderKind::ContentLength => &mut n.content_length,
                HeaderKind::ContentType => &mut n.content_type,
                HeaderKind::Contact => &mut n.contact,
                HeaderKind::Route => &mut n.route,
                HeaderKind::RecordRoute => &mut n.record_route,
                HeaderKind::Require => &mut n.require,
                HeaderKind::ProxyRequire => &mut n.proxy_require,
                _ => continue,
            };
            *c += 1;
        }
        n
    }
}

fn invalid(kind: HeaderKind, error: ValueError) -> HeaderError {
    HeaderError::Invalid {
        name: kind.name(),
        error,
    }
}

/// [`Headers::require`] / [`Headers::proxy_require`]'s verdict, without building
/// the list: every comma-separated element of every line is a token.
fn option_tags(h: &Headers, kind: HeaderKind) -> Result<(), HeaderError> {
    for line in h.get_all(kind) {
        let v = line.value();
        if v.is_empty() {
            continue;
        }
        split_list(v, |el| {
            if chars::is_token(chars::trim_ws(el)) {
                Ok(())
            } else {
                Err(ValueError::new("bad option tag"))
            }
        })
        .map_err(|e| invalid(kind, e))?;
    }
    Ok(())
}

/// What an element supports, for [`check_policy`].
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Methods the element implements (others get 501, or 405 for a known
    /// method). Empty means "all".
    pub methods: &'a [Method],
    /// Option tags the element supports (for Require / Proxy-Require, 420).
    pub extensions: &'a [&'a str],
    /// URI schemes accepted in the Request-URI (others get 416). Empty means
    /// sip, sips and tel.
    pub schemes: &'a [&'a str],
    /// Act as a proxy (check Proxy-Require and Max-Forwards instead of Require).
    pub proxy: bool,
}

/// Application-level checks on a request that passed [`validate`]: URI scheme
/// (416), method (501 for an unknown extension, 405 for a known method not in the
/// list), Require for a UAS / Proxy-Require for a proxy (420 with the unsupported
/// tags), and for a proxy Max-Forwards 0 (483, except OPTIONS, RFC 3261 §16.3).
/// Responses always pass.
pub fn check_policy(msg: &Message, policy: &Policy<'_>) -> Result<(), Rejection> {
    let StartLine::Request(r) = &msg.start else {
        return Ok(());
    };
    let scheme = r.uri.scheme();
    let scheme_ok = if policy.schemes.is_empty() {
        matches!(r.uri, Uri::Sip(_) | Uri::Tel(_))
    } else {
        policy
            .schemes
            .iter()
            .any(|s| s.as_bytes().eq_ignore_ascii_case(scheme))
    };
    if !scheme_ok {
        return Err(rej(Answer::Status(416), "unsupported URI scheme", None));
    }
    if !policy.methods.is_empty() && !policy.methods.contains(&r.method) && r.method != Method::Ack
    {
        let code = if r.method.is_extension() { 501 } else { 405 };
        return Err(rej(Answer::Status(code), "method not supported", None));
    }
    let h = msg.headers();
    let (tags, name) = if policy.proxy {
        (h.proxy_require(), "Proxy-Require")
    } else {
        (h.require(), "Require")
    };
    let tags: Vec<OptionTag> =
        tags.map_err(|_| rej(Answer::Status(400), "malformed header", Some(name)))?;
    let unsupported: Vec<Bytes> = tags
        .into_iter()
        .filter(|t| {
            !policy
                .extensions
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(&t.0))
        })
        .map(|t| t.0)
        .collect();
    if !unsupported.is_empty() && r.method != Method::Ack && r.method != Method::Cancel {
        return Err(Rejection {
            answer: Answer::Status(420),
            reason: "bad extension",
            header: Some(name),
            unsupported,
        });
    }
    if policy.proxy && r.method != Method::Options && h.max_forwards().is_ok_and(|m| m.0 == 0) {
        return Err(rej(
            Answer::Status(483),
            "too many hops",
            Some("Max-Forwards"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(b: &'static [u8]) -> Message {
        Message::parse(Bytes::from_static(b)).expect("parse")
    }

    const OK: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@c>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";

    #[test]
    fn requests() {
        assert!(validate(&m(OK)).is_ok());
        let r = validate(&m(b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:b@c>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n")).unwrap_err();
        assert_eq!((r.answer, r.header), (Answer::Status(400), Some("Via")));
        let r = validate(&m(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:b@c>\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 300\r\n\r\n")).unwrap_err();
        assert_eq!(r.header, Some("Max-Forwards"));
        let r = validate(&m(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:b@c>\r\nTo: <sip:a@b>\r\nt: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n")).unwrap_err();
        assert_eq!(
            (r.answer, r.reason),
            (Answer::Status(400), "mandatory header repeated")
        );
    }

    #[test]
    fn responses_are_dropped() {
        let r = validate(&m(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n")).unwrap_err();
        assert_eq!(r.answer, Answer::Drop);
        let r = validate(&m(b"SIP/3.0 200 OK\r\n\r\n")).unwrap_err();
        assert_eq!(r.answer, Answer::Drop);
    }

    #[test]
    fn policy() {
        let msg = m(OK);
        let p = Policy {
            methods: &[Method::Invite],
            extensions: &[],
            schemes: &[],
            proxy: false,
        };
        assert_eq!(
            check_policy(&msg, &p).unwrap_err().answer,
            Answer::Status(405)
        );
        let p = Policy {
            methods: &[],
            extensions: &[],
            schemes: &["sips"],
            proxy: false,
        };
        assert_eq!(
            check_policy(&msg, &p).unwrap_err().answer,
            Answer::Status(416)
        );
        let p = Policy {
            methods: &[Method::Options],
            extensions: &[],
            schemes: &[],
            proxy: false,
        };
        assert!(check_policy(&msg, &p).is_ok());
    }
}
