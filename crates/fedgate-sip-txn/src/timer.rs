//! The timers of RFC 3261 §17 (Table 4), RFC 6026 and RFC 6665, as a named enum
//! and a table of durations.
//!
//! | Timer | Value | Section | Meaning | Reliable transport (TCP/TLS) |
//! |---|---|---|---|---|
//! | A | T1, doubling | 17.1.1.2 | INVITE request retransmit | not used |
//! | B | 64·T1 | 17.1.1.2 | INVITE client transaction timeout (Calling) | 64·T1 |
//! | C | 3 min | 16.6 | INVITE client transaction in Proceeding waits for a final response (bound; a UAC would CANCEL) | 3 min |
//! | D | 32 s | 17.1.1.2 | client INVITE Completed: absorb response retransmits | 0 |
//! | E | T1, doubling to T2 (T2 in Proceeding) | 17.1.2.2 | non-INVITE request retransmit | not used |
//! | F | 64·T1 | 17.1.2.2 | non-INVITE client transaction timeout | 64·T1 |
//! | G | T1, doubling to T2 | 17.2.1 | INVITE final response (≥300) retransmit | not used |
//! | H | 64·T1 | 17.2.1 | wait for ACK | 64·T1 |
//! | I | T4 | 17.2.1 | server INVITE Confirmed: absorb ACK retransmits | 0 |
//! | J | 64·T1 | 17.2.2 | server non-INVITE Completed: absorb request retransmits | 0 |
//! | K | T4 | 17.1.2.2 | client non-INVITE Completed: absorb response retransmits | 0 |
//! | L | 64·T1 | RFC 6026 §8.4 | server INVITE Accepted | 64·T1 |
//! | M | 64·T1 | RFC 6026 §8.4 | client INVITE Accepted | 64·T1 |
//! | Trying | 200 ms | 17.2.1 | send 100 Trying if the TU has not answered the INVITE | 200 ms |
//! | Guard | 64·T1 (non-INVITE), 3 min (INVITE) | fedgate | the TU must answer a request within this bound, else the transaction answers 408 | same |
//! | N | 64·T1 | RFC 6665 §4.1.2.4 | subscriber waits for the first NOTIFY | 64·T1 |
//!
//! Durations come from [`TimerConfig`] through [`Timer::duration`].

use std::time::{Duration, Instant};

/// Per-endpoint timer base values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate. Default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses. Default 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network. Default 5 s.
    pub t4: Duration,
    /// Timer C: how long an INVITE client transaction waits in Proceeding. Default 3 min.
    pub timer_c: Duration,
    /// Timer D on unreliable transports (at least 32 s). Default 32 s.
    pub timer_d: Duration,
    /// The 100 Trying rule: send 100 if the TU has not answered within this. Default 200 ms.
    pub trying: Duration,
    /// How long the TU may take to answer an INVITE before the transaction answers
    /// 408 itself. Default 3 min.
    pub invite_guard: Duration,
}

impl TimerConfig {
    /// The RFC 3261 defaults.
    pub const DEFAULT: TimerConfig = TimerConfig {
        t1: Duration::from_millis(500),
        t2: Duration::from_secs(4),
        t4: Duration::from_secs(5),
        timer_c: Duration::from_secs(180),
        timer_d: Duration::from_secs(32),
        trying: Duration::from_millis(200),
        invite_guard: Duration::from_secs(180),
    };

    /// 64·T1.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig::DEFAULT
    }
}

/// A named timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Timer {
    /// INVITE request retransmit (unreliable only).
    A,
    /// INVITE client transaction timeout.
    B,
    /// INVITE client transaction Proceeding bound.
    C,
    /// Client INVITE Completed wait.
    D,
    /// Non-INVITE request retransmit (unreliable only).
    E,
    /// Non-INVITE client transaction timeout.
    F,
    /// INVITE final response retransmit (unreliable only).
    G,
    /// Wait for ACK.
    H,
    /// Server INVITE Confirmed wait.
    I,
    /// Server non-INVITE Completed wait.
    J,
    /// Client non-INVITE Completed wait.
    K,
    /// Server INVITE Accepted wait (RFC 6026).
    L,
    /// Client INVITE Accepted wait (RFC 6026).
    M,
    /// The 100 Trying rule (200 ms).
    Trying,
    /// The TU did not answer in time.
    Guard,
    /// RFC 6665 Timer N: first NOTIFY.
    N,
}

impl Timer {
    /// The initial duration of this timer, or `None` when the timer is not used on
    /// this kind of transport (A, E and G on reliable transports). A zero duration
    /// (D, I, J, K on reliable transports) means "immediately".
    pub fn duration(self, cfg: &TimerConfig, reliable: bool) -> Option<Duration> {
        let zero_if_reliable = |d: Duration| Some(if reliable { Duration::ZERO } else { d });
        match self {
            Timer::A | Timer::E | Timer::G => (!reliable).then_some(cfg.t1),
            Timer::B | Timer::F | Timer::H | Timer::L | Timer::M | Timer::N => Some(cfg.t1x64()),
            Timer::C => Some(cfg.timer_c),
            Timer::D => zero_if_reliable(cfg.timer_d.max(Duration::from_secs(32))),
            Timer::I | Timer::K => zero_if_reliable(cfg.t4),
            Timer::J => zero_if_reliable(cfg.t1x64()),
            Timer::Trying => Some(cfg.trying),
            Timer::Guard => Some(cfg.invite_guard),
        }
    }
}

/// A small set of armed timers (a transaction never has more than three).
#[derive(Debug, Clone)]
pub(crate) struct Timers<T: Copy + Ord = Timer> {
    slots: [Option<(T, Instant)>; 3],
}

impl<T: Copy + Ord> Default for Timers<T> {
    fn default() -> Self {
        Timers { slots: [None; 3] }
    }
}

impl<T: Copy + Ord> Timers<T> {
    pub(crate) fn set(&mut self, t: T, at: Instant) {
        for s in self.slots.iter_mut() {
            if matches!(s, Some((x, _)) if *x == t) {
                *s = Some((t, at));
                return;
            }
        }
        if let Some(s) = self.slots.iter_mut().find(|s| s.is_none()) {
            *s = Some((t, at));
            return;
        }
        // All slots busy: replace the latest one (never happens with the machines
        // of this crate, which arm at most three timers at once).
        if let Some(s) = self.slots.iter_mut().max_by_key(|s| s.map(|(_, i)| i)) {
            *s = Some((t, at));
        }
    }
    pub(crate) fn is_set(&self, t: T) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s, Some((x, _)) if *x == t))
    }
    pub(crate) fn clear(&mut self, t: T) {
        for s in self.slots.iter_mut() {
            if matches!(s, Some((x, _)) if *x == t) {
                *s = None;
            }
        }
    }
    pub(crate) fn clear_all(&mut self) {
        self.slots = [None; 3];
    }
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|(_, i)| *i).min()
    }
    /// Takes the earliest timer due at `now`.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<T> {
        let idx = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.filter(|(_, at)| *at <= now).map(|(t, at)| (k, t, at)))
            .min_by_key(|(_, t, at)| (*at, *t))?;
        self.slots[idx.0] = None;
        Some(idx.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3261_table_4_values() {
        let c = TimerConfig::DEFAULT;
        let s = Duration::from_secs;
        assert_eq!(
            Timer::A.duration(&c, false),
            Some(Duration::from_millis(500))
        );
        assert_eq!(Timer::A.duration(&c, true), None);
        assert_eq!(Timer::E.duration(&c, true), None);
        assert_eq!(Timer::G.duration(&c, true), None);
        assert_eq!(Timer::B.duration(&c, true), Some(s(32)));
        assert_eq!(Timer::F.duration(&c, false), Some(s(32)));
        assert_eq!(Timer::H.duration(&c, false), Some(s(32)));
        assert_eq!(Timer::D.duration(&c, false), Some(s(32)));
        assert_eq!(Timer::D.duration(&c, true), Some(Duration::ZERO));
        assert_eq!(Timer::I.duration(&c, false), Some(s(5)));
        assert_eq!(Timer::I.duration(&c, true), Some(Duration::ZERO));
        assert_eq!(Timer::J.duration(&c, false), Some(s(32)));
        assert_eq!(Timer::J.duration(&c, true), Some(Duration::ZERO));
        assert_eq!(Timer::K.duration(&c, false), Some(s(5)));
        assert_eq!(Timer::K.duration(&c, true), Some(Duration::ZERO));
        assert_eq!(Timer::L.duration(&c, true), Some(s(32)));
        assert_eq!(Timer::M.duration(&c, true), Some(s(32)));
        assert_eq!(Timer::N.duration(&c, true), Some(s(32)));
        assert_eq!(
            Timer::Trying.duration(&c, true),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn timer_set_takes_earliest_first() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(Timer::B, t0 + Duration::from_secs(32));
        t.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.take_due(t0), None);
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), None);
        t.set(Timer::D, t0);
        t.set(Timer::D, t0 + Duration::from_secs(1));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        t.clear(Timer::D);
        assert_eq!(t.next(), None);
    }
}
