//! The logic of the `xmppcheck` example: what the reader makes of a byte stream.

use std::time::Instant;

use crate::stanza::is_stanza;
use crate::{Event, Limits, StreamKind, StreamReader};

/// Feeds `input` as the receiving side of an s2s stream (`jabber:server`), in chunks of
/// `chunk` bytes, and returns one line per event:
/// `open to=<to> from=<from>`, `stanza <message|presence|iq> from=<from> to=<to>`,
/// `element <prefix:name>` for other top-level elements, `error <condition>` (the stream
/// error the reader would have us send; reading stops) and `close`.
///
/// The stream is treated as authenticated so the full [`Limits::max_stanza_bytes`]
/// applies (a checker has no negotiation); missing attributes print as empty.
pub fn check_stream(input: &[u8], chunk: usize) -> Vec<String> {
    let mut r = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
    r.set_authenticated();
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        r.feed(c);
        loop {
            match r.poll_event() {
                Ok(None) => break,
                Ok(Some(Event::StreamOpen(h))) => out.push(format!(
                    "open to={} from={}",
                    h.to.as_deref().unwrap_or(""),
                    h.from.as_deref().unwrap_or("")
                )),
                Ok(Some(Event::Element(e))) => {
                    if is_stanza(e.root()) {
                        out.push(format!(
                            "stanza {} from={} to={}",
                            e.name(),
                            e.attr("from").unwrap_or(""),
                            e.attr("to").unwrap_or("")
                        ));
                    } else {
                        match e.prefix() {
                            Some(p) => out.push(format!("element {p}:{}", e.name())),
                            None => out.push(format!("element {}", e.name())),
                        }
                    }
                }
                Ok(Some(Event::StreamClose)) => {
                    out.push("close".into());
                    return out;
                }
                Err(e) => {
                    out.push(format!("error {}", e.condition()));
                    return out;
                }
            }
        }
    }
    out
}
