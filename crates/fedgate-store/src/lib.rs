//! The durable state of a fedgate federation node, behind traits, in SQLite by default.
//!
//! # What it does
//!
//! [`SqliteStore`] keeps one SQLite file (`fedgate.sqlite3`) in a data folder:
//!
//! * **Policy state** — `impl` [`fedgate_policy::PolicyStore`]: local and remote domains,
//!   the XMPP administrator mode, per-user allow/block rules and every presence
//!   subscription. `load` gives the full [`fedgate_policy::Snapshot`]; `apply` is one
//!   transaction, all or nothing.
//! * **Users and SASL credentials** — [`UserStore`], [`CredentialStore`]: SCRAM-SHA-1
//!   (RFC 5802) and SCRAM-SHA-256 (RFC 7677) salt, iteration count, `StoredKey` and
//!   `ServerKey`, derived with PBKDF2-HMAC when a user is added; the PLAIN check re-derives
//!   the SCRAM-SHA-256 `StoredKey`. The password is never stored.
//! * **Rosters** (RFC 6121) — [`RosterStore`]: items with name, groups, subscription,
//!   pending-out, pre-approval and the pending-in request stanza; a roster version that
//!   never goes backwards.
//! * **Offline messages** — [`OfflineStore`]: a bounded per-user queue, read in arrival
//!   order with `offline_peek` and deleted with `offline_ack` after delivery, so a crash in
//!   between re-delivers instead of losing.
//! * **SIP dialogs** — [`SipDialogStore`]: the dialogs of running SIP subscriptions (a
//!   Lync user watching a local user) as opaque [`SipDialogRecord`]s keyed by an id, so a
//!   restarted node keeps sending NOTIFYs in the same dialogs; `sip_dialogs(now)` deletes
//!   the expired ones and returns the rest.
//! * **Limits** — [`StoreLimits`]: stanza and text sizes, roster items, queue length, SIP
//!   dialog count and size, so a peer cannot grow the database without bound.
//!
//! Durability: WAL journal, `synchronous=FULL`, one `IMMEDIATE` transaction per write
//! method. When a write returns `Ok` it is on disk; the node acknowledges nothing to a peer
//! (SIP 200, XMPP delivery) before that. The schema is created and migrated on open
//! ([`SCHEMA_VERSION`] in the `schema_version` table); a newer schema is refused
//! ([`StoreError::NewerSchema`]).
//!
//! # How the node runs it
//!
//! The API is synchronous and a write waits for an fsync. There is one writer: the node
//! moves the store onto its own thread with [`StoreHandle::spawn`] (a bounded queue of
//! requests; each answered through a [`Reply`] that async code `.await`s, runtime-agnostic)
//! or owns it inside `spawn_blocking`. A full queue is [`StoreError::Busy`] at once, which
//! the node turns into "try later" for the peer. Reads go through the same writer, so
//! every read sees every acknowledged write.
//!
//! # What it does not do
//!
//! No networking, no clock (the caller passes [`fedgate_policy::Timestamp`]s, or unix
//! seconds for SIP dialogs), no tokio. It does not parse stanzas, JIDs or SIP dialogs:
//! stanzas and dialog records are opaque, roster JIDs are strings the node has already
//! canonicalised (only emptiness, resources, whitespace and length are checked). No
//! SASLprep: the node normalizes passwords before calling. No SCRAM protocol exchange
//! (nonces, message parsing: fedgate-xmpp's job), only the keys and the checks
//! ([`ScramCredentials::verify_client_proof`], [`ScramCredentials::server_signature`]).
//! No roster diffs for versioning (a client with an old version gets the full roster), no
//! expiry of offline messages, no networked engine for clusters yet, no read replicas.
//!
//! # Example
//!
//! ```
//! use fedgate_policy::{Change, Domain, PolicyStore, Timestamp, UserAddress};
//! use fedgate_store::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let alice: UserAddress = "alice@example.com".parse()?;
//! {
//!     let mut store = SqliteStore::open(dir.path())?;
//!     store.apply(&[Change::PutLocalDomain("example.com".parse()?)])?;
//!     store.add_user(&alice, "pencil")?;
//!     store.roster_set(&alice, &RosterItem::new("bob@lync.example"))?;
//!     store.offline_push(&alice, Timestamp::from_millis(1), "<message>hi</message>")?;
//!     store.put_sip_dialog(&SipDialogRecord {
//!         id: "a84b4c76e66710@lync.example;from-tag=1928301774;to-tag=314159".into(),
//!         local: "alice@example.com".into(),
//!         remote: "bob@lync.example".into(),
//!         record: b"(the gateway's serialized dialog)".to_vec(),
//!         stored_at: 1_700_000_000,
//!         expires_at: 1_700_003_600,
//!     })?;
//! } // closed: as after a restart
//! let mut store = SqliteStore::open(dir.path())?;
//! assert_eq!(store.load()?.local_domains, vec!["example.com".parse::<Domain>()?]);
//! assert!(store.verify_plain(&alice, "pencil")?);
//! assert!(!store.verify_plain(&alice, "wrong")?);
//! let creds = store.scram_credentials(&alice, ScramMechanism::Sha256)?.unwrap();
//! assert_eq!(creds.iterations, 4096);
//! assert_eq!(store.roster(&alice)?.items.len(), 1);
//! let queued = store.offline_peek(&alice)?;
//! assert_eq!(queued[0].stanza, "<message>hi</message>");
//! // ... deliver, then:
//! store.offline_ack(&alice, &[queued[0].id])?;
//! assert_eq!(store.offline_count(&alice)?, 0);
//! assert_eq!(store.sip_dialogs(1_700_000_060)?.len(), 1); // not expired yet
//! assert!(store.sip_dialogs(1_700_003_600)?.is_empty()); // expired: deleted
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod handle;
mod limits;
mod offline;
mod roster;
mod schema;
mod scram;
mod sipdialog;
mod sqlite;
mod users;

pub use error::StoreError;
pub use handle::{Reply, StoreHandle};
pub use limits::{StoreConfig, StoreLimits};
pub use offline::{OfflineId, OfflineMessage, OfflineStore};
pub use roster::{MAX_BARE_JID_BYTES, Roster, RosterItem, RosterStore, RosterSubscription};
pub use schema::SCHEMA_VERSION;
pub use scram::{ScramCredentials, ScramMechanism};
pub use sipdialog::{MAX_SIP_DIALOG_ID_BYTES, SipDialogRecord, SipDialogStore};
pub use sqlite::{DB_FILE, SqliteStore};
pub use users::{CredentialStore, SALT_LEN, UserStore};
