//! The network-facing readers (`pidf::parse`, `msrtc::parse`,
//! `msrtc::parse_legacy`, `xmpp::parse`) never panic, on random bytes and on
//! XML-shaped input assembled from the vocabulary they look for.

use fedgate_presence::{Error, Limits, msrtc, pidf, xmpp};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:a@b'>",
    "</presence>",
    "<presence xmlns='jabber:client'>",
    "<presence type='unavailable'>",
    "<tuple id='t'>",
    "</tuple>",
    "<status>",
    "</status>",
    "<basic>open</basic>",
    "<basic>closed</basic>",
    "<show xmlns='jabber:client'>away</show>",
    "<show>dnd</show>",
    "<priority>5</priority>",
    "<priority>-129</priority>",
    "<contact priority='0.5'>sip:x</contact>",
    "<contact priority='9'>sip:x</contact>",
    "<note>",
    "</note>",
    "<r:activities xmlns:r='urn:ietf:params:xml:ns:pidf:rpid'><r:busy/><r:meeting/><r:other>x</r:other></r:activities>",
    "<r:user-input xmlns:r='urn:ietf:params:xml:ns:pidf:rpid'>idle</r:user-input>",
    "<categories xmlns='http://schemas.microsoft.com/2006/09/sip/categories'>",
    "</categories>",
    "<category name='state'>",
    "<category name='note'>",
    "</category>",
    "<state xmlns='http://schemas.microsoft.com/2006/09/sip/state'>",
    "</state>",
    "<availability>6500</availability>",
    "<availability>99999999999</availability>",
    "<activity token='in-a-meeting'/>",
    "<note xmlns='http://schemas.microsoft.com/2006/09/sip/note'><body type='personal'>n</body></note>",
    "<presentity xmlns='http://schemas.microsoft.com/2002/09/sip/presence'>",
    "</presentity>",
    "<availability aggregate='300'/>",
    "<activity aggregate='600'/>",
    "<x:y xmlns:x='urn:other'>",
    "</x:y>",
    "<z:q/>",
    "&amp;",
    "&#x1F600;",
    "&#0;",
    "&bogus;",
    "<![CDATA[<]]>",
    "<!-- c -->",
    "<?xml version='1.0'?>",
    "<!DOCTYPE x>",
    "text",
    " ",
    "<",
    ">",
    "'",
    "\"",
];

fn readers(bytes: &[u8]) {
    let _ = pidf::parse(bytes);
    let _ = msrtc::parse(bytes);
    let _ = msrtc::parse_legacy(bytes);
    let _ = xmpp::parse(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn xml_shaped_input_never_panics(
        parts in proptest::collection::vec(proptest::sample::select(PIECES.to_vec()), 0..40)
    ) {
        readers(parts.concat().as_bytes());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        readers(&bytes);
    }
}

#[test]
fn limits_are_enforced_by_every_reader() {
    let deep = format!(
        "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='x'>{}{}</presence>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    assert_eq!(
        pidf::parse(deep.as_bytes()),
        Err(Error::TooDeep { limit: 32 })
    );
    assert_eq!(
        msrtc::parse(deep.as_bytes()),
        Err(Error::TooDeep { limit: 32 })
    );
    assert_eq!(
        xmpp::parse(deep.as_bytes()),
        Err(Error::TooDeep { limit: 32 })
    );
    let small = Limits {
        max_bytes: 16,
        ..Limits::DEFAULT
    };
    assert_eq!(
        xmpp::parse_with(b"<presence><show>away</show></presence>", &small),
        Err(Error::TooLarge {
            size: 38,
            limit: 16
        })
    );
    // A billion-laughs document is refused before any expansion.
    let lol = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><presence xmlns='jabber:client'><status>&lol2;</status></presence>"#;
    assert_eq!(xmpp::parse(lol), Err(Error::Dtd));
}
