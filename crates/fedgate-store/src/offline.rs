//! Offline messages: a bounded per-user queue, delivered in two phases.
//!
//! `offline_peek` returns the queue in arrival order without removing anything; the node
//! delivers, then calls `offline_ack` with the ids it delivered. A crash between the two
//! delivers those messages again at the next login (at-least-once), never loses them.

use fedgate_policy::{Timestamp, UserAddress};
use rusqlite::params;

use crate::limits::check_len;
use crate::sqlite::{ts_from_sql, ts_to_sql};
use crate::{SqliteStore, StoreError};

/// The id of a stored offline message. Ids grow in arrival order and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfflineId(i64);

impl OfflineId {
    /// The raw row id (for logs).
    pub fn get(self) -> i64 {
        self.0
    }
}

/// One stored offline message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Its id, to pass to `offline_ack` once delivered.
    pub id: OfflineId,
    /// When it was stored (the caller's clock; for XEP-0203 delayed delivery).
    pub stored_at: Timestamp,
    /// The stanza as received, serialized.
    pub stanza: String,
}

/// Offline message storage.
pub trait OfflineStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends `stanza` to `user`'s queue; durable when this returns. Fails with
    /// [`StoreError::TooLarge`] over [`crate::StoreLimits::max_stanza_bytes`] and with
    /// [`StoreError::OfflineQuotaFull`] at [`crate::StoreLimits::max_offline_messages`].
    fn offline_push(
        &mut self,
        user: &UserAddress,
        stored_at: Timestamp,
        stanza: &str,
    ) -> Result<OfflineId, Self::Error>;

    /// Every queued message of `user`, oldest first. Removes nothing.
    fn offline_peek(&self, user: &UserAddress) -> Result<Vec<OfflineMessage>, Self::Error>;

    /// Deletes the delivered messages `ids` of `user` (ids of other users are ignored);
    /// returns how many were deleted.
    fn offline_ack(&mut self, user: &UserAddress, ids: &[OfflineId]) -> Result<usize, Self::Error>;

    /// Number of queued messages of `user`.
    fn offline_count(&self, user: &UserAddress) -> Result<usize, Self::Error>;
}

impl OfflineStore for SqliteStore {
    type Error = StoreError;

    fn offline_push(
        &mut self,
        user: &UserAddress,
        stored_at: Timestamp,
        stanza: &str,
    ) -> Result<OfflineId, StoreError> {
        let limits = self.config.limits;
        check_len("offline stanza", stanza.len(), limits.max_stanza_bytes)?;
        let name = user.to_string();
        let tx = self.write_tx()?;
        let count: i64 = tx
            .prepare_cached("SELECT count(*) FROM offline_messages WHERE user = ?1")?
            .query_row([&name], |r| r.get(0))?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= limits.max_offline_messages {
            tracing::warn!(%user, limit = limits.max_offline_messages, "store: offline queue full");
            return Err(StoreError::OfflineQuotaFull {
                user: name,
                limit: limits.max_offline_messages,
            });
        }
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO offline_messages (user, stored_at, stanza) VALUES (?1, ?2, ?3)
                 RETURNING id",
            )?
            .query_row(params![name, ts_to_sql(stored_at), stanza], |r| r.get(0))?;
        tx.commit()?;
        Ok(OfflineId(id))
    }

    fn offline_peek(&self, user: &UserAddress) -> Result<Vec<OfflineMessage>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, stored_at, stanza FROM offline_messages WHERE user = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([user.to_string()], |r| {
            Ok(OfflineMessage {
                id: OfflineId(r.get(0)?),
                stored_at: ts_from_sql(r.get(1)?),
                stanza: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn offline_ack(&mut self, user: &UserAddress, ids: &[OfflineId]) -> Result<usize, StoreError> {
        let name = user.to_string();
        let tx = self.write_tx()?;
        let mut n = 0;
        for id in ids {
            n += tx
                .prepare_cached("DELETE FROM offline_messages WHERE user = ?1 AND id = ?2")?
                .execute(params![name, id.0])?;
        }
        tx.commit()?;
        Ok(n)
    }

    fn offline_count(&self, user: &UserAddress) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM offline_messages WHERE user = ?1")?
            .query_row([user.to_string()], |r| r.get(0))?;
        usize::try_from(n).map_err(|_| StoreError::corrupt("offline_messages", "negative count"))
    }
}
