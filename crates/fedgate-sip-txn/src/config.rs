//! Configuration: flows, limits, the endpoint's identity.

use bytes::Bytes;
use fedgate_sip::Host;

use crate::timer::TimerConfig;

/// The transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum TransportKind {
    /// UDP: unreliable, retransmissions by the transaction layer.
    Udp,
    /// TCP: reliable.
    Tcp,
    /// TLS over TCP: reliable (the federation transport).
    Tls,
}

impl TransportKind {
    /// TCP and TLS.
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }
}

/// Where a message came from or goes to: an opaque id chosen by the driver (a
/// connection, or a UDP socket plus remote address) and its transport kind. The
/// core never interprets `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Flow {
    /// Driver-chosen identifier.
    pub id: u64,
    /// Transport kind; decides whether retransmission timers run.
    pub transport: TransportKind,
}

impl Flow {
    /// A flow.
    pub const fn new(id: u64, transport: TransportKind) -> Self {
        Flow { id, transport }
    }
    /// True for TCP and TLS.
    pub fn is_reliable(&self) -> bool {
        self.transport.is_reliable()
    }
}

/// Caps on state created by the network. Over a cap, a new request is answered
/// `503 Service Unavailable` with `Retry-After: retry_after_secs` (or the TU call
/// fails with [`Error::Limit`](crate::Error::Limit)).
///
/// | field | default |
/// |---|---|
/// | `max_transactions` | 10 000 live transactions (client + server) |
/// | `max_dialogs` | 10 000 IM sessions + subscriptions |
/// | `max_queued_messages` | 16 messages queued on a UAC session before it is up |
/// | `retry_after_secs` | 10 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live transactions.
    pub max_transactions: usize,
    /// Live dialogs (IM sessions and subscriptions, both roles).
    pub max_dialogs: usize,
    /// Messages a UAC session queues before its INVITE is answered.
    pub max_queued_messages: usize,
    /// The `Retry-After` of a 503 sent because of a limit.
    pub retry_after_secs: u32,
}

impl Limits {
    /// The documented defaults.
    pub const DEFAULT: Limits = Limits {
        max_transactions: 10_000,
        max_dialogs: 10_000,
        max_queued_messages: 16,
        retry_after_secs: 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Configuration of an [`Endpoint`](crate::Endpoint).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// T1, T2, T4 and the other timer bases.
    pub timers: TimerConfig,
    /// Caps.
    pub limits: Limits,
    /// Parser limits for [`Endpoint::handle_datagram`](crate::Endpoint::handle_datagram).
    pub sip_limits: fedgate_sip::Limits,
    /// The sent-by host put in our Via headers (our federation FQDN).
    pub via_host: Host,
    /// The sent-by port (None: the transport default).
    pub via_port: Option<u16>,
    /// Seed for branch ids and tags: the driver passes random bits (the core has no
    /// random source). Two endpoints must not share a seed.
    pub seed: u64,
}

impl EndpointConfig {
    /// Defaults with this Via host and seed.
    pub fn new(via_host: Host, seed: u64) -> Self {
        EndpointConfig {
            timers: TimerConfig::DEFAULT,
            limits: Limits::DEFAULT,
            sip_limits: fedgate_sip::Limits::DEFAULT,
            via_host,
            via_port: None,
            seed,
        }
    }

    /// `via_host` from a static domain name.
    pub fn with_domain(domain: &'static str, seed: u64) -> Self {
        Self::new(Host::Domain(Bytes::from_static(domain.as_bytes())), seed)
    }
}
