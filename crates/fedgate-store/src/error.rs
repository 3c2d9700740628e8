//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
///
/// How the node answers each (so nothing is acknowledged that is not durable):
///
/// | variant | XMPP answer | SIP answer |
/// |---|---|---|
/// | [`StoreError::OfflineQuotaFull`], [`StoreError::RosterFull`], [`StoreError::SipDialogsFull`] | `<resource-constraint/>` (wait) | 480 / 503 |
/// | [`StoreError::TooLarge`] | `<policy-violation/>` (modify) | 513 |
/// | [`StoreError::Busy`] | `<resource-constraint/>` (wait) | 503 + `Retry-After` |
/// | anything else | `<internal-server-error/>` (wait) | 500 |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data folder could not be created or opened.
    #[error("store data folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// SQLite failed (disk full, I/O error, corrupt file, …).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer fedgate; this build refuses to touch it.
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this build \
         supports: run a newer fedgate, or restore a backup made by this version"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version stored in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A stored row could not be decoded (the file was edited by hand or is corrupt).
    #[error("corrupt row in table {table}: {detail}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A value this build cannot store (a `#[non_exhaustive]` variant added upstream).
    #[error("cannot store {0}: unknown to this version of fedgate-store")]
    Unsupported(String),
    /// A text or stanza is longer than the configured limit; nothing was written.
    #[error("{what} is {len} bytes long; the limit is {limit}")]
    TooLarge {
        /// What was too long (`"offline stanza"`, `"roster item name"`,
        /// `"sip dialog record"`, …).
        what: &'static str,
        /// Its length in bytes (or count, for `"roster groups"`).
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The user's offline queue holds the configured maximum of messages.
    #[error("offline queue of {user} is full ({limit} messages); message not stored")]
    OfflineQuotaFull {
        /// The recipient.
        user: String,
        /// The configured limit.
        limit: usize,
    },
    /// The user's roster holds the configured maximum of items.
    #[error("roster of {user} is full ({limit} items); item not added")]
    RosterFull {
        /// The user.
        user: String,
        /// The configured limit.
        limit: usize,
    },
    /// The store holds the configured maximum of SIP dialog records
    /// ([`crate::StoreLimits::max_sip_dialogs`]).
    #[error("SIP dialog table is full ({limit} dialogs); dialog not stored")]
    SipDialogsFull {
        /// The configured limit.
        limit: usize,
    },
    /// [`crate::UserStore::add_user`] for a user that exists.
    #[error("user {0} already exists")]
    UserExists(String),
    /// An operation on a user that does not exist.
    #[error("no such user {0}")]
    UnknownUser(String),
    /// A roster JID that is not a bare JID.
    #[error("invalid roster JID {jid:?}: {reason}")]
    InvalidJid {
        /// The offending text.
        jid: String,
        /// Why.
        reason: &'static str,
    },
    /// An invalid argument (an iteration count of zero, …).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The OS random number generator failed (salt generation).
    #[error("no randomness for a salt: {0}")]
    Random(String),
    /// The writer thread's queue is full: answer the peer "try later" ([`crate::StoreHandle`]).
    #[error("store writer is busy ({capacity} requests queued)")]
    Busy {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The writer thread has stopped (it panicked, or every handle was dropped).
    #[error("store writer thread is gone")]
    WriterGone,
}

impl StoreError {
    pub(crate) fn corrupt(table: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::CorruptRow {
            table,
            detail: detail.to_string(),
        }
    }

    /// True when the caller should answer "try again later" rather than "failed":
    /// a full queue or quota, not a broken store.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Busy { .. }
                | Self::OfflineQuotaFull { .. }
                | Self::RosterFull { .. }
                | Self::SipDialogsFull { .. }
        )
    }
}
