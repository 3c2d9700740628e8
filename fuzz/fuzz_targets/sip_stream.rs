//! Stream framing over arbitrary chunking: feeding the same bytes whole or in pieces
//! must give the same messages, and the framer must never panic or buffer past its limit.
#![no_main]
use arbitrary::Arbitrary;
use bytes::BytesMut;
use fedgate_sip::{Frame, Limits, StreamFramer};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    cuts: Vec<u8>,
    data: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Seen {
    Frame(Frame),
    Error,
}

/// Decodes everything available in `buf`, appending what it saw; false after an error.
fn drain(f: &mut StreamFramer, buf: &mut BytesMut, seen: &mut Vec<Seen>) -> bool {
    loop {
        match f.decode(buf) {
            Ok(Frame::Partial) => return true,
            Ok(frame) => seen.push(Seen::Frame(frame)),
            Err(_) => {
                seen.push(Seen::Error);
                return false;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let limits = Limits::default();

    let mut whole = Vec::new();
    let mut f = StreamFramer::new(limits.clone());
    let mut buf = BytesMut::from(&input.data[..]);
    drain(&mut f, &mut buf, &mut whole);

    let mut pieces = Vec::new();
    let mut f = StreamFramer::new(limits.clone());
    let mut buf = BytesMut::new();
    let mut rest = &input.data[..];
    let mut cuts = input.cuts.iter().copied().cycle();
    let mut alive = true;
    while alive && !rest.is_empty() {
        let n = (cuts.next().unwrap_or(255) as usize).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        alive = drain(&mut f, &mut buf, &mut pieces);
        assert!(buf.len() <= limits.max_message_size + 4 + 255, "framer buffered past its limit");
    }
    assert_eq!(whole, pieces, "framing depends on how the bytes were chunked");
});
