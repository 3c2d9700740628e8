//! Users and SASL credentials.
#![allow(clippy::unwrap_used)] // test code: helpers outside #[test] fns

use fedgate_policy::{Timestamp, UserAddress};
use fedgate_store::*;

fn u(s: &str) -> UserAddress {
    s.parse().unwrap()
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path()).unwrap()
}

#[test]
fn add_list_remove_users() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    assert!(s.list_users().unwrap().is_empty());
    s.add_user(&u("bob@example.com"), "b").unwrap();
    s.add_user(&u("alice@example.com"), "a").unwrap();
    assert_eq!(
        s.list_users().unwrap(),
        vec![u("alice@example.com"), u("bob@example.com")]
    );
    let err = s.add_user(&u("Alice@Example.com"), "other").unwrap_err();
    assert!(matches!(err, StoreError::UserExists(ref n) if n == "alice@example.com"));
    assert!(
        s.verify_plain(&u("alice@example.com"), "a").unwrap(),
        "duplicate add kept the old password"
    );
    assert!(s.remove_user(&u("alice@example.com")).unwrap());
    assert!(!s.remove_user(&u("alice@example.com")).unwrap());
    assert!(!s.user_exists(&u("alice@example.com")).unwrap());
    assert!(s.user_exists(&u("bob@example.com")).unwrap());
    for m in ScramMechanism::ALL {
        assert_eq!(
            s.scram_credentials(&u("alice@example.com"), m).unwrap(),
            None
        );
    }
    drop(s);
    assert_eq!(open(&dir).list_users().unwrap(), vec![u("bob@example.com")]);
}

/// The stored credentials are exactly RFC 5802 / 7677 derivations from the password, with
/// a fresh salt per mechanism and user, and the password appears nowhere in the file.
#[test]
fn credentials_are_scram_derivations_and_password_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let (a, b) = (u("alice@example.com"), u("bob@example.com"));
    let password = "correct horse battery staple";
    s.add_user(&a, password).unwrap();
    s.add_user(&b, password).unwrap();
    let mut salts = Vec::new();
    for user in [&a, &b] {
        for m in ScramMechanism::ALL {
            let c = s.scram_credentials(user, m).unwrap().unwrap();
            assert_eq!(c.mechanism, m);
            assert_eq!(c.iterations, 4096);
            assert_eq!(c.salt.len(), SALT_LEN);
            assert_eq!(c.stored_key.len(), m.output_len());
            assert_eq!(
                c,
                ScramCredentials::derive(m, password.as_bytes(), &c.salt, c.iterations)
            );
            salts.push(c.salt);
        }
    }
    salts.sort();
    salts.dedup();
    assert_eq!(salts.len(), 4, "every salt is fresh");
    let path = s.path().to_owned();
    drop(s);
    let mut bytes = std::fs::read(&path).unwrap();
    if let Ok(wal) = std::fs::read(path.with_extension("sqlite3-wal")) {
        bytes.extend(wal);
    }
    assert!(
        !bytes
            .windows(password.len())
            .any(|w| w == password.as_bytes()),
        "plain password found in the database"
    );
}

#[test]
fn verify_plain_and_set_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        scram_iterations: 64,
        ..StoreConfig::default()
    };
    let mut s = SqliteStore::open_with(dir.path(), config).unwrap();
    let a = u("alice@example.com");
    s.add_user(&a, "pencil").unwrap();
    assert_eq!(
        s.scram_credentials(&a, ScramMechanism::Sha1)
            .unwrap()
            .unwrap()
            .iterations,
        64
    );
    assert!(s.verify_plain(&a, "pencil").unwrap());
    assert!(!s.verify_plain(&a, "pencil2").unwrap());
    assert!(!s.verify_plain(&a, "").unwrap());
    assert!(!s.verify_plain(&u("nobody@example.com"), "pencil").unwrap());
    s.set_password(&a, "crayon").unwrap();
    assert!(!s.verify_plain(&a, "pencil").unwrap());
    assert!(s.verify_plain(&a, "crayon").unwrap());
    let err = s.set_password(&u("nobody@example.com"), "x").unwrap_err();
    assert!(matches!(err, StoreError::UnknownUser(_)), "{err}");
    assert!(
        !s.user_exists(&u("nobody@example.com")).unwrap(),
        "set_password created a user"
    );
}

#[test]
fn overlong_password_is_refused_and_never_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let long = "x".repeat(s.limits().max_password_bytes + 1);
    let err = s.add_user(&u("alice@example.com"), &long).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                what: "password",
                ..
            }
        ),
        "{err}"
    );
    assert!(!s.user_exists(&u("alice@example.com")).unwrap());
    s.add_user(&u("alice@example.com"), "short").unwrap();
    assert!(!s.verify_plain(&u("alice@example.com"), &long).unwrap());
}

#[test]
fn zero_iterations_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        scram_iterations: 0,
        ..StoreConfig::default()
    };
    assert!(matches!(
        SqliteStore::open_with(dir.path(), config),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn removing_a_user_removes_roster_and_offline_queue_only_of_that_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let (a, b) = (u("alice@example.com"), u("bob@example.com"));
    for user in [&a, &b] {
        s.add_user(user, "pw").unwrap();
        s.roster_set(user, &RosterItem::new("carol@lync.example"))
            .unwrap();
        s.offline_push(user, Timestamp::ZERO, "<message/>").unwrap();
    }
    assert!(s.remove_user(&a).unwrap());
    assert_eq!(s.roster(&a).unwrap(), Roster::default());
    assert_eq!(s.offline_count(&a).unwrap(), 0);
    assert_eq!(s.roster(&b).unwrap().items.len(), 1);
    assert_eq!(s.offline_count(&b).unwrap(), 1);
    assert!(
        s.scram_credentials(&b, ScramMechanism::Sha256)
            .unwrap()
            .is_some()
    );
}
