//! Offline messages: arrival order, two-phase delivery, quota and size limits.
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use fedgate_policy::{Timestamp, UserAddress};
use fedgate_store::*;

fn u(s: &str) -> UserAddress {
    s.parse().unwrap()
}

fn small(max_offline_messages: usize, max_stanza_bytes: usize) -> StoreConfig {
    StoreConfig {
        limits: StoreLimits {
            max_offline_messages,
            max_stanza_bytes,
            ..StoreLimits::default()
        },
        ..StoreConfig::default()
    }
}

#[test]
fn arrival_order_and_two_phase_delivery_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = u("alice@example.com");
    let b = u("bob@example.com");
    let ids: Vec<OfflineId> = {
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..5u64 {
            ids.push(
                s.offline_push(
                    &a,
                    Timestamp::from_millis(100 - i),
                    &format!("<m n='{i}'/>"),
                )
                .unwrap(),
            );
            s.offline_push(&b, Timestamp::ZERO, "<for-bob/>").unwrap();
        }
        ids
    };
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let q = s.offline_peek(&a).unwrap();
    assert_eq!(q.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    assert_eq!(q[3].stanza, "<m n='3'/>");
    assert_eq!(q[3].stored_at, Timestamp::from_millis(97));

    // Peek removes nothing: a crash here re-delivers.
    assert_eq!(s.offline_peek(&a).unwrap(), q);
    // Ack the first two; an id of another user is ignored, not deleted.
    let bobs = s.offline_peek(&b).unwrap();
    assert_eq!(s.offline_ack(&a, &[ids[0], ids[1], bobs[0].id]).unwrap(), 2);
    assert_eq!(s.offline_count(&b).unwrap(), 5);
    // Acking again is harmless.
    assert_eq!(s.offline_ack(&a, &[ids[0]]).unwrap(), 0);
    drop(s);
    let mut s = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(s.offline_peek(&a).unwrap(), q[2..].to_vec());
    // New messages get new ids, after every earlier one, even after deletes.
    s.offline_ack(&a, &[ids[2], ids[3], ids[4]]).unwrap();
    let newer = s.offline_push(&a, Timestamp::ZERO, "<late/>").unwrap();
    assert!(ids.iter().all(|i| *i < newer));
}

#[test]
fn quota_full_is_a_clear_error_and_frees_up_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open_with(dir.path(), small(3, 1024)).unwrap();
    let a = u("alice@example.com");
    for _ in 0..3 {
        s.offline_push(&a, Timestamp::ZERO, "<m/>").unwrap();
    }
    let err = s.offline_push(&a, Timestamp::ZERO, "<m/>").unwrap_err();
    match &err {
        StoreError::OfflineQuotaFull { user, limit } => {
            assert_eq!((user.as_str(), *limit), ("alice@example.com", 3));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("full"), "{err}");
    assert!(err.is_transient());
    assert_eq!(s.offline_count(&a).unwrap(), 3);
    // Another user is not affected.
    s.offline_push(&u("bob@example.com"), Timestamp::ZERO, "<m/>")
        .unwrap();
    let first = s.offline_peek(&a).unwrap()[0].id;
    s.offline_ack(&a, &[first]).unwrap();
    s.offline_push(&a, Timestamp::ZERO, "<m/>").unwrap();
}

#[test]
fn oversized_stanza_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open_with(dir.path(), small(10, 16)).unwrap();
    let a = u("alice@example.com");
    s.offline_push(&a, Timestamp::ZERO, &"x".repeat(16))
        .unwrap();
    let err = s
        .offline_push(&a, Timestamp::ZERO, &"x".repeat(17))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                what: "offline stanza",
                len: 17,
                limit: 16
            }
        ),
        "{err}"
    );
    assert_eq!(s.offline_count(&a).unwrap(), 1);
}
