//! Stanza parse → write → parse: every element the reader accepts is written by our
//! writer as XML that reads back to the same tree.
#![no_main]
use std::time::Instant;

use fedgate_xmpp::writer::{Scope, write_element};
use fedgate_xmpp::{Event, Limits, StreamKind, StreamReader};
use libfuzzer_sys::fuzz_target;

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>";

fn elements(body: &[u8]) -> Vec<fedgate_xmpp::Element> {
    let mut reader = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
    reader.set_authenticated();
    reader.feed(HEADER);
    reader.feed(body);
    let mut out = Vec::new();
    while let Ok(Some(event)) = reader.poll_event() {
        if let Event::Element(el) = event {
            out.push(el);
        }
    }
    out
}

fuzz_target!(|body: &[u8]| {
    let scope = Scope {
        default_ns: "jabber:server",
        prefixes: &[
            ("stream", "http://etherx.jabber.org/streams"),
            ("db", "jabber:server:dialback"),
        ],
    };
    for el in elements(body) {
        let mut text = String::new();
        write_element(&mut text, el.root(), &scope);
        let again = elements(text.as_bytes());
        assert_eq!(again.len(), 1, "written element did not read back as one: {text}");
        assert_eq!(again[0], el, "tree changed through write/read: {text}");
    }
});
