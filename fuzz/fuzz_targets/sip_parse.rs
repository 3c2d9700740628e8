//! A SIP datagram parse of arbitrary bytes, then validation and every typed accessor:
//! nothing may panic, and a rejection always says how to answer.
#![no_main]
use bytes::Bytes;
use fedgate_sip::{Limits, parse_datagram, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_datagram(Bytes::copy_from_slice(data), &limits) {
        Ok(msg) => {
            let _ = validate(&msg);
            let _ = msg.via();
            let _ = msg.from();
            let _ = msg.to();
            let _ = msg.call_id();
            let _ = msg.cseq();
            let _ = msg.content_length();
            for h in msg.headers.iter() {
                let _ = h.name();
            }
        }
        Err(e) => {
            let _ = e.answer();
            let _ = e.to_string();
        }
    }
});
