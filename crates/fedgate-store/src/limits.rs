//! Configuration: limits on what a peer can make the store hold, and the SCRAM cost.

/// Limits on stored data, so a remote peer cannot make the database grow without bound
/// per user. Every limit is checked before anything is written; exceeding one gives
/// [`crate::StoreError::TooLarge`], [`crate::StoreError::OfflineQuotaFull`],
/// [`crate::StoreError::RosterFull`] or [`crate::StoreError::SipDialogsFull`] and a
/// `tracing` warning.
///
/// With the defaults, one user's offline queue is at most 500 × 64 KiB = 32 MiB, one
/// roster at most 1000 × (3071 + 1 KiB + 16 × 1 KiB + 64 KiB) ≈ 85 MiB and the SIP dialog
/// table (all users together) at most 100 000 × (1 KiB + 2 × 2047 + 16 KiB) ≈ 2 GiB in the
/// worst case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Largest stanza stored (an offline message, a roster item's pending-in
    /// subscription request), in bytes: 65 536 (64 KiB, a common s2s stanza limit).
    pub max_stanza_bytes: usize,
    /// Largest short text (a roster item's name, one group name), in bytes: 1024.
    pub max_text_bytes: usize,
    /// Most groups on one roster item: 16.
    pub max_groups_per_item: usize,
    /// Most items in one user's roster: 1000.
    pub max_roster_items: usize,
    /// Most messages in one user's offline queue: 500.
    pub max_offline_messages: usize,
    /// Longest password accepted by [`crate::UserStore::add_user`] and `verify_plain`, in
    /// bytes: 1024 (PBKDF2 cost does not depend on it, but we do not hash megabytes).
    pub max_password_bytes: usize,
    /// Most SIP dialog records ([`crate::SipDialogStore`]) in the whole store, expired
    /// ones included until `sip_dialogs` removes them: 100 000.
    pub max_sip_dialogs: usize,
    /// Largest SIP dialog record (its opaque `record` bytes): 16 384 (16 KiB).
    pub max_sip_dialog_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 64 * 1024,
            max_text_bytes: 1024,
            max_groups_per_item: 16,
            max_roster_items: 1000,
            max_offline_messages: 500,
            max_password_bytes: 1024,
            max_sip_dialogs: 100_000,
            max_sip_dialog_bytes: 16 * 1024,
        }
    }
}

/// How [`crate::SqliteStore::open_with`] opens a data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Limits on stored data.
    pub limits: StoreLimits,
    /// PBKDF2 iteration count for new credentials: 4096, the floor RFC 7677 §4 and
    /// RFC 5802 §5.1 recommend. Raising it costs CPU on every SCRAM client's first login
    /// and on every PLAIN check; existing users keep the count they were stored with.
    pub scram_iterations: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            limits: StoreLimits::default(),
            scram_iterations: 4096,
        }
    }
}

pub(crate) fn check_len(
    what: &'static str,
    len: usize,
    limit: usize,
) -> Result<(), crate::StoreError> {
    if len > limit {
        tracing::warn!(
            what,
            len,
            limit,
            "store: value over the configured limit refused"
        );
        return Err(crate::StoreError::TooLarge { what, len, limit });
    }
    Ok(())
}
