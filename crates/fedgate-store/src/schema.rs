//! Schema creation and migration.
//!
//! `schema_version` holds one row: the number of migrations applied. On open, every
//! migration past it runs in one `IMMEDIATE` transaction together with the version bump,
//! so a crash during a migration leaves the old schema intact. A file whose version is
//! newer than [`SCHEMA_VERSION`] is refused ([`crate::StoreError::NewerSchema`]) and not
//! modified.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::StoreError;

/// Migration `i` (0-based) brings the schema from version `i` to `i + 1`. Never edit a
/// published migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    -- fedgate-policy (one table per Change kind; see fedgate_policy::store)
    CREATE TABLE local_domains (
        domain TEXT PRIMARY KEY NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE remote_domains (
        domain TEXT PRIMARY KEY NOT NULL,
        entry  TEXT NOT NULL CHECK (entry IN ('sip', 'xmpp-allow', 'xmpp-deny'))
    ) WITHOUT ROWID;
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE user_rules (
        user        TEXT NOT NULL,
        target_kind TEXT NOT NULL CHECK (target_kind IN ('user', 'domain')),
        target      TEXT NOT NULL,
        rule        TEXT NOT NULL CHECK (rule IN ('allow', 'block')),
        PRIMARY KEY (user, target_kind, target)
    ) WITHOUT ROWID;
    CREATE TABLE subscriptions (
        local      TEXT NOT NULL,
        remote     TEXT NOT NULL,
        direction  TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        protocol   TEXT NOT NULL CHECK (protocol IN ('sip', 'xmpp')),
        state      TEXT NOT NULL,
        expires_at INTEGER,
        refresh_at INTEGER,
        PRIMARY KEY (local, remote, direction)
    ) WITHOUT ROWID;

    -- users and SASL credentials (never the password)
    CREATE TABLE users (
        user TEXT PRIMARY KEY NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE credentials (
        user       TEXT NOT NULL REFERENCES users (user) ON DELETE CASCADE,
        mechanism  TEXT NOT NULL CHECK (mechanism IN ('SCRAM-SHA-1', 'SCRAM-SHA-256')),
        salt       BLOB NOT NULL,
        iterations INTEGER NOT NULL CHECK (iterations > 0),
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        PRIMARY KEY (user, mechanism)
    ) WITHOUT ROWID;

    -- rosters (RFC 6121)
    CREATE TABLE roster_versions (
        user    TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE roster_items (
        user         TEXT NOT NULL,
        jid          TEXT NOT NULL,
        name         TEXT,
        subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
        ask_out      INTEGER NOT NULL CHECK (ask_out IN (0, 1)),
        approved     INTEGER NOT NULL CHECK (approved IN (0, 1)),
        pending_in   TEXT,
        PRIMARY KEY (user, jid)
    ) WITHOUT ROWID;
    CREATE TABLE roster_groups (
        user  TEXT NOT NULL,
        jid   TEXT NOT NULL,
        grp   TEXT NOT NULL,
        PRIMARY KEY (user, jid, grp),
        FOREIGN KEY (user, jid) REFERENCES roster_items (user, jid) ON DELETE CASCADE
    ) WITHOUT ROWID;

    -- offline messages; AUTOINCREMENT so an id is never reused and a late ack cannot
    -- delete a newer message
    CREATE TABLE offline_messages (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        user      TEXT NOT NULL,
        stored_at INTEGER NOT NULL,
        stanza    TEXT NOT NULL
    );
    CREATE INDEX offline_messages_by_user ON offline_messages (user, id);

    -- counters that must never go backwards (roster versions)
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // v2
    r#"
    -- SIP dialogs of running subscriptions, resumed after a restart; `record` is opaque
    -- to the store. Times are unix seconds from the caller's clock.
    CREATE TABLE sip_dialogs (
        id         TEXT PRIMARY KEY NOT NULL,
        local      TEXT NOT NULL,
        remote     TEXT NOT NULL,
        record     BLOB NOT NULL,
        stored_at  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sip_dialogs_by_expiry ON sip_dialogs (expires_at);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Sets the connection up: WAL, `synchronous=FULL`, foreign keys.
pub(crate) fn configure(conn: &Connection) -> Result<(), StoreError> {
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unsupported(format!(
            "journal_mode={mode} (WAL was refused by this file system)"
        )));
    }
    // FULL: a commit returns only once the WAL is fsynced, so an acknowledged write
    // survives power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Creates or migrates the schema; refuses a newer one. Returns the version.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")?;
    let found: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::corrupt("schema_version", found));
    }
    if found == SCHEMA_VERSION {
        return Ok(found);
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(from = i, to = i + 1, path = %path.display(), "store: migrating schema");
        tx.execute_batch(sql)?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(SCHEMA_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        DB_FILE, OfflineStore, RosterItem, RosterStore, SipDialogRecord, SipDialogStore,
        SqliteStore,
    };
    use fedgate_policy::{Change, PolicyStore, Timestamp, UserAddress, XmppMode};

    /// Writes the file a build of schema version `version` would have left: the same
    /// connection set-up, the first `version` migrations and the version row.
    fn create_at_version(dir: &Path, version: usize) -> std::path::PathBuf {
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).unwrap();
        configure(&conn).unwrap();
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);")
            .unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )
        .unwrap();
        path
    }

    fn table_exists(conn: &Connection, name: &str) -> bool {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn schema_version_is_two() {
        assert_eq!(SCHEMA_VERSION, 2);
    }

    /// A file written by a v1 build (before SIP dialogs) opens: migrated to the current
    /// version, its data intact, the new table there and usable.
    #[test]
    fn v1_file_migrates_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let alice: UserAddress = "alice@example.com".parse().unwrap();
        let path = create_at_version(dir.path(), 1);
        {
            // Data written through SQL, as the v1 build stored it.
            let conn = Connection::open(&path).unwrap();
            assert!(!table_exists(&conn, "sip_dialogs"));
            conn.execute_batch(
                "INSERT INTO settings (key, value) VALUES ('xmpp_mode', 'deny-listed');
                 INSERT INTO offline_messages (user, stored_at, stanza)
                     VALUES ('alice@example.com', 7, '<message>old</message>');
                 INSERT INTO roster_items (user, jid, subscription, ask_out, approved)
                     VALUES ('alice@example.com', 'bob@lync.example', 'both', 0, 0);
                 INSERT INTO roster_versions (user, version) VALUES ('alice@example.com', 3);
                 INSERT INTO counters (name, value) VALUES ('roster_version', 3);",
            )
            .unwrap();
        }

        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.schema_version(), SCHEMA_VERSION);
        assert_eq!(s.load().unwrap().xmpp_mode, Some(XmppMode::DenyListed));
        let queued = s.offline_peek(&alice).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].stanza, "<message>old</message>");
        assert_eq!(queued[0].stored_at, Timestamp::from_millis(7));
        let roster = s.roster(&alice).unwrap();
        assert_eq!(roster.items.len(), 1);
        assert_eq!(roster.items[0].jid, "bob@lync.example");
        assert_eq!(s.roster_version(&alice).unwrap(), 3);
        s.integrity_check().unwrap();

        // The new table works, and old tables still take writes.
        let rec = SipDialogRecord {
            id: "call-1;from-tag=a;to-tag=b".into(),
            local: "alice@example.com".into(),
            remote: "bob@lync.example".into(),
            record: vec![1, 2, 3],
            stored_at: 100,
            expires_at: 200,
        };
        s.put_sip_dialog(&rec).unwrap();
        assert_eq!(s.sip_dialogs(150).unwrap(), vec![rec.clone()]);
        s.roster_set(&alice, &RosterItem::new("carol@lync.example"))
            .unwrap();
        s.apply(&[Change::SetXmppMode(XmppMode::AllowAll)]).unwrap();
        drop(s);

        // Reopening does not migrate again; everything is still there.
        let conn = Connection::open(&path).unwrap();
        assert!(table_exists(&conn, "sip_dialogs"));
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(versions, vec![SCHEMA_VERSION]);
        drop(conn);
        let mut s = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(s.sip_dialogs(150).unwrap(), vec![rec]);
        assert_eq!(s.offline_count(&alice).unwrap(), 1);
        assert_eq!(s.roster(&alice).unwrap().items.len(), 2);
    }

    /// Every older version upgrades to the current one (guards future migrations too).
    #[test]
    fn every_older_version_upgrades() {
        for version in 1..MIGRATIONS.len() {
            let dir = tempfile::tempdir().unwrap();
            create_at_version(dir.path(), version);
            let s = SqliteStore::open(dir.path()).unwrap();
            assert_eq!(s.schema_version(), SCHEMA_VERSION, "from v{version}");
            s.integrity_check().unwrap();
            assert!(table_exists(&s.conn, "sip_dialogs"), "from v{version}");
        }
    }
}
