//! One non-INVITE server transaction (RFC 3261 §17.2.2) over UDP or TLS, driven by an
//! arbitrary sequence of request retransmissions, responses from the TU, time jumps, late
//! timers and transport errors. The harness checks after every step that only responses
//! to the request are sent (the TU's, the guard's 408, the last one again for a
//! retransmission), no provisional after a final, that Terminated is final and no deadline
//! is left in the past; and at the end that the transaction ends with its timers, answered.
#![no_main]
use fedgate_sip_txn::fuzz_txn::{ServerInput, server_non_invite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: ServerInput| {
    server_non_invite(&input);
});
