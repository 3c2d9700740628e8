//! SIP dialogs: the dialogs of running SIP subscriptions (a Lync user watching a local
//! user), kept so that a restarted node can go on sending NOTIFYs in the same dialogs.
//!
//! The store does not look inside a record: the SIP gateway serializes its dialog state
//! (Call-ID, tags, CSeq, route set, …) into [`SipDialogRecord::record`] and reads it back.
//! `local` and `remote` are for the gateway's own bookkeeping and for operators; the store
//! only bounds their length. Times are unix seconds from the caller's clock: the store
//! never reads a clock.

use rusqlite::params;

use crate::limits::check_len;
use crate::{MAX_BARE_JID_BYTES, SqliteStore, StoreError};

/// Longest SIP dialog id ([`SipDialogRecord::id`]) accepted, in bytes: 1024.
pub const MAX_SIP_DIALOG_ID_BYTES: usize = 1024;

/// One SIP dialog the node must resume after a restart (opaque to the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDialogRecord {
    /// The key, chosen by the gateway (for example Call-ID and tags); non-empty, at most
    /// [`MAX_SIP_DIALOG_ID_BYTES`].
    pub id: String,
    /// The local user of the dialog (the watched user); at most
    /// [`MAX_BARE_JID_BYTES`].
    pub local: String,
    /// The remote party (the SIP watcher); at most [`MAX_BARE_JID_BYTES`].
    pub remote: String,
    /// The serialized dialog state; at most [`crate::StoreLimits::max_sip_dialog_bytes`].
    pub record: Vec<u8>,
    /// When it was stored, unix seconds (the caller's clock).
    pub stored_at: i64,
    /// When it stops mattering (the subscription's expiry), unix seconds: from then on
    /// [`SipDialogStore::sip_dialogs`] deletes it.
    pub expires_at: i64,
}

/// Storage of SIP dialog records, keyed by [`SipDialogRecord::id`].
pub trait SipDialogStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Inserts or replaces the record with this id; durable when this returns.
    ///
    /// Fails with [`StoreError::Invalid`] for an empty id, [`StoreError::TooLarge`] when
    /// the id, `local`, `remote` or `record` is over its limit, and with
    /// [`StoreError::SipDialogsFull`] when the id is new and the store already holds
    /// [`crate::StoreLimits::max_sip_dialogs`] records (expired ones count until
    /// [`SipDialogStore::sip_dialogs`] removes them). Replacing is always allowed.
    fn put_sip_dialog(&mut self, rec: &SipDialogRecord) -> Result<(), Self::Error>;

    /// Deletes it; false if there was none.
    fn delete_sip_dialog(&mut self, id: &str) -> Result<bool, Self::Error>;

    /// Deletes the records with expires_at <= now (unix seconds), returns the rest ordered
    /// by id. One transaction.
    fn sip_dialogs(&mut self, now: i64) -> Result<Vec<SipDialogRecord>, Self::Error>;
}

impl SqliteStore {
    fn check_sip_dialog(&self, rec: &SipDialogRecord) -> Result<(), StoreError> {
        if rec.id.is_empty() {
            return Err(StoreError::Invalid("SIP dialog id is empty"));
        }
        check_len("sip dialog id", rec.id.len(), MAX_SIP_DIALOG_ID_BYTES)?;
        check_len("sip dialog local", rec.local.len(), MAX_BARE_JID_BYTES)?;
        check_len("sip dialog remote", rec.remote.len(), MAX_BARE_JID_BYTES)?;
        check_len(
            "sip dialog record",
            rec.record.len(),
            self.config.limits.max_sip_dialog_bytes,
        )
    }
}

impl SipDialogStore for SqliteStore {
    type Error = StoreError;

    fn put_sip_dialog(&mut self, rec: &SipDialogRecord) -> Result<(), StoreError> {
        self.check_sip_dialog(rec)?;
        let max = self.config.limits.max_sip_dialogs;
        let tx = self.write_tx()?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM sip_dialogs WHERE id = ?1")?
            .exists([&rec.id])?;
        if !exists {
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM sip_dialogs")?
                .query_row([], |r| r.get(0))?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                tracing::warn!(limit = max, "store: SIP dialog table full, dialog refused");
                return Err(StoreError::SipDialogsFull { limit: max });
            }
        }
        tx.prepare_cached(
            "INSERT INTO sip_dialogs (id, local, remote, record, stored_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET
               local = excluded.local, remote = excluded.remote, record = excluded.record,
               stored_at = excluded.stored_at, expires_at = excluded.expires_at",
        )?
        .execute(params![
            rec.id,
            rec.local,
            rec.remote,
            rec.record,
            rec.stored_at,
            rec.expires_at
        ])?;
        tx.commit()?;
        Ok(())
    }

    fn delete_sip_dialog(&mut self, id: &str) -> Result<bool, StoreError> {
        let tx = self.write_tx()?;
        let n = tx
            .prepare_cached("DELETE FROM sip_dialogs WHERE id = ?1")?
            .execute([id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn sip_dialogs(&mut self, now: i64) -> Result<Vec<SipDialogRecord>, StoreError> {
        let tx = self.write_tx()?;
        let expired = tx
            .prepare_cached("DELETE FROM sip_dialogs WHERE expires_at <= ?1")?
            .execute([now])?;
        let records = {
            let mut st = tx.prepare_cached(
                "SELECT id, local, remote, record, stored_at, expires_at FROM sip_dialogs
                 ORDER BY id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(SipDialogRecord {
                    id: r.get(0)?,
                    local: r.get(1)?,
                    remote: r.get(2)?,
                    record: r.get(3)?,
                    stored_at: r.get(4)?,
                    expires_at: r.get(5)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        if expired > 0 {
            tracing::debug!(expired, now, "store: expired SIP dialogs deleted");
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StoreConfig, StoreLimits};

    fn rec(id: &str, expires_at: i64) -> SipDialogRecord {
        SipDialogRecord {
            id: id.to_owned(),
            local: "alice@example.com".to_owned(),
            remote: "bob@lync.example".to_owned(),
            record: format!("dialog {id}").into_bytes(),
            stored_at: 1_000,
            expires_at,
        }
    }

    fn small(max_sip_dialogs: usize, max_sip_dialog_bytes: usize) -> StoreConfig {
        StoreConfig {
            limits: StoreLimits {
                max_sip_dialogs,
                max_sip_dialog_bytes,
                ..StoreLimits::default()
            },
            ..StoreConfig::default()
        }
    }

    #[test]
    fn defaults() {
        let l = StoreLimits::default();
        assert_eq!(l.max_sip_dialogs, 100_000);
        assert_eq!(l.max_sip_dialog_bytes, 16 * 1024);
    }

    #[test]
    fn put_replace_delete() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.sip_dialogs(0).unwrap(), vec![]);

        let b = rec("b", 5_000);
        let a = rec("a", 5_000);
        s.put_sip_dialog(&b).unwrap();
        s.put_sip_dialog(&a).unwrap();
        // Ordered by id, not by insertion.
        assert_eq!(s.sip_dialogs(1_000).unwrap(), vec![a.clone(), b.clone()]);

        // Replace: every column is taken from the new record.
        let b2 = SipDialogRecord {
            local: "carol@example.com".into(),
            remote: "dave@lync.example".into(),
            record: vec![0, 255, 0, 1], // not UTF-8: stored as bytes
            stored_at: 2_000,
            expires_at: 9_000,
            ..b.clone()
        };
        s.put_sip_dialog(&b2).unwrap();
        assert_eq!(s.sip_dialogs(1_000).unwrap(), vec![a.clone(), b2]);

        assert!(s.delete_sip_dialog("b").unwrap());
        assert!(!s.delete_sip_dialog("b").unwrap());
        assert!(!s.delete_sip_dialog("never").unwrap());
        assert_eq!(s.sip_dialogs(1_000).unwrap(), vec![a]);
    }

    #[test]
    fn expired_records_are_deleted_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        for (id, exp) in [("x1", 100), ("x2", 200), ("x3", 300), ("x4", -5)] {
            s.put_sip_dialog(&rec(id, exp)).unwrap();
        }
        // expires_at <= now is expired: the boundary counts.
        let left = s.sip_dialogs(200).unwrap();
        assert_eq!(left, vec![rec("x3", 300)]);
        // They were deleted, not just filtered: an earlier `now` does not bring them back.
        assert_eq!(s.sip_dialogs(0).unwrap(), vec![rec("x3", 300)]);
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM sip_dialogs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(s.sip_dialogs(300).unwrap(), vec![]);
    }

    #[test]
    fn count_limit_refuses_new_ids_not_replacements() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open_with(dir.path(), small(2, 1024)).unwrap();
        s.put_sip_dialog(&rec("a", 500)).unwrap();
        s.put_sip_dialog(&rec("b", 5_000)).unwrap();
        let err = s.put_sip_dialog(&rec("c", 5_000)).unwrap_err();
        assert!(
            matches!(err, StoreError::SipDialogsFull { limit: 2 }),
            "{err}"
        );
        assert!(err.is_transient());
        // Replacing an existing id is not counted twice.
        let mut a2 = rec("a", 600);
        a2.record = b"refreshed".to_vec();
        s.put_sip_dialog(&a2).unwrap();
        assert_eq!(s.sip_dialogs(0).unwrap(), vec![a2, rec("b", 5_000)]);
        // Room is made by deleting, or by expiry.
        assert!(s.delete_sip_dialog("b").unwrap());
        s.put_sip_dialog(&rec("c", 5_000)).unwrap();
        assert!(matches!(
            s.put_sip_dialog(&rec("d", 5_000)),
            Err(StoreError::SipDialogsFull { .. })
        ));
        assert_eq!(s.sip_dialogs(600).unwrap(), vec![rec("c", 5_000)]);
        s.put_sip_dialog(&rec("d", 5_000)).unwrap();
    }

    #[test]
    fn oversize_record_and_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open_with(dir.path(), small(10, 16)).unwrap();
        let mut r = rec("a", 5_000);
        r.record = vec![7; 16];
        s.put_sip_dialog(&r).unwrap(); // exactly at the limit

        r.record = vec![7; 17];
        let err = s.put_sip_dialog(&r).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooLarge {
                    what: "sip dialog record",
                    len: 17,
                    limit: 16
                }
            ),
            "{err}"
        );

        let mut r = rec(&"i".repeat(MAX_SIP_DIALOG_ID_BYTES + 1), 5_000);
        assert!(matches!(
            s.put_sip_dialog(&r),
            Err(StoreError::TooLarge {
                what: "sip dialog id",
                ..
            })
        ));
        r.id = "i".repeat(MAX_SIP_DIALOG_ID_BYTES);
        r.local = "l".repeat(MAX_BARE_JID_BYTES + 1);
        assert!(matches!(
            s.put_sip_dialog(&r),
            Err(StoreError::TooLarge {
                what: "sip dialog local",
                ..
            })
        ));
        r.local = "alice@example.com".into();
        r.remote = "r".repeat(MAX_BARE_JID_BYTES + 1);
        assert!(matches!(
            s.put_sip_dialog(&r),
            Err(StoreError::TooLarge {
                what: "sip dialog remote",
                ..
            })
        ));
        assert!(matches!(
            s.put_sip_dialog(&rec("", 5_000)),
            Err(StoreError::Invalid(_))
        ));
        // Nothing refused was written; a refused replacement left the old record.
        let mut big = rec("a", 5_000);
        big.record = vec![0; 17];
        assert!(s.put_sip_dialog(&big).is_err());
        assert_eq!(s.sip_dialogs(0).unwrap().len(), 1);
        assert_eq!(s.sip_dialogs(0).unwrap()[0].record, vec![7; 16]);
    }

    #[test]
    fn records_survive_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kept = SipDialogRecord {
            id: "3f2a@lync.example;from-tag=1928;to-tag=a73k".into(),
            local: "alice@example.com".into(),
            remote: "bob@lync.example".into(),
            record: (0..=255).collect(),
            stored_at: 1_700_000_000,
            expires_at: 1_700_003_600,
        };
        {
            let mut s = SqliteStore::open(dir.path()).unwrap();
            s.put_sip_dialog(&kept).unwrap();
            s.put_sip_dialog(&rec("gone", 5_000)).unwrap();
            assert!(s.delete_sip_dialog("gone").unwrap());
        } // closed: as after a restart
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.sip_dialogs(1_700_000_100).unwrap(), vec![kept.clone()]);
        drop(s);
        // Expiry deletes durably too.
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.sip_dialogs(1_700_003_600).unwrap(), vec![]);
        drop(s);
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.sip_dialogs(0).unwrap(), vec![]);
        s.integrity_check().unwrap();
    }
}
