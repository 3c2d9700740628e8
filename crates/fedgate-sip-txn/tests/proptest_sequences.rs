//! Random operation sequences against one user agent: no panic, limits hold,
//! every transmitted message parses, and all state ends once time runs out.

use std::time::Instant;

use fedgate_sip_txn::fuzzing::{FuzzOp, Harness};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = FuzzOp> {
    prop_oneof![
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(flow, data)| FuzzOp::Raw { flow, data }),
        (
            any::<u8>(),
            any::<u8>(),
            0u8..4,
            0u8..4,
            0u8..3,
            proptest::option::of(0u8..3),
            proptest::option::of(any::<u8>()),
            0u16..6,
            proptest::option::of(prop_oneof![
                Just(0u16),
                Just(10),
                Just(600),
                Just(29087),
                any::<u16>()
            ]),
            any::<u8>(),
        )
            .prop_map(
                |(flow, method, branch, call, from_tag, to_tag, reflect, cseq, expires, body)| {
                    FuzzOp::Request {
                        flow,
                        method,
                        branch,
                        call,
                        from_tag,
                        to_tag,
                        reflect,
                        cseq,
                        expires,
                        body,
                    }
                }
            ),
        (
            any::<u8>(),
            prop_oneof![100u16..700, any::<u16>()],
            any::<bool>()
        )
            .prop_map(|(which, code, tag)| FuzzOp::Response { which, code, tag }),
        prop_oneof![0u32..1000, 0u32..40_000, 0u32..4_000_000]
            .prop_map(|millis| FuzzOp::Advance { millis }),
        any::<u8>().prop_map(|flow| FuzzOp::TransportError { flow }),
        (any::<u8>(), any::<u8>()).prop_map(|(action, which)| FuzzOp::App { action, which }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_never_panic_and_always_drain(ops in proptest::collection::vec(op(), 0..60)) {
        let mut h = Harness::new(Instant::now());
        h.run(&ops);
        h.drain_all();
    }

    /// The same with MESSAGEs answered by the application (or by the UA at its bound).
    #[test]
    fn random_sequences_with_app_answered_messages_drain(ops in proptest::collection::vec(op(), 0..60)) {
        let mut h = Harness::answering(Instant::now());
        h.run(&ops);
        h.drain_all();
    }
}

#[test]
fn a_hand_written_sequence_reaches_dialogs() {
    let mut h = Harness::new(Instant::now());
    let ops = vec![
        // An IM INVITE (body 0 = SDP), accepted, then its ACK by reflection is not
        // possible (no To tag known) — but MESSAGE to an unknown dialog gets 481.
        FuzzOp::Request {
            flow: 2,
            method: 0,
            branch: 1,
            call: 1,
            from_tag: 1,
            to_tag: None,
            reflect: None,
            cseq: 1,
            expires: None,
            body: 0,
        },
        FuzzOp::App {
            action: 0,
            which: 0,
        },
        FuzzOp::Request {
            flow: 2,
            method: 5,
            branch: 2,
            call: 2,
            from_tag: 1,
            to_tag: None,
            reflect: None,
            cseq: 1,
            expires: Some(600),
            body: 1,
        },
        FuzzOp::App {
            action: 6,
            which: 0,
        },
        FuzzOp::App {
            action: 5,
            which: 2,
        },
        FuzzOp::Response {
            which: 0,
            code: 200,
            tag: true,
        },
        FuzzOp::Request {
            flow: 2,
            method: 6,
            branch: 3,
            call: 0,
            from_tag: 0,
            to_tag: Some(0),
            reflect: Some(0),
            cseq: 1,
            expires: None,
            body: 6,
        },
        FuzzOp::Advance { millis: 31_000 },
        FuzzOp::Advance { millis: 3_000_000 },
    ];
    h.run(&ops);
    assert!(h.events >= 4, "events: {}", h.events);
    assert!(h.transmits >= 4, "transmits: {}", h.transmits);
    h.drain_all();
}

/// The answering harness reaches an in-dialog MESSAGE: a session we open (INVITE,
/// 200 with a To tag), then the peer's MESSAGE in that dialog (its fields reflected
/// from our INVITE) waits for the application, which answers it; a second one is
/// answered by the UA at the bound.
#[test]
fn the_answering_harness_reaches_app_answered_messages() {
    let mut h = Harness::answering(Instant::now());
    let message = |branch| FuzzOp::Request {
        flow: 2,
        method: 4,
        branch,
        call: 0,
        from_tag: 0,
        to_tag: Some(0),
        reflect: Some(0),
        cseq: u16::from(branch),
        expires: None,
        body: 3,
    };
    h.run(&[
        FuzzOp::App {
            action: 4,
            which: 2,
        },
        // 100 + code % 600: a 200.
        FuzzOp::Response {
            which: 0,
            code: 100,
            tag: true,
        },
        message(10),
    ]);
    assert_eq!(h.ua().session_count(), 1);
    assert_eq!(h.ua().unanswered_messages(), 1);
    h.run(&[FuzzOp::App {
        action: 10,
        which: 0,
    }]);
    assert_eq!(h.ua().unanswered_messages(), 0);
    h.run(&[message(11)]);
    assert_eq!(h.ua().unanswered_messages(), 1);
    h.run(&[FuzzOp::Advance { millis: 10_000 }]);
    assert_eq!(h.ua().unanswered_messages(), 0);
    h.drain_all();
}
