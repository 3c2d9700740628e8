//! parse → serialize → parse: whatever the parser accepts, its canonical output must
//! parse back to the same message, and serializing that again changes nothing.
#![no_main]
use bytes::Bytes;
use fedgate_sip::{Limits, parse_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(msg) = parse_datagram(Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    let wire = msg.to_bytes();
    let again = parse_datagram(wire.clone(), &limits).expect("canonical output must parse");
    assert_eq!(again, msg, "parse(serialize(m)) != m");
    assert_eq!(again.to_bytes(), wire, "serialization is not stable");
});
