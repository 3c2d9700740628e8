//! The XMPP stream reader over arbitrary chunking: the same bytes fed whole or in
//! pieces give the same events and the same stream error condition (what the peer
//! sees; the reason text and offset are diagnostics), and the reader never panics.
#![no_main]
use std::time::Instant;

use arbitrary::Arbitrary;
use fedgate_xmpp::{Event, Limits, StreamErrorCondition, StreamKind, StreamReader};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    authenticated: bool,
    cuts: Vec<u8>,
    data: Vec<u8>,
}

fn run(
    input: &Input,
    chunks: impl Iterator<Item = usize>,
) -> (Vec<Event>, Option<StreamErrorCondition>) {
    let mut reader = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
    if input.authenticated {
        reader.set_authenticated();
    }
    let mut events = Vec::new();
    let mut rest = &input.data[..];
    for n in chunks {
        if rest.is_empty() {
            break;
        }
        let n = n.clamp(1, rest.len());
        reader.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match reader.poll_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_stream_error();
                    return (events, Some(e.condition()));
                }
            }
        }
    }
    (events, None)
}

fuzz_target!(|input: Input| {
    let whole = run(&input, std::iter::once(input.data.len()));
    let cuts: Vec<usize> = if input.cuts.is_empty() {
        vec![1]
    } else {
        input.cuts.iter().map(|&c| c as usize).collect()
    };
    let pieces = run(&input, cuts.into_iter().cycle());
    assert_eq!(whole, pieces, "events depend on chunking");
});
