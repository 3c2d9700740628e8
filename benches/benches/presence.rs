//! fedgate-presence: availability mapping and presence codecs.
//!
//! `cargo bench -p fedgate-benches --bench presence -- --warm-up-time 1 --measurement-time 3`
//!
//! Target: one mapping (`tables::map`) ≤ 50 ns. No peer crate maps these
//! tables, so that figure is absolute. For the readers, `minidom` parsing the
//! same bytes into its tree is the peer: the ratio is from one run.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedgate_presence::{
    Availability, Family, FamilyPresence, Presence, StatusRule, msrtc, pidf, tables, xmpp,
};

const LYNC_NOTIFY: &str = r#"<categories xmlns="http://schemas.microsoft.com/2006/09/sip/categories" uri="sip:bob@contoso.com">
 <category name="contactCard" instance="0" publishTime="2013-01-01T00:00:00Z"><contactCard xmlns="http://schemas.microsoft.com/2006/09/sip/contactcard"><identity><name><displayName>Bob</displayName></name></identity></contactCard></category>
 <category name="state" instance="0" publishTime="2013-01-01T00:00:00Z">
  <state xmlns="http://schemas.microsoft.com/2006/09/sip/state" manual="false" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="aggregateState">
   <availability>6500</availability>
   <activity token="in-a-meeting" minAvailability="6500" maxAvailability="8999"/>
   <delimiter xmlns="http://schemas.microsoft.com/2006/09/sip/commontypes"/>
   <timeZoneBias>-60</timeZoneBias><endpointLocation/>
  </state>
 </category>
 <category name="note" instance="0"><note xmlns="http://schemas.microsoft.com/2006/09/sip/note"><body type="personal" uri="">Budget review</body></note></category>
</categories>"#;

const PIDF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">
  <tuple id="ID-balcony"><status><basic>open</basic><show xmlns="jabber:client">dnd</show></status>
    <contact priority="0.8">sip:alice@pc.example.com</contact></tuple>
  <note>Call me later</note>
  <dm:person id="p1"><rpid:activities><rpid:busy/><rpid:on-the-phone/></rpid:activities></dm:person>
</presence>"#;

const XMPP: &str = r#"<presence xmlns="jabber:client"><show>away</show><status>Walking the dog</status><priority>5</priority><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="n" ver="v"/></presence>"#;

fn mapping(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence/map");
    g.throughput(Throughput::Elements(1));
    g.bench_function("lync_dnd_to_xmpp_local", |b| {
        b.iter(|| {
            tables::map(
                black_box(Family::Lync),
                black_box(Family::XmppLocal),
                black_box(Availability::DoNotDisturb),
                black_box(Some("In a call")),
            )
        })
    });
    g.bench_function("xmpp_local_away_idle_to_jabber_fed", |b| {
        b.iter(|| {
            tables::map(
                black_box(Family::XmppLocal),
                black_box(Family::JabberFed),
                black_box(Availability::Away),
                black_box(Some("Idle")),
            )
        })
    });
    // Every (from, to, state) of every table, fallbacks included.
    let inputs: Vec<(Family, Family, Availability)> = tables::TABLES
        .iter()
        .map(|t| (t[0].from, t[0].to))
        .flat_map(|(f, t)| Availability::ALL.into_iter().map(move |a| (f, t, a)))
        .collect();
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("all_table_states", |b| {
        b.iter(|| {
            for &(f, t, a) in &inputs {
                black_box(tables::map(f, t, a, black_box(None)));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    let src = FamilyPresence {
        family: Family::Lync,
        presence: Presence::new(Availability::Busy).with_status("In a call"),
    };
    g.bench_function("map_presence_owned", |b| {
        b.iter(|| tables::map_presence(StatusRule::Tables, black_box(&src), Family::XmppLocal))
    });
    g.finish();
}

fn readers(c: &mut Criterion) {
    for (name, doc) in [("msrtc", LYNC_NOTIFY), ("pidf", PIDF), ("xmpp", XMPP)] {
        let mut g = c.benchmark_group(format!("presence/read/{name}"));
        g.throughput(Throughput::Bytes(doc.len() as u64));
        match name {
            "msrtc" => g.bench_function("fedgate", |b| {
                b.iter(|| msrtc::parse(black_box(doc.as_bytes())).expect("valid"))
            }),
            "pidf" => g.bench_function("fedgate", |b| {
                b.iter(|| pidf::parse(black_box(doc.as_bytes())).expect("valid"))
            }),
            _ => g.bench_function("fedgate", |b| {
                b.iter(|| xmpp::parse(black_box(doc.as_bytes())).expect("valid"))
            }),
        };
        // Peer: minidom building its tree from the same bytes (no mapping).
        let body = doc
            .trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
            .trim_start();
        g.bench_function("minidom_tree", |b| {
            b.iter(|| black_box(body).parse::<minidom::Element>().expect("valid"))
        });
        g.finish();
    }
}

fn writers(c: &mut Criterion) {
    let pidf_doc = pidf::parse(PIDF.as_bytes()).expect("valid");
    let ms = msrtc::parse(LYNC_NOTIFY.as_bytes()).expect("valid");
    let x = xmpp::parse(XMPP.as_bytes()).expect("valid");
    let mut g = c.benchmark_group("presence/write");
    g.bench_function("pidf", |b| b.iter(|| pidf::write(black_box(&pidf_doc))));
    g.bench_function("msrtc", |b| b.iter(|| msrtc::write(black_box(&ms))));
    g.bench_function("xmpp", |b| b.iter(|| xmpp::write(black_box(&x))));
    g.finish();
}

criterion_group!(benches, mapping, readers, writers);
criterion_main!(benches);
