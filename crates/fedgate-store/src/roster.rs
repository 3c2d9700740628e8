//! Rosters (RFC 6121 §2): per user, the contact items and a version counter.

use std::collections::BTreeSet;

use fedgate_policy::UserAddress;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::limits::check_len;
use crate::{SqliteStore, StoreError};

/// Longest bare JID (RFC 7622 §3.1: each of localpart and domainpart at most 1023 bytes).
pub const MAX_BARE_JID_BYTES: usize = 2047;

/// The `subscription` attribute of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum RosterSubscription {
    /// Neither sees the other's presence.
    #[default]
    None,
    /// The user sees the contact's presence.
    To,
    /// The contact sees the user's presence.
    From,
    /// Both see each other's presence.
    Both,
}

impl RosterSubscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::To => "to",
            Self::From => "from",
            Self::Both => "both",
        }
    }

    /// Parses an attribute value (`remove` is not a stored state).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "to" => Self::To,
            "from" => Self::From,
            "both" => Self::Both,
            _ => return None,
        })
    }
}

/// One roster item: a contact of the user, with the RFC 6121 subscription sub-states
/// (Appendix A) spelled out as flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RosterItem {
    /// The contact's bare JID, canonical (the node canonicalises; the store checks only
    /// that it is a non-empty bare JID without a resource or whitespace).
    pub jid: String,
    /// Handle the user gave the contact.
    pub name: Option<String>,
    /// Groups (a set: order and duplicates are not kept).
    pub groups: BTreeSet<String>,
    /// The subscription state.
    pub subscription: RosterSubscription,
    /// Pending out: the user asked for the contact's presence (`ask='subscribe'`).
    pub ask_out: bool,
    /// Pre-approved: the user approved a subscription request before it arrived
    /// (RFC 6121 §3.4).
    pub approved: bool,
    /// Pending in: the contact's subscription request, kept as the stanza to deliver again
    /// at each login until the user answers (RFC 6121 §3.1.3).
    pub pending_in: Option<String>,
}

impl RosterItem {
    /// An item for `jid` with no name, no group and subscription `none`.
    pub fn new(jid: impl Into<String>) -> Self {
        Self {
            jid: jid.into(),
            ..Self::default()
        }
    }
}

/// A user's whole roster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roster {
    /// The version (RFC 6121 §2.6): changes with every change to this roster, and never
    /// comes back to an earlier value, even after the user is removed and added again.
    /// 0 for a roster never written.
    pub version: u64,
    /// Items, sorted by JID.
    pub items: Vec<RosterItem>,
}

/// Roster storage.
pub trait RosterStore {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The whole roster of `user` (empty, version 0, if never written).
    fn roster(&self, user: &UserAddress) -> Result<Roster, Self::Error>;

    /// The roster version of `user`.
    fn roster_version(&self, user: &UserAddress) -> Result<u64, Self::Error>;

    /// One item.
    fn roster_item(&self, user: &UserAddress, jid: &str)
    -> Result<Option<RosterItem>, Self::Error>;

    /// Inserts or replaces the item for `item.jid`; returns the new roster version.
    /// Refuses a new item past [`crate::StoreLimits::max_roster_items`].
    fn roster_set(&mut self, user: &UserAddress, item: &RosterItem) -> Result<u64, Self::Error>;

    /// Removes the item for `jid`; returns the new version, or `None` if there was none.
    fn roster_remove(&mut self, user: &UserAddress, jid: &str) -> Result<Option<u64>, Self::Error>;
}

/// Checks that `jid` is a plausible bare JID (not a full validation: the node's `Jid`
/// type does that before the store sees it).
pub(crate) fn check_bare_jid(jid: &str) -> Result<(), StoreError> {
    let reason = if jid.is_empty() {
        "empty"
    } else if jid.len() > MAX_BARE_JID_BYTES {
        "too long"
    } else if jid.contains('/') {
        "has a resource"
    } else if jid.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains whitespace or a control character"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidJid {
        jid: jid.chars().take(64).collect(),
        reason,
    })
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt("roster_versions", "negative version"))
}

/// Bumps the global roster counter and makes it `user`'s version.
fn bump_version(tx: &Transaction<'_>, user: &str) -> Result<u64, StoreError> {
    let v: i64 = tx
        .prepare_cached(
            "INSERT INTO counters (name, value) VALUES ('roster_version', 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1
             RETURNING value",
        )?
        .query_row([], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT INTO roster_versions (user, version) VALUES (?1, ?2)
         ON CONFLICT (user) DO UPDATE SET version = excluded.version",
    )?
    .execute(params![user, v])?;
    to_u64(v)
}

impl SqliteStore {
    fn check_item(&self, item: &RosterItem) -> Result<(), StoreError> {
        let l = &self.config.limits;
        check_bare_jid(&item.jid)?;
        if let Some(name) = &item.name {
            check_len("roster item name", name.len(), l.max_text_bytes)?;
        }
        check_len("roster groups", item.groups.len(), l.max_groups_per_item)?;
        for g in &item.groups {
            check_len("roster group name", g.len(), l.max_text_bytes)?;
        }
        if let Some(stanza) = &item.pending_in {
            check_len("pending-in stanza", stanza.len(), l.max_stanza_bytes)?;
        }
        Ok(())
    }

    fn read_items(&self, user: &str, jid: Option<&str>) -> Result<Vec<RosterItem>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT jid, name, subscription, ask_out, approved, pending_in FROM roster_items
             WHERE user = ?1 AND (?2 IS NULL OR jid = ?2) ORDER BY jid",
        )?;
        let mut rows = st.query(params![user, jid])?;
        let mut items = Vec::new();
        while let Some(r) = rows.next()? {
            let sub: String = r.get(2)?;
            let Some(subscription) = RosterSubscription::parse(&sub) else {
                return Err(StoreError::corrupt(
                    "roster_items",
                    format!("subscription {sub:?}"),
                ));
            };
            items.push(RosterItem {
                jid: r.get(0)?,
                name: r.get(1)?,
                groups: BTreeSet::new(),
                subscription,
                ask_out: r.get(3)?,
                approved: r.get(4)?,
                pending_in: r.get(5)?,
            });
        }
        let mut st = self.conn.prepare_cached(
            "SELECT jid, grp FROM roster_groups WHERE user = ?1 AND (?2 IS NULL OR jid = ?2)",
        )?;
        let mut rows = st.query(params![user, jid])?;
        while let Some(r) = rows.next()? {
            let (jid, grp): (String, String) = (r.get(0)?, r.get(1)?);
            if let Ok(i) = items.binary_search_by(|it| it.jid.as_str().cmp(&jid)) {
                items[i].groups.insert(grp);
            }
        }
        Ok(items)
    }
}

impl RosterStore for SqliteStore {
    type Error = StoreError;

    fn roster(&self, user: &UserAddress) -> Result<Roster, StoreError> {
        let tx = self.conn.unchecked_transaction()?; // one consistent read
        let version = self.roster_version(user)?;
        let items = self.read_items(&user.to_string(), None)?;
        drop(tx);
        Ok(Roster { version, items })
    }

    fn roster_version(&self, user: &UserAddress) -> Result<u64, StoreError> {
        let v: Option<i64> = self
            .conn
            .prepare_cached("SELECT version FROM roster_versions WHERE user = ?1")?
            .query_row([user.to_string()], |r| r.get(0))
            .optional()?;
        to_u64(v.unwrap_or(0))
    }

    fn roster_item(&self, user: &UserAddress, jid: &str) -> Result<Option<RosterItem>, StoreError> {
        Ok(self.read_items(&user.to_string(), Some(jid))?.pop())
    }

    fn roster_set(&mut self, user: &UserAddress, item: &RosterItem) -> Result<u64, StoreError> {
        self.check_item(item)?;
        let max = self.config.limits.max_roster_items;
        let name = user.to_string();
        let tx = self.write_tx()?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM roster_items WHERE user = ?1 AND jid = ?2")?
            .exists(params![name, item.jid])?;
        if !exists {
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM roster_items WHERE user = ?1")?
                .query_row([&name], |r| r.get(0))?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max {
                tracing::warn!(%user, limit = max, "store: roster full, item refused");
                return Err(StoreError::RosterFull {
                    user: name,
                    limit: max,
                });
            }
        }
        tx.prepare_cached(
            "INSERT INTO roster_items
               (user, jid, name, subscription, ask_out, approved, pending_in)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (user, jid) DO UPDATE SET
               name = excluded.name, subscription = excluded.subscription,
               ask_out = excluded.ask_out, approved = excluded.approved,
               pending_in = excluded.pending_in",
        )?
        .execute(params![
            name,
            item.jid,
            item.name,
            item.subscription.as_str(),
            item.ask_out,
            item.approved,
            item.pending_in
        ])?;
        tx.prepare_cached("DELETE FROM roster_groups WHERE user = ?1 AND jid = ?2")?
            .execute(params![name, item.jid])?;
        for g in &item.groups {
            tx.prepare_cached("INSERT INTO roster_groups (user, jid, grp) VALUES (?1, ?2, ?3)")?
                .execute(params![name, item.jid, g])?;
        }
        let v = bump_version(&tx, &name)?;
        tx.commit()?;
        Ok(v)
    }

    fn roster_remove(&mut self, user: &UserAddress, jid: &str) -> Result<Option<u64>, StoreError> {
        let name = user.to_string();
        let tx = self.write_tx()?;
        let n = tx
            .prepare_cached("DELETE FROM roster_items WHERE user = ?1 AND jid = ?2")?
            .execute(params![name, jid])?;
        if n == 0 {
            return Ok(None); // dropping tx rolls back (nothing was written)
        }
        let v = bump_version(&tx, &name)?;
        tx.commit()?;
        Ok(Some(v))
    }
}
