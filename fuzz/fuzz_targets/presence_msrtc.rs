//! Microsoft presence readers: msrtc-event-categories documents and the legacy
//! text/xml+msrtc.pidf form, as arbitrary bytes from a Lync NOTIFY body.
#![no_main]
use fedgate_presence::msrtc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cats) = msrtc::parse(data) {
        let _ = cats.presence();
        let text = msrtc::write(&cats);
        let again = msrtc::parse(text.as_bytes()).expect("our own msrtc output must parse");
        assert_eq!(msrtc::write(&again), text, "msrtc write is not stable");
    }
    let _ = msrtc::parse_legacy(data);
});
