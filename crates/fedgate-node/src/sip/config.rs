//! Transport configuration: limits, keep-alive, timeouts and reconnection backoff.

use std::time::Duration;

/// Limits on what peers can make the transport hold. Each one, when reached, gives a
/// clear signal and a log line; none lets memory grow with the load.
///
/// | field | default | when reached |
/// |---|---|---|
/// | `max_connections` | 4 096 | new inbound connections are closed right after `accept`; new outbound ones fail with [`SendError::TooManyConnections`](super::SendError::TooManyConnections) |
/// | `max_connections_per_ip` | 32 inbound connections from one peer IP | further ones from that IP are closed after `accept` |
/// | `max_connections_per_target` | 2 outbound connections to one [`Target`](super::Target), one per slot; a message takes the slot of its Call-ID, so a dialog's requests stay on one connection, in order | a send finding its slot's queue full fails with [`SendError::QueueFull`](super::SendError::QueueFull) |
/// | `sip` | [`fedgate_sip::Limits::DEFAULT`] (64 KiB message, 256 headers, 8 KiB line) | 413/513/414 to a request (salvaged headers permitting), then the stream is closed |
/// | `read_chunk` | 4 096 bytes | bytes buffered per stream connection stay ≤ `sip.max_message_size + read_chunk`: reading stops at that point, and the framer has refused the message before |
/// | `inbound_queue` | 1 024 messages, shared by all connections | a connection with a message the queue cannot take stops reading its socket (TCP backpressure) until there is room; the UDP socket likewise |
/// | `outbound_queue` | 64 messages per connection (our own messages; with a peer that stops reading, at most `outbound_queue` × message size wait, then `write_timeout` closes the connection; queued messages go out in writes of up to 64 KiB) | [`SendError::QueueFull`](super::SendError::QueueFull): the TU answers 503 (Retry-After). On a connection the peer opened, our requests stop at three quarters (the rest is for responses) and the connection stops reading the peer while more than half is waiting |
/// | `max_udp_datagram` | 65 507 bytes | larger messages fail with [`SendError::MessageTooLarge`](super::SendError::MessageTooLarge) (the 1 300-byte rule of RFC 3261 §18.1.1 is the caller's: it picks the target) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// Open stream connections in total, both directions (TLS handshakes included).
    pub max_connections: usize,
    /// Open inbound stream connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Outbound connections opened to one target.
    pub max_connections_per_target: usize,
    /// The SIP codec's limits (message size, header count, line length).
    pub sip: fedgate_sip::Limits,
    /// How much a stream read asks for at a time.
    pub read_chunk: usize,
    /// Depth of the inbound channel to the transaction layer.
    pub inbound_queue: usize,
    /// Depth of each connection's outbound queue.
    pub outbound_queue: usize,
    /// Largest UDP datagram sent or received.
    pub max_udp_datagram: usize,
}

impl TransportLimits {
    /// The documented defaults.
    pub const DEFAULT: TransportLimits = TransportLimits {
        max_connections: 4096,
        max_connections_per_ip: 32,
        max_connections_per_target: 2,
        sip: fedgate_sip::Limits::DEFAULT,
        read_chunk: 4096,
        inbound_queue: 1024,
        outbound_queue: 64,
        max_udp_datagram: 65_507,
    };

    /// Bytes a stream connection may hold in its read buffer.
    pub fn max_buffered(&self) -> usize {
        self.sip.max_message_size.saturating_add(self.read_chunk)
    }
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits::DEFAULT
    }
}

/// Timers of the stream connections (RFC 5626 keep-alive and idle handling).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `keepalive_interval` | 95 s (RFC 5626 §4.4.1 suggests 95–120 s for TCP/TLS) | an outbound connection with nothing written for this long sends a CRLFCRLF ping; `None` disables pings |
/// | `pong_timeout` | 10 s (RFC 5626 §4.4.1) | a ping not answered by a CRLF pong within this closes the connection |
/// | `idle_timeout` | 600 s | a connection (either direction) on which nothing has been received for this long is closed |
/// | `connect_timeout` | 10 s | TCP connect, outbound |
/// | `handshake_timeout` | 10 s | TLS handshake, both directions |
/// | `write_timeout` | 30 s | one write (a message, a pong, an error answer); a peer that does not read is closed |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Ping interval on idle outbound connections.
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for a pong.
    pub pong_timeout: Duration,
    /// Receive-idle time after which a connection is closed.
    pub idle_timeout: Duration,
    /// Outbound TCP connect timeout.
    pub connect_timeout: Duration,
    /// TLS handshake timeout.
    pub handshake_timeout: Duration,
    /// Timeout of one write.
    pub write_timeout: Duration,
}

impl Timers {
    /// The documented defaults.
    pub const DEFAULT: Timers = Timers {
        keepalive_interval: Some(Duration::from_secs(95)),
        pong_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(600),
        connect_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
    };
}

impl Default for Timers {
    fn default() -> Self {
        Timers::DEFAULT
    }
}

/// Reconnection and hold-down on the outbound side: exponential, capped.
///
/// A connection attempt to a target that fails (TCP connect, TLS handshake, RFC 5922
/// name check) is not retried: the messages queued for it are dropped and reported at
/// once ([`SendFailure`](super::SendFailure)), and the target is marked unreachable for
/// `initial`, then twice as long after each further failure in a row, up to `max`
/// (a successful connection resets the count). While marked, sends to it fail at once
/// with [`SendError::Unreachable`](super::SendError::Unreachable) carrying the time
/// left (for a 503 Retry-After). An established connection that breaks with messages
/// still queued is reconnected at once, and again after `initial`, `2·initial`, … up
/// to `attempts` reconnections in a row; then its messages are reported the same way.
///
/// Defaults: `initial` 500 ms, `max` 30 s, `attempts` 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Cap on the delay.
    pub max: Duration,
    /// Reconnections in a row of a connection that breaks with messages queued.
    pub attempts: u32,
}

impl Backoff {
    /// The documented defaults.
    pub const DEFAULT: Backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(30),
        attempts: 4,
    };

    /// The delay after the `n`th failure (1-based): `initial · 2^(n-1)`, capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}

/// Everything the transport needs besides TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportConfig {
    /// Limits.
    pub limits: TransportLimits,
    /// Timers.
    pub timers: Timers,
    /// Outbound reconnection.
    pub backoff: Backoff,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_and_capped() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.delay(1), Duration::from_millis(500));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(4), Duration::from_secs(4));
        assert_eq!(b.delay(8), Duration::from_secs(30));
        assert_eq!(b.delay(40), Duration::from_secs(30));
        assert_eq!(b.delay(0), Duration::from_millis(500));
    }

    #[test]
    fn buffered_bound_is_message_plus_chunk() {
        assert_eq!(TransportLimits::DEFAULT.max_buffered(), 64 * 1024 + 4096);
    }
}
