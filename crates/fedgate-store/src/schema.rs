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
