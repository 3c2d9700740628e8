//! The SIP user agent (transactions, dialogs, subscriptions, IM sessions) driven by an
//! arbitrary sequence of received bytes, well-formed requests and responses, time jumps,
//! transport errors and application calls. The harness checks its invariants after every
//! step (limits hold, every sent message parses, no deadline left in the past), and at
//! the end that all state ends with its timers.
#![no_main]
use fedgate_sip_txn::fuzzing::{FuzzOp, Harness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|ops: Vec<FuzzOp>| {
    let mut h = Harness::new(std::time::Instant::now());
    h.run(&ops);
    h.drain_all();
});
