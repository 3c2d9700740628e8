//! Rosters (RFC 6121 §2).
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use std::collections::BTreeSet;

use fedgate_policy::UserAddress;
use fedgate_store::*;

fn u(s: &str) -> UserAddress {
    s.parse().unwrap()
}

fn full_item() -> RosterItem {
    RosterItem {
        jid: "bob@lync.example".into(),
        name: Some("Bob ✓".into()),
        groups: BTreeSet::from(["Friends".to_owned(), "Work".to_owned()]),
        subscription: RosterSubscription::From,
        ask_out: true,
        approved: true,
        pending_in: Some("<presence type='subscribe' from='bob@lync.example'/>".into()),
    }
}

#[test]
fn set_get_remove_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let a = u("alice@example.com");
    assert_eq!(s.roster(&a).unwrap(), Roster::default());
    let v1 = s.roster_set(&a, &full_item()).unwrap();
    let v2 = s
        .roster_set(&a, &RosterItem::new("carol@xmpp.example"))
        .unwrap();
    assert!(v2 > v1 && v1 > 0);
    assert_eq!(
        s.roster_item(&a, "bob@lync.example").unwrap(),
        Some(full_item())
    );
    assert_eq!(s.roster_item(&a, "nobody@x.example").unwrap(), None);

    // Replace: groups are replaced, not merged; name cleared.
    let mut changed = full_item();
    changed.name = None;
    changed.groups = BTreeSet::from(["Work".to_owned()]);
    changed.subscription = RosterSubscription::Both;
    changed.ask_out = false;
    changed.pending_in = None;
    let v3 = s.roster_set(&a, &changed).unwrap();
    assert!(v3 > v2);
    let roster = s.roster(&a).unwrap();
    assert_eq!(roster.version, v3);
    assert_eq!(
        roster.items,
        vec![changed.clone(), RosterItem::new("carol@xmpp.example")]
    );

    assert_eq!(s.roster_remove(&a, "nobody@x.example").unwrap(), None);
    assert_eq!(
        s.roster_version(&a).unwrap(),
        v3,
        "a no-op remove keeps the version"
    );
    let v4 = s.roster_remove(&a, "carol@xmpp.example").unwrap().unwrap();
    assert!(v4 > v3);
    drop(s);

    let s = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(
        s.roster(&a).unwrap(),
        Roster {
            version: v4,
            items: vec![changed]
        }
    );
    // Other users' rosters are separate.
    assert_eq!(s.roster(&u("bob@example.com")).unwrap(), Roster::default());
}

/// A roster version never comes back, even after the user is removed and recreated, so a
/// client's cached version cannot match different contents.
#[test]
fn versions_never_repeat_across_user_removal() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let a = u("alice@example.com");
    s.add_user(&a, "pw").unwrap();
    let old = s
        .roster_set(&a, &RosterItem::new("bob@lync.example"))
        .unwrap();
    s.remove_user(&a).unwrap();
    assert_eq!(s.roster_version(&a).unwrap(), 0);
    s.add_user(&a, "pw").unwrap();
    let new = s
        .roster_set(&a, &RosterItem::new("eve@lync.example"))
        .unwrap();
    assert!(new > old);
}

#[test]
fn subscription_values_round_trip() {
    for v in [
        RosterSubscription::None,
        RosterSubscription::To,
        RosterSubscription::From,
        RosterSubscription::Both,
    ] {
        assert_eq!(RosterSubscription::parse(v.as_str()), Some(v));
    }
    assert_eq!(RosterSubscription::parse("remove"), None);
}

#[test]
fn invalid_jids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let a = u("alice@example.com");
    for bad in [
        String::new(),
        "bob@lync.example/desktop".into(),
        "bob @lync.example".into(),
        "x".repeat(MAX_BARE_JID_BYTES + 1),
    ] {
        let err = s.roster_set(&a, &RosterItem::new(bad.clone())).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidJid { .. }),
            "{bad:?}: {err}"
        );
    }
    // A domain-only JID is a valid bare JID (a server contact).
    s.roster_set(&a, &RosterItem::new("lync.example")).unwrap();
    assert_eq!(s.roster(&a).unwrap().items.len(), 1);
}

#[test]
fn limits_on_item_texts_groups_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StoreLimits {
        max_text_bytes: 10,
        max_groups_per_item: 2,
        max_stanza_bytes: 40,
        max_roster_items: 3,
        ..StoreLimits::default()
    };
    let config = StoreConfig {
        limits,
        ..StoreConfig::default()
    };
    let mut s = SqliteStore::open_with(dir.path(), config).unwrap();
    let a = u("alice@example.com");
    let too_large = |item: RosterItem, what_expected: &str, s: &mut SqliteStore| {
        let err = s.roster_set(&a, &item).unwrap_err();
        match err {
            StoreError::TooLarge { what, .. } => assert_eq!(what, what_expected),
            other => panic!("{other}"),
        }
    };
    let mut i = RosterItem::new("b@x.example");
    i.name = Some("12345678901".into());
    too_large(i, "roster item name", &mut s);
    let mut i = RosterItem::new("b@x.example");
    i.groups = ["a", "b", "c"].map(String::from).into();
    too_large(i, "roster groups", &mut s);
    let mut i = RosterItem::new("b@x.example");
    i.groups = ["12345678901"].map(String::from).into();
    too_large(i, "roster group name", &mut s);
    let mut i = RosterItem::new("b@x.example");
    i.pending_in = Some("x".repeat(41));
    too_large(i, "pending-in stanza", &mut s);
    assert_eq!(s.roster(&a).unwrap(), Roster::default(), "nothing written");

    // At the limit exactly: accepted.
    let mut i = RosterItem::new("b@x.example");
    i.name = Some("1234567890".into());
    i.groups = ["a", "1234567890"].map(String::from).into();
    i.pending_in = Some("x".repeat(40));
    s.roster_set(&a, &i).unwrap();
    s.roster_set(&a, &RosterItem::new("c@x.example")).unwrap();
    let v = s.roster_set(&a, &RosterItem::new("d@x.example")).unwrap();
    let err = s
        .roster_set(&a, &RosterItem::new("e@x.example"))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::RosterFull { limit: 3, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(
        s.roster_version(&a).unwrap(),
        v,
        "a refused item leaves the version"
    );
    // Updating an existing item is fine when full.
    s.roster_set(&a, &RosterItem::new("d@x.example")).unwrap();
    // Another user has their own quota.
    s.roster_set(&u("bob@example.com"), &RosterItem::new("e@x.example"))
        .unwrap();
}
