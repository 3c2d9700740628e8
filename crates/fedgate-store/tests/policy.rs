//! `SqliteStore` as the policy engine's store: equal to `MemoryStore` on random change
//! sequences, across a restart, and under the real engine.
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use fedgate_policy::{
    Change, Direction, Domain, FederationEntry, InboundDecision, MemoryStore, Policy, PolicyStore,
    Protocol, Route, Rule, RuleTarget, Seen, SubscriptionKey, SubscriptionLimits,
    SubscriptionRecord, SubscriptionState, TerminationReason, Timestamp, UserAddress, XmppListing,
    XmppMode,
};
use fedgate_store::{SCHEMA_VERSION, SqliteStore, StoreError};
use proptest::prelude::*;

fn domain() -> impl Strategy<Value = Domain> {
    prop::sample::select(vec!["example.com", "lync.example", "xmpp.example", "b.org"])
        .prop_map(|s| s.parse().unwrap())
}

fn user() -> impl Strategy<Value = UserAddress> {
    (
        prop::sample::select(vec!["alice", "bob", "carol"]),
        domain(),
    )
        .prop_map(|(l, d)| UserAddress::from_parts(l, &d).unwrap())
}

fn entry() -> impl Strategy<Value = FederationEntry> {
    prop_oneof![
        Just(FederationEntry::Sip),
        Just(FederationEntry::Xmpp(XmppListing::Allow)),
        Just(FederationEntry::Xmpp(XmppListing::Deny)),
    ]
}

fn mode() -> impl Strategy<Value = XmppMode> {
    prop_oneof![
        Just(XmppMode::AllowAll),
        Just(XmppMode::AllowListed),
        Just(XmppMode::DenyListed)
    ]
}

fn target() -> impl Strategy<Value = RuleTarget> {
    prop_oneof![
        user().prop_map(RuleTarget::User),
        domain().prop_map(RuleTarget::Domain)
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![Just(Rule::Allow), Just(Rule::Block)]
}

fn key() -> impl Strategy<Value = SubscriptionKey> {
    (
        user(),
        user(),
        prop_oneof![Just(Direction::Inbound), Just(Direction::Outbound)],
    )
        .prop_map(|(local, remote, direction)| SubscriptionKey {
            local,
            remote,
            direction,
        })
}

fn state() -> impl Strategy<Value = SubscriptionState> {
    use SubscriptionState as S;
    use TerminationReason as T;
    prop::sample::select(vec![
        S::None,
        S::Pending,
        S::Active,
        S::Terminated(T::Unsubscribed),
        S::Terminated(T::Timeout),
        S::Terminated(T::Rejected),
        S::Terminated(T::NotFederated),
        S::Terminated(T::NotLocal),
    ])
}

fn ts() -> impl Strategy<Value = Option<Timestamp>> {
    prop::option::of(
        prop_oneof![0..10_000u64, Just(u64::MAX), any::<u64>()].prop_map(Timestamp::from_millis),
    )
}

fn record() -> impl Strategy<Value = SubscriptionRecord> {
    (
        key(),
        prop_oneof![Just(Protocol::Sip), Just(Protocol::Xmpp)],
        state(),
        ts(),
        ts(),
    )
        .prop_map(
            |(key, protocol, state, expires_at, refresh_at)| SubscriptionRecord {
                key,
                protocol,
                state,
                expires_at,
                refresh_at,
            },
        )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        domain().prop_map(Change::PutLocalDomain),
        domain().prop_map(Change::DeleteLocalDomain),
        (domain(), entry()).prop_map(|(d, e)| Change::PutRemoteDomain(d, e)),
        domain().prop_map(Change::DeleteRemoteDomain),
        mode().prop_map(Change::SetXmppMode),
        (user(), target(), rule()).prop_map(|(user, target, rule)| Change::PutRule {
            user,
            target,
            rule
        }),
        (user(), target()).prop_map(|(user, target)| Change::DeleteRule { user, target }),
        record().prop_map(Change::PutSubscription),
        key().prop_map(Change::DeleteSubscription),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The same batches give the same snapshot in memory and in SQLite, after every batch
    /// and after closing and reopening the file.
    #[test]
    fn sqlite_equals_memory_store(batches in prop::collection::vec(
        prop::collection::vec(change(), 0..8), 1..10)) {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = MemoryStore::new();
        {
            let mut sql = SqliteStore::open(dir.path()).unwrap();
            for batch in &batches {
                mem.apply(batch).unwrap();
                sql.apply(batch).unwrap();
                prop_assert_eq!(sql.load().unwrap(), mem.load().unwrap());
            }
        }
        let reopened = SqliteStore::open(dir.path()).unwrap();
        prop_assert_eq!(reopened.load().unwrap(), mem.load().unwrap());
    }
}

#[test]
fn empty_store_loads_the_empty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(s.load().unwrap(), MemoryStore::new().load().unwrap());
    assert_eq!(s.schema_version(), SCHEMA_VERSION);
}

/// The real engine on SQLite: a subscription answered before a restart is resumed after.
#[test]
fn policy_engine_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::from_millis(1_000);
    let alice: UserAddress = "alice@example.com".parse().unwrap();
    let bob: UserAddress = "bob@lync.example".parse().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut policy = Policy::open(store, SubscriptionLimits::default()).unwrap();
        policy
            .add_local_domain(now, "example.com".parse().unwrap())
            .unwrap();
        policy
            .add_sip_domain(now, "lync.example".parse().unwrap())
            .unwrap();
        let out = policy
            .handle_inbound_subscribe(now, &bob, &alice, Protocol::Sip, None)
            .unwrap();
        assert_eq!(out.decision, InboundDecision::Pending);
        policy.answer(now, &alice, &bob, Rule::Block).unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    let policy = Policy::open(store, SubscriptionLimits::default()).unwrap();
    assert_eq!(policy.route(bob.domain()), Route::Sip);
    assert_eq!(policy.route(alice.domain()), Route::Local);
    let key = SubscriptionKey::inbound(alice.clone(), bob.clone());
    assert_eq!(policy.state(&key), SubscriptionState::Active);
    assert_eq!(
        policy.presence_fanout(&alice, &"available", now),
        vec![(&bob, Seen::Offline)]
    );
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = SqliteStore::open(dir.path()).unwrap().path().to_owned();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE schema_version SET version = ?1",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
    }
    let err = SqliteStore::open(dir.path()).unwrap_err();
    match &err {
        StoreError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    assert!(err.to_string().contains("newer"), "{err}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION + 1);
}

#[test]
fn reopen_keeps_schema_version_and_data_folder_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/data");
    let mut s = SqliteStore::open(&nested).unwrap();
    s.apply(&[Change::SetXmppMode(XmppMode::DenyListed)])
        .unwrap();
    drop(s);
    let s = SqliteStore::open(&nested).unwrap();
    assert_eq!(s.load().unwrap().xmpp_mode, Some(XmppMode::DenyListed));
    let conn = rusqlite::Connection::open(s.path()).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}
