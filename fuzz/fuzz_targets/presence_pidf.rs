//! PIDF (RFC 3863) with RPID reader: arbitrary bytes from a SIP NOTIFY body. Whatever
//! parses must write out as a document that parses again to the same value.
#![no_main]
use fedgate_presence::pidf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = pidf::parse(data) {
        let text = pidf::write(&doc);
        let again = pidf::parse(text.as_bytes()).expect("our own PIDF output must parse");
        assert_eq!(pidf::write(&again), text, "PIDF write is not stable");
    }
});
