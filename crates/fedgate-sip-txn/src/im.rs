//! Session-mode IM details as Lync / Skype for Business use them: the SDP of an IM
//! session (`m=message <port> sip null`), the `ms-text-format` header carrying the
//! first message, typing indications (RFC 3994).

use base64::Engine;
use bytes::Bytes;
use fedgate_sip::Message;

/// The `a=accept-types` Lync advertises (pidgin-sipe `sipe-im.c`).
pub const DEFAULT_ACCEPT_TYPES: &str = "text/plain text/html image/gif multipart/alternative application/im-iscomposing+xml application/ms-imdn+xml text/x-msmsgsinvite";

/// Content-Type of a typing indication.
pub const ISCOMPOSING: &str = "application/im-iscomposing+xml";

/// The SDP offer or answer of an IM session.
pub fn sdp(host: &str, port: u16, accept_types: &str) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 0 0 IN IP4 {host}\r\ns=session\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=message {port} sip null\r\na=accept-types:{accept_types}\r\n"
    ))
}

/// True if `body` is an SDP with an IM media line (`m=message … sip …`, or OCS
/// 2005's `m=x-ms-message`).
pub fn is_im_offer(body: &[u8]) -> bool {
    body.split(|&c| c == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let rest = line
            .strip_prefix(b"m=message ")
            .or_else(|| line.strip_prefix(b"m=x-ms-message "));
        rest.is_some_and(|r| r.split(|&c| c == b' ').nth(1) == Some(&b"sip"[..]))
    })
}

/// The first message carried in an INVITE's `ms-text-format` header
/// (`text/plain; charset=UTF-8;msgr=…;ms-body=<base64>`): its content type (the
/// header without `ms-body` and `msgr`) and the decoded body. `None` if there is no
/// such header or the base64 does not decode: then the peer re-sends the message
/// as a MESSAGE, as long as we do not advertise `Supported: ms-text-format`.
pub fn first_message(invite: &Message) -> Option<(Bytes, Bytes)> {
    let h = invite.headers.get_named("ms-text-format").next()?;
    let value = h.value();
    let mut ctype: Vec<u8> = Vec::new();
    let mut body = None;
    for part in value.split(|&c| c == b';') {
        let p = trim(part);
        if p.len() >= 8 && p[..8].eq_ignore_ascii_case(b"ms-body=") {
            let b64 = trim(&p[8..]);
            let b64 = b64
                .strip_prefix(b"\"")
                .and_then(|b| b.strip_suffix(b"\""))
                .unwrap_or(b64);
            body = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
                .ok();
        } else if p.len() >= 5 && p[..5].eq_ignore_ascii_case(b"msgr=") || p.is_empty() {
            continue;
        } else {
            if !ctype.is_empty() {
                ctype.extend_from_slice(b"; ");
            }
            ctype.extend_from_slice(p);
        }
    }
    let body = body?;
    if ctype.is_empty() {
        ctype.extend_from_slice(b"text/plain; charset=UTF-8");
    }
    Some((Bytes::from(ctype), Bytes::from(body)))
}

/// The `ms-text-format` header value for a first message.
pub fn ms_text_format(content_type: &str, body: &[u8]) -> Bytes {
    Bytes::from(format!(
        "{content_type};ms-body={}",
        base64::engine::general_purpose::STANDARD.encode(body)
    ))
}

fn trim(s: &[u8]) -> &[u8] {
    let a = s
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let b = s
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(a, |p| p + 1);
    &s[a..b.max(a)]
}

/// An RFC 3994 is-composing document.
pub fn iscomposing(active: bool) -> Bytes {
    let state = if active { "active" } else { "idle" };
    Bytes::from(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>{state}</state><contenttype>text/plain</contenttype></isComposing>"
    ))
}

/// The `<state>` of an is-composing document: `true` for `active`.
pub fn typing_state(body: &[u8]) -> bool {
    let Some(s) = find(body, b"<state>") else {
        return false;
    };
    let rest = &body[s + 7..];
    trim(rest.split(|&c| c == b'<').next().unwrap_or_default()).eq_ignore_ascii_case(b"active")
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lync_sdp_is_recognized() {
        let s = sdp("192.0.2.1", 5061, DEFAULT_ACCEPT_TYPES);
        assert!(is_im_offer(&s));
        assert!(is_im_offer(b"v=0\r\nm=x-ms-message 5060 sip sip:a@b\r\n"));
        assert!(!is_im_offer(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"));
        assert!(!is_im_offer(b""));
    }

    #[test]
    fn ms_text_format_round_trip_and_garbage() {
        let v = ms_text_format("text/plain; charset=UTF-8", "héllo".as_bytes());
        let m = Message::parse(Bytes::from(format!(
            "INVITE sip:a@b SIP/2.0\r\nms-text-format: {};msgr=WAAtAE0A\r\nContent-Length: 0\r\n\r\n",
            String::from_utf8_lossy(&v)
        )))
        .expect("parses");
        let (ct, body) = first_message(&m).expect("decoded");
        assert_eq!(&ct[..], b"text/plain; charset=UTF-8");
        assert_eq!(&body[..], "héllo".as_bytes());
        let bad = Message::parse(Bytes::from_static(
            b"INVITE sip:a@b SIP/2.0\r\nms-text-format: text/plain;ms-body=%%%\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("parses");
        assert_eq!(first_message(&bad), None);
    }

    #[test]
    fn typing() {
        assert!(typing_state(&iscomposing(true)));
        assert!(!typing_state(&iscomposing(false)));
        assert!(!typing_state(b"<state>"));
    }
}
