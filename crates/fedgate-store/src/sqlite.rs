//! [`SqliteStore`]: opening a data folder, and the [`PolicyStore`] implementation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fedgate_policy::{
    Change, Direction, Domain, FederationEntry, PolicyStore, Protocol, Rule, RuleTarget, Snapshot,
    SubscriptionKey, SubscriptionRecord, SubscriptionState, TerminationReason, Timestamp,
    UserAddress, XmppListing, XmppMode,
};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::{StoreConfig, StoreError, StoreLimits, schema};

/// The database file inside the data folder.
pub const DB_FILE: &str = "fedgate.sqlite3";

/// The durable state of a node: one SQLite file in a data folder, opened by one writer.
///
/// Opening creates the folder and the schema, migrates an older schema and refuses a
/// newer one; the file is in WAL mode with `synchronous=FULL`, so every method that
/// returns `Ok` after a write has made it durable. Every write method is one transaction:
/// all of it or none of it.
///
/// It is synchronous and `Send` (not `Sync`): own it on one blocking thread. See
/// [`crate::StoreHandle`] for the writer-thread pattern async code uses.
#[derive(Debug)]
pub struct SqliteStore {
    pub(crate) conn: Connection,
    pub(crate) config: StoreConfig,
    path: PathBuf,
    schema_version: i64,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in the data folder `dir`, with defaults.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreConfig::default())
    }

    /// Opens (creating if needed) the store in the data folder `dir`.
    pub fn open_with(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        if config.scram_iterations == 0 {
            return Err(StoreError::Invalid("scram_iterations must be at least 1"));
        }
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        schema::configure(&conn)?;
        let schema_version = schema::migrate(&mut conn, &path)?;
        tracing::debug!(path = %path.display(), schema_version, "store: opened");
        Ok(Self {
            conn,
            config,
            path,
            schema_version,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file (always [`crate::SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// The limits in force.
    pub fn limits(&self) -> &StoreLimits {
        &self.config.limits
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Runs SQLite's `PRAGMA integrity_check`; `Ok(())` when the file is sound.
    pub fn integrity_check(&self) -> Result<(), StoreError> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StoreError::corrupt("(integrity_check)", result))
        }
    }

    pub(crate) fn write_tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

// ---------------------------------------------------------------------------------------
// Encoding of the policy types as column text. Each has a decoder; a round-trip test below
// covers every variant.

/// Timestamps are `u64` milliseconds; SQLite integers are `i64`. Store the bits: values
/// past `i64::MAX` (the saturated far future) survive. No SQL compares these columns.
pub(crate) fn ts_to_sql(t: Timestamp) -> i64 {
    i64::from_ne_bytes(t.as_millis().to_ne_bytes())
}

pub(crate) fn ts_from_sql(v: i64) -> Timestamp {
    Timestamp::from_millis(u64::from_ne_bytes(v.to_ne_bytes()))
}

fn entry_str(e: FederationEntry) -> &'static str {
    match e {
        FederationEntry::Sip => "sip",
        FederationEntry::Xmpp(XmppListing::Allow) => "xmpp-allow",
        FederationEntry::Xmpp(XmppListing::Deny) => "xmpp-deny",
    }
}

fn entry_parse(s: &str) -> Option<FederationEntry> {
    Some(match s {
        "sip" => FederationEntry::Sip,
        "xmpp-allow" => FederationEntry::Xmpp(XmppListing::Allow),
        "xmpp-deny" => FederationEntry::Xmpp(XmppListing::Deny),
        _ => return None,
    })
}

fn mode_str(m: XmppMode) -> &'static str {
    match m {
        XmppMode::AllowAll => "allow-all",
        XmppMode::AllowListed => "allow-listed",
        XmppMode::DenyListed => "deny-listed",
    }
}

fn mode_parse(s: &str) -> Option<XmppMode> {
    Some(match s {
        "allow-all" => XmppMode::AllowAll,
        "allow-listed" => XmppMode::AllowListed,
        "deny-listed" => XmppMode::DenyListed,
        _ => return None,
    })
}

fn rule_str(r: Rule) -> &'static str {
    match r {
        Rule::Allow => "allow",
        Rule::Block => "block",
    }
}

fn rule_parse(s: &str) -> Option<Rule> {
    Some(match s {
        "allow" => Rule::Allow,
        "block" => Rule::Block,
        _ => return None,
    })
}

fn target_cols(t: &RuleTarget) -> (&'static str, String) {
    match t {
        RuleTarget::User(u) => ("user", u.to_string()),
        RuleTarget::Domain(d) => ("domain", d.as_str().to_owned()),
    }
}

fn target_parse(kind: &str, text: &str) -> Option<RuleTarget> {
    match kind {
        "user" => UserAddress::new(text).ok().map(RuleTarget::User),
        "domain" => Domain::new(text).ok().map(RuleTarget::Domain),
        _ => None,
    }
}

fn direction_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

fn direction_parse(s: &str) -> Option<Direction> {
    Some(match s {
        "inbound" => Direction::Inbound,
        "outbound" => Direction::Outbound,
        _ => return None,
    })
}

fn protocol_str(p: Protocol) -> &'static str {
    match p {
        Protocol::Sip => "sip",
        Protocol::Xmpp => "xmpp",
    }
}

fn protocol_parse(s: &str) -> Option<Protocol> {
    Some(match s {
        "sip" => Protocol::Sip,
        "xmpp" => Protocol::Xmpp,
        _ => return None,
    })
}

fn state_str(s: SubscriptionState) -> Result<&'static str, StoreError> {
    Ok(match s {
        SubscriptionState::None => "none",
        SubscriptionState::Pending => "pending",
        SubscriptionState::Active => "active",
        SubscriptionState::Terminated(r) => match r {
            TerminationReason::Unsubscribed => "terminated:unsubscribed",
            TerminationReason::Timeout => "terminated:timeout",
            TerminationReason::Rejected => "terminated:rejected",
            TerminationReason::NotFederated => "terminated:not-federated",
            TerminationReason::NotLocal => "terminated:not-local",
            other => return Err(StoreError::Unsupported(format!("{other:?}"))),
        },
    })
}

fn state_parse(s: &str) -> Option<SubscriptionState> {
    use SubscriptionState as S;
    use TerminationReason as T;
    Some(match s {
        "none" => S::None,
        "pending" => S::Pending,
        "active" => S::Active,
        "terminated:unsubscribed" => S::Terminated(T::Unsubscribed),
        "terminated:timeout" => S::Terminated(T::Timeout),
        "terminated:rejected" => S::Terminated(T::Rejected),
        "terminated:not-federated" => S::Terminated(T::NotFederated),
        "terminated:not-local" => S::Terminated(T::NotLocal),
        _ => return None,
    })
}

fn bad<T>(table: &'static str, what: &str, value: &str) -> Result<T, StoreError> {
    Err(StoreError::corrupt(table, format!("bad {what} {value:?}")))
}

fn domain(table: &'static str, s: &str) -> Result<Domain, StoreError> {
    Domain::new(s).or_else(|_| bad(table, "domain", s))
}

pub(crate) fn user(table: &'static str, s: &str) -> Result<UserAddress, StoreError> {
    UserAddress::new(s).or_else(|_| bad(table, "user address", s))
}

const XMPP_MODE_KEY: &str = "xmpp_mode";

fn apply_one(tx: &Transaction<'_>, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::PutLocalDomain(d) => {
            tx.prepare_cached("INSERT OR IGNORE INTO local_domains (domain) VALUES (?1)")?
                .execute([d.as_str()])?;
        }
        Change::DeleteLocalDomain(d) => {
            tx.prepare_cached("DELETE FROM local_domains WHERE domain = ?1")?
                .execute([d.as_str()])?;
        }
        Change::PutRemoteDomain(d, e) => {
            tx.prepare_cached(
                "INSERT INTO remote_domains (domain, entry) VALUES (?1, ?2)
                 ON CONFLICT (domain) DO UPDATE SET entry = excluded.entry",
            )?
            .execute([d.as_str(), entry_str(*e)])?;
        }
        Change::DeleteRemoteDomain(d) => {
            tx.prepare_cached("DELETE FROM remote_domains WHERE domain = ?1")?
                .execute([d.as_str()])?;
        }
        Change::SetXmppMode(m) => {
            tx.prepare_cached(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([XMPP_MODE_KEY, mode_str(*m)])?;
        }
        Change::PutRule { user, target, rule } => {
            let (kind, text) = target_cols(target);
            tx.prepare_cached(
                "INSERT INTO user_rules (user, target_kind, target, rule) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user, target_kind, target) DO UPDATE SET rule = excluded.rule",
            )?
            .execute(params![user.to_string(), kind, text, rule_str(*rule)])?;
        }
        Change::DeleteRule { user, target } => {
            let (kind, text) = target_cols(target);
            tx.prepare_cached(
                "DELETE FROM user_rules WHERE user = ?1 AND target_kind = ?2 AND target = ?3",
            )?
            .execute(params![user.to_string(), kind, text])?;
        }
        Change::PutSubscription(rec) => {
            tx.prepare_cached(
                "INSERT INTO subscriptions
                   (local, remote, direction, protocol, state, expires_at, refresh_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (local, remote, direction) DO UPDATE SET
                   protocol = excluded.protocol, state = excluded.state,
                   expires_at = excluded.expires_at, refresh_at = excluded.refresh_at",
            )?
            .execute(params![
                rec.key.local.to_string(),
                rec.key.remote.to_string(),
                direction_str(rec.key.direction),
                protocol_str(rec.protocol),
                state_str(rec.state)?,
                rec.expires_at.map(ts_to_sql),
                rec.refresh_at.map(ts_to_sql),
            ])?;
        }
        Change::DeleteSubscription(key) => {
            tx.prepare_cached(
                "DELETE FROM subscriptions WHERE local = ?1 AND remote = ?2 AND direction = ?3",
            )?
            .execute(params![
                key.local.to_string(),
                key.remote.to_string(),
                direction_str(key.direction)
            ])?;
        }
        other => return Err(StoreError::Unsupported(format!("{other:?}"))),
    }
    Ok(())
}

impl PolicyStore for SqliteStore {
    type Error = StoreError;

    /// Reads every policy table in one read transaction. Rows come back in the order
    /// [`fedgate_policy::MemoryStore`] gives them (sorted by key), so the two compare equal.
    fn load(&self) -> Result<Snapshot, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut local = Vec::new();
        {
            let mut st = tx.prepare_cached("SELECT domain FROM local_domains")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                local.push(domain("local_domains", &r.get::<_, String>(0)?)?);
            }
        }
        local.sort();

        let mut remote = BTreeMap::new();
        {
            let mut st = tx.prepare_cached("SELECT domain, entry FROM remote_domains")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let d = domain("remote_domains", &r.get::<_, String>(0)?)?;
                let e = &r.get::<_, String>(1)?;
                let Some(e) = entry_parse(e) else {
                    return bad("remote_domains", "entry", e);
                };
                remote.insert(d, e);
            }
        }

        let xmpp_mode = {
            let mut st = tx.prepare_cached("SELECT value FROM settings WHERE key = ?1")?;
            let mut rows = st.query([XMPP_MODE_KEY])?;
            match rows.next()? {
                None => None,
                Some(r) => {
                    let v = &r.get::<_, String>(0)?;
                    match mode_parse(v) {
                        Some(m) => Some(m),
                        None => return bad("settings", "xmpp_mode", v),
                    }
                }
            }
        };

        let mut rules = BTreeMap::new();
        {
            let mut st =
                tx.prepare_cached("SELECT user, target_kind, target, rule FROM user_rules")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let u = user("user_rules", &r.get::<_, String>(0)?)?;
                let (kind, text) = (&r.get::<_, String>(1)?, &r.get::<_, String>(2)?);
                let Some(t) = target_parse(kind, text) else {
                    return bad("user_rules", "target", &format!("{kind}:{text}"));
                };
                let rule = &r.get::<_, String>(3)?;
                let Some(rule) = rule_parse(rule) else {
                    return bad("user_rules", "rule", rule);
                };
                rules.insert((u, t), rule);
            }
        }

        let mut subs = BTreeMap::new();
        {
            let mut st = tx.prepare_cached(
                "SELECT local, remote, direction, protocol, state, expires_at, refresh_at
                 FROM subscriptions",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                const T: &str = "subscriptions";
                let local = user(T, &r.get::<_, String>(0)?)?;
                let remote = user(T, &r.get::<_, String>(1)?)?;
                let dir = &r.get::<_, String>(2)?;
                let Some(direction) = direction_parse(dir) else {
                    return bad(T, "direction", dir);
                };
                let p = &r.get::<_, String>(3)?;
                let Some(protocol) = protocol_parse(p) else {
                    return bad(T, "protocol", p);
                };
                let s = &r.get::<_, String>(4)?;
                let Some(state) = state_parse(s) else {
                    return bad(T, "state", s);
                };
                let key = SubscriptionKey {
                    local,
                    remote,
                    direction,
                };
                let rec = SubscriptionRecord {
                    key: key.clone(),
                    protocol,
                    state,
                    expires_at: r.get::<_, Option<i64>>(5)?.map(ts_from_sql),
                    refresh_at: r.get::<_, Option<i64>>(6)?.map(ts_from_sql),
                };
                subs.insert(key, rec);
            }
        }
        drop(tx); // read-only: rollback is a no-op

        Ok(Snapshot {
            local_domains: local,
            remote_domains: remote.into_iter().collect(),
            xmpp_mode,
            rules: rules.into_iter().map(|((u, t), r)| (u, t, r)).collect(),
            subscriptions: subs.into_values().collect(),
        })
    }

    /// One `IMMEDIATE` transaction for the whole batch; on any error nothing is written.
    fn apply(&mut self, batch: &[Change]) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        for change in batch {
            apply_one(&tx, change)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_round_trips() {
        for e in [
            FederationEntry::Sip,
            FederationEntry::Xmpp(XmppListing::Allow),
            FederationEntry::Xmpp(XmppListing::Deny),
        ] {
            assert_eq!(entry_parse(entry_str(e)), Some(e));
        }
        for m in [
            XmppMode::AllowAll,
            XmppMode::AllowListed,
            XmppMode::DenyListed,
        ] {
            assert_eq!(mode_parse(mode_str(m)), Some(m));
        }
        for r in [Rule::Allow, Rule::Block] {
            assert_eq!(rule_parse(rule_str(r)), Some(r));
        }
        for d in [Direction::Inbound, Direction::Outbound] {
            assert_eq!(direction_parse(direction_str(d)), Some(d));
        }
        for p in [Protocol::Sip, Protocol::Xmpp] {
            assert_eq!(protocol_parse(protocol_str(p)), Some(p));
        }
        use SubscriptionState as S;
        use TerminationReason as T;
        for s in [
            S::None,
            S::Pending,
            S::Active,
            S::Terminated(T::Unsubscribed),
            S::Terminated(T::Timeout),
            S::Terminated(T::Rejected),
            S::Terminated(T::NotFederated),
            S::Terminated(T::NotLocal),
        ] {
            assert_eq!(state_parse(state_str(s).unwrap()), Some(s));
        }
        for t in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            let t = Timestamp::from_millis(t);
            assert_eq!(ts_from_sql(ts_to_sql(t)), t);
        }
        for t in [
            RuleTarget::User("bob@example.org".parse().unwrap()),
            RuleTarget::Domain("example.org".parse().unwrap()),
        ] {
            let (k, s) = target_cols(&t);
            assert_eq!(target_parse(k, &s), Some(t));
        }
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;
    use fedgate_policy::MemoryStore;

    fn u(s: &str) -> UserAddress {
        s.parse().unwrap()
    }

    fn sub(local: &str, remote: &str) -> Change {
        Change::PutSubscription(SubscriptionRecord {
            key: SubscriptionKey::inbound(u(local), u(remote)),
            protocol: Protocol::Xmpp,
            state: SubscriptionState::Active,
            expires_at: None,
            refresh_at: None,
        })
    }

    #[test]
    fn opened_in_wal_with_synchronous_full_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous must be FULL (2)");
        let fk: i64 = s
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        s.integrity_check().unwrap();
    }

    /// A batch whose last change fails leaves nothing of the batch behind.
    #[test]
    fn apply_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path()).unwrap();
        let mut mem = MemoryStore::new();
        let first = [Change::PutLocalDomain("example.com".parse().unwrap())];
        s.apply(&first).unwrap();
        mem.apply(&first).unwrap();
        // Fail any write of one particular subscription, as a full disk would.
        s.conn
            .execute_batch(
                "CREATE TEMP TRIGGER inject BEFORE INSERT ON subscriptions
                 WHEN NEW.remote = 'boom@x.example'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let batch = [
            Change::PutLocalDomain("other.example".parse().unwrap()),
            Change::SetXmppMode(XmppMode::AllowAll),
            sub("alice@example.com", "bob@y.example"),
            sub("alice@example.com", "boom@x.example"),
        ];
        let err = s.apply(&batch).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(s.load().unwrap(), mem.load().unwrap());
        // The store is still usable, and a good batch commits.
        s.apply(&batch[..3]).unwrap();
        mem.apply(&batch[..3]).unwrap();
        assert_eq!(s.load().unwrap(), mem.load().unwrap());
    }

    #[test]
    fn corrupt_rows_are_reported_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        s.conn
            .execute(
                "INSERT INTO subscriptions (local, remote, direction, protocol, state)
                 VALUES ('alice@example.com', 'bob@y.example', 'inbound', 'sip', 'exploded')",
                [],
            )
            .unwrap();
        let err = s.load().unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::CorruptRow {
                    table: "subscriptions",
                    ..
                }
            ),
            "{err}"
        );
    }
}
