//! XMPP stream reading: fedgate-xmpp (full stanza trees) vs quick-xml (tokenizing only)
//! vs minidom (rxml + tree building), over the same ~1 MB deterministic s2s stream.
//!
//! cargo bench -p fedgate-benches --bench xmpp -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedgate_xmpp::{Event, Limits, StreamKind, StreamReader};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0' id='s2s-bench'>";

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "eve", "mallory", "trent", "peggy",
];
const WORDS: &[&str] = &[
    "hello",
    "world",
    "the",
    "meeting",
    "is",
    "at",
    "noon",
    "caf\u{e9}",
    "&amp;",
    "&lt;3",
    "federation",
    "presence",
    "ok",
    "see",
    "you",
    "tomorrow",
    "\u{1F600}",
    "thanks",
    "lunch?",
];

/// About 1 MB of messages, presences and iqs with a ~300-byte mean stanza.
fn stream() -> (String, usize) {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut s = String::from(HEADER);
    let mut n = 0;
    while s.len() < 1 << 20 {
        let from = r.pick(USERS);
        let to = r.pick(USERS);
        match r.next() % 10 {
            0..=4 => {
                let words = 10 + r.next() % 44;
                let body: Vec<&str> = (0..words).map(|_| r.pick(WORDS)).collect();
                s.push_str(&format!(
                    "<message from='{from}@a.example/res{}' to='{to}@b.example' type='chat' id='m{n}'><body>{}</body><active xmlns='http://jabber.org/protocol/chatstates'/><thread>t{}</thread></message>",
                    r.next() % 4,
                    body.join(" "),
                    r.next() % 100
                ));
            }
            5..=7 => {
                let show = r.pick(&["away", "dnd", "xa", "chat"]);
                s.push_str(&format!(
                    "<presence from='{from}@a.example/res{}' to='{to}@b.example'><show>{show}</show><status>{} {}</status><priority>{}</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://fedgate.example' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>",
                    r.next() % 4,
                    r.pick(WORDS),
                    r.pick(WORDS),
                    r.next() % 10
                ));
            }
            _ => {
                if r.next().is_multiple_of(2) {
                    s.push_str(&format!(
                        "<iq type='get' id='ping{n}' from='a.example' to='b.example'><ping xmlns='urn:xmpp:ping'/></iq>"
                    ));
                } else {
                    s.push_str(&format!(
                        "<iq type='result' id='disco{n}' from='{from}@a.example/res1' to='{to}@b.example/res2'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='fedgate'/><feature var='urn:xmpp:ping'/><feature var='http://jabber.org/protocol/caps'/></query></iq>"
                    ));
                }
            }
        }
        n += 1;
    }
    s.push_str("</stream:stream>");
    (s, n)
}

fn fedgate(input: &[u8]) -> usize {
    let mut r = StreamReader::new(StreamKind::Server, Limits::default(), Instant::now());
    r.set_authenticated();
    let mut n = 0;
    for chunk in input.chunks(64 * 1024) {
        r.feed(chunk);
        while let Some(ev) = r.poll_event().expect("valid stream") {
            if let Event::Element(e) = ev {
                n += 1;
                black_box(&e);
            }
        }
    }
    n
}

fn quick_xml_tokens(input: &[u8]) -> usize {
    use quick_xml::events::Event as Q;
    // The borrowing slice reader: quick-xml's fastest path (no copies).
    let mut r = quick_xml::Reader::from_reader(input);
    let mut n = 0;
    loop {
        match r.read_event().expect("valid xml") {
            Q::Eof => break,
            Q::Start(e) | Q::Empty(e) => {
                for a in e.attributes() {
                    black_box(a.expect("attr"));
                }
                n += 1;
            }
            e => {
                black_box(e);
            }
        }
    }
    n
}

fn minidom_stanzas(input: &[u8]) -> usize {
    use minidom::rxml::RawReader;
    use minidom::tree_builder::TreeBuilder;
    let mut driver = RawReader::new(input);
    let mut tb = TreeBuilder::new();
    let mut n = 0;
    while let Some(ev) = driver.read().expect("valid xml") {
        tb.process_event(ev).expect("tree");
        if tb.depth() == 1 {
            while let Some(el) = tb.unshift_child() {
                n += 1;
                black_box(el);
            }
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let (s, stanzas) = stream();
    let input = s.as_bytes();
    assert_eq!(fedgate(input), stanzas);
    assert_eq!(minidom_stanzas(input), stanzas);
    assert!(quick_xml_tokens(input) > stanzas);
    eprintln!(
        "xmpp bench input: {} bytes, {stanzas} stanzas, {} bytes/stanza mean",
        input.len(),
        input.len() / stanzas
    );

    let mut g = c.benchmark_group("xmpp_stream_bytes");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("fedgate_xmpp_trees", |b| {
        b.iter(|| fedgate(black_box(input)))
    });
    g.bench_function("quick_xml_tokens", |b| {
        b.iter(|| quick_xml_tokens(black_box(input)))
    });
    g.bench_function("minidom_trees", |b| {
        b.iter(|| minidom_stanzas(black_box(input)))
    });
    g.finish();

    let mut g = c.benchmark_group("xmpp_stream_stanzas");
    g.throughput(Throughput::Elements(stanzas as u64));
    g.bench_function("fedgate_xmpp_trees", |b| {
        b.iter(|| fedgate(black_box(input)))
    });
    g.bench_function("minidom_trees", |b| {
        b.iter(|| minidom_stanzas(black_box(input)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
