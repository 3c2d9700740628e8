//! One non-INVITE client transaction (RFC 3261 §17.1.2) over UDP or TLS, driven by an
//! arbitrary sequence of responses (and their retransmissions), time jumps, late timers
//! and transport errors. The harness checks after every step that only the request is
//! sent (on Timer E, within the RFC's bound), that the TU learns one outcome, that
//! Terminated is final and no deadline is left in the past; and at the end that the
//! transaction ends with its timers.
#![no_main]
use fedgate_sip_txn::fuzz_txn::{ClientInput, client_non_invite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ClientInput| {
    client_non_invite(&input);
});
