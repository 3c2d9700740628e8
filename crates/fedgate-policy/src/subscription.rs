//! Subscription bookkeeping types: one record per (local user, remote user, direction).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::addr::UserAddress;
use crate::federation::Protocol;
use crate::time::Timestamp;

/// Which way presence flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A remote watcher subscribes to a local user's presence.
    Inbound,
    /// A local user subscribes to a remote user's presence.
    Outbound,
}

/// The identity of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionKey {
    /// The local user (presentity for inbound, watcher for outbound).
    pub local: UserAddress,
    /// The remote user (watcher for inbound, presentity for outbound).
    pub remote: UserAddress,
    /// Which way presence flows.
    pub direction: Direction,
}

impl SubscriptionKey {
    /// A remote `watcher` subscribing to `local`.
    pub fn inbound(local: UserAddress, watcher: UserAddress) -> Self {
        Self {
            local,
            remote: watcher,
            direction: Direction::Inbound,
        }
    }

    /// `local` subscribing to a remote `presentity`.
    pub fn outbound(local: UserAddress, presentity: UserAddress) -> Self {
        Self {
            local,
            remote: presentity,
            direction: Direction::Outbound,
        }
    }
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TerminationReason {
    /// The subscriber ended it (SIP `Expires: 0`, XMPP `unsubscribe`).
    Unsubscribed,
    /// Its expiry passed without a refresh.
    Timeout,
    /// The other side (or, inbound, the policy) rejected it.
    Rejected,
    /// The remote domain stopped being federated over this subscription's protocol.
    NotFederated,
    /// The local user's domain stopped being one of ours.
    NotLocal,
}

/// The state of one subscription.
///
/// ```text
///            subscribe                 allowed / polite block / remote 200+active
///   None ──────────────▶ Pending ────────────────────────────────────────▶ Active
///    │                     │                                                 │
///    │ allowed / polite    │ unsubscribe, expiry, rejection,                 │ refresh keeps it Active
///    │ block (inbound)     │ domain no longer permitted                      │
///    └───────────────────▶ Active ─────────────────────────────▶ Terminated ◀┘
///                                                                   │  linger
///                                                                   ▼
///                                                                 None (purged)
/// ```
///
/// A polite block is `Active`: the watcher's subscription succeeds exactly like an allowed
/// one, and only what it is shown differs (always Offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionState {
    /// No subscription (never stored).
    None,
    /// Waiting for the local user's answer (inbound) or the remote side's (outbound).
    Pending,
    /// Established.
    Active,
    /// Ended; kept for a while so late messages can be matched, then purged.
    Terminated(TerminationReason),
}

/// One persisted subscription: plain data, one row of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Identity.
    pub key: SubscriptionKey,
    /// Protocol it runs over.
    pub protocol: Protocol,
    /// Current state (never [`SubscriptionState::None`]).
    pub state: SubscriptionState,
    /// When it ends unless refreshed (SIP); for a terminated record, when it is purged.
    /// `None` for XMPP, whose subscriptions do not expire (RFC 6121).
    pub expires_at: Option<Timestamp>,
    /// When we must send a refresh (outbound SIP only).
    pub refresh_at: Option<Timestamp>,
}

impl SubscriptionRecord {
    /// The earliest deadline of this record, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match (self.refresh_at, self.expires_at) {
            (Some(r), Some(e)) => Some(r.min(e)),
            (r, e) => r.or(e),
        }
    }

    /// True when the record is live at `now` (not terminated and not past its expiry).
    pub fn is_live(&self, now: Timestamp) -> bool {
        matches!(
            self.state,
            SubscriptionState::Pending | SubscriptionState::Active
        ) && self.expires_at.is_none_or(|e| now < e)
    }
}

/// Durations the bookkeeping uses. Every value is configurable; the defaults are written
/// next to each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionLimits {
    /// Expiry used when a SIP SUBSCRIBE has no `Expires`: 3600 s (RFC 3856 §6.4).
    pub default_expires: Duration,
    /// Smallest expiry granted: 60 s. (The SIP layer answers 423 with `Min-Expires` before
    /// asking policy if it wants to refuse shorter ones; policy clamps.)
    pub min_expires: Duration,
    /// Largest expiry granted: 7200 s. Lync asks for about two hours and refreshes after
    /// one hour 45 minutes.
    pub max_expires: Duration,
    /// How long a terminated record is kept before it is purged: 300 s.
    pub terminated_linger: Duration,
}

impl Default for SubscriptionLimits {
    fn default() -> Self {
        Self {
            default_expires: Duration::from_secs(3600),
            min_expires: Duration::from_secs(60),
            max_expires: Duration::from_secs(7200),
            terminated_linger: Duration::from_secs(300),
        }
    }
}

impl SubscriptionLimits {
    /// The expiry granted for a request: the default when none was asked, clamped to
    /// `[min_expires, max_expires]`.
    pub fn grant(&self, requested: Option<Duration>) -> Duration {
        requested
            .unwrap_or(self.default_expires)
            .clamp(self.min_expires, self.max_expires.max(self.min_expires))
    }

    /// When to refresh an outbound subscription granted `granted`: after 7/8 of it (for a
    /// two-hour grant that is one hour 45 minutes, Lync's own refresh interval).
    ///
    /// Seed: "Microsoft S4B/Lync performs a refresh subscribe every one hour and 45 minutes."
    /// We refresh ours on the same schedule.
    pub fn refresh_after(granted: Duration) -> Duration {
        granted / 8 * 7
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_clamps_and_defaults() {
        let l = SubscriptionLimits::default();
        assert_eq!(l.grant(None), Duration::from_secs(3600));
        assert_eq!(
            l.grant(Some(Duration::from_secs(1))),
            Duration::from_secs(60)
        );
        assert_eq!(
            l.grant(Some(Duration::from_secs(100_000))),
            Duration::from_secs(7200)
        );
        assert_eq!(
            SubscriptionLimits::refresh_after(Duration::from_secs(7200)),
            Duration::from_secs(6300)
        );
    }

    #[test]
    fn deadlines_and_liveness() {
        let key = SubscriptionKey::outbound(
            "a@x.example".parse().unwrap(),
            "b@y.example".parse().unwrap(),
        );
        let mut r = SubscriptionRecord {
            key,
            protocol: Protocol::Sip,
            state: SubscriptionState::Active,
            expires_at: Some(Timestamp::from_millis(100)),
            refresh_at: Some(Timestamp::from_millis(80)),
        };
        assert_eq!(r.next_deadline(), Some(Timestamp::from_millis(80)));
        assert!(r.is_live(Timestamp::from_millis(99)));
        assert!(!r.is_live(Timestamp::from_millis(100)));
        r.refresh_at = None;
        assert_eq!(r.next_deadline(), Some(Timestamp::from_millis(100)));
        r.state = SubscriptionState::Terminated(TerminationReason::Timeout);
        assert!(!r.is_live(Timestamp::from_millis(0)));
        r.expires_at = None;
        assert_eq!(r.next_deadline(), None);
    }
}
