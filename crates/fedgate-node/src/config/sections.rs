//! The TOML sections, as read: plain serde structs with their documented defaults.
//!
//! Every struct is `deny_unknown_fields` (a typo is an error naming the key) and
//! `default` (a missing key or section takes the default written on the field). The
//! values are checked, and turned into typed values, by
//! [`NodeConfig::validate`](super::NodeConfig::validate).

use std::path::PathBuf;

use fedgate_policy::{Protocol, XmppMode};
use serde::{Deserialize, Serialize};

/// `[node]`: who we are and where state lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// A name for logs (and, later, the cluster). Default `"fedgate"`.
    pub name: String,
    /// Folder for the database and a generated certificate. Default `"./fedgate-data"`.
    pub data_dir: PathBuf,
    /// The local (hosted) domains. Default: none; at least one is required.
    pub domains: Vec<String>,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "fedgate".into(),
            data_dir: PathBuf::from("./fedgate-data"),
            domains: Vec::new(),
        }
    }
}

/// What to do when a hosted domain is missing from the certificate's subjectAltName.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissingSan {
    /// Log a warning and start (the default): peers will refuse that domain.
    #[default]
    Warn,
    /// Refuse to start.
    Error,
}

/// `[tls]`: our certificate and the trust anchors for peers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, end entity first. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Generate a self-signed certificate for the local domains on first start, stored
    /// in `<data_dir>/tls/` and reused afterwards; it is also trusted as a root. Excludes
    /// `cert`/`key`. Default `false`.
    pub generate: bool,
    /// PEM files of the roots peers' certificates must chain to. Default: none.
    pub roots: Vec<PathBuf>,
    /// A hosted domain missing from the certificate's SANs: `"warn"` (default) or `"error"`.
    pub missing_san: MissingSan,
}

/// STARTTLS policy for XMPP server-to-server streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartTls {
    /// Use TLS when offered; go on without it otherwise (the default: TLS is optional
    /// for XMPP federation).
    #[default]
    Optional,
    /// Never authenticate or exchange stanzas without TLS.
    Required,
}

/// `[xmpp]`: the two XMPP listeners.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XmppSection {
    /// `[xmpp.s2s]`.
    pub s2s: S2sSection,
    /// `[xmpp.c2s]`.
    pub c2s: C2sSection,
}

/// `[xmpp.s2s]`: server-to-server federation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S2sSection {
    /// Listen for peers. Default `true`.
    pub enabled: bool,
    /// Listen address. Default `"0.0.0.0:5269"`.
    pub listen: String,
    /// Default STARTTLS policy for peers (overridable per federated domain):
    /// `"optional"` (default) or `"required"`.
    pub starttls: StartTls,
    /// The dialback secret (XEP-0185). Excludes `secret_file`. Default: none; with
    /// neither, a random secret is generated at every start (fine for one node; a
    /// cluster serving the same domains must share one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialback_secret: Option<String>,
    /// A file holding the dialback secret (trailing whitespace ignored). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// A stream with nothing received for this long is closed. Default 600 s.
    pub idle_timeout_secs: u64,
    /// A whitespace keep-alive is sent on a stream with nothing sent for this long;
    /// 0 disables it. Default 60 s.
    pub keepalive_secs: u64,
    /// At shutdown, how long a stream waits for the peer's `</stream:stream>` after
    /// sending its own (RFC 6120 §4.4) before TCP/TLS is closed. Default 2 s.
    pub close_timeout_secs: u64,
}

impl Default for S2sSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:5269".into(),
            starttls: StartTls::Optional,
            dialback_secret: None,
            secret_file: None,
            idle_timeout_secs: 600,
            keepalive_secs: 60,
            close_timeout_secs: 2,
        }
    }
}

/// `[xmpp.c2s]`: local users' clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C2sSection {
    /// Listen for clients. Default `true`.
    pub enabled: bool,
    /// Listen address. Default `"0.0.0.0:5222"`.
    pub listen: String,
    /// Refuse authentication before STARTTLS. Default `true`.
    pub require_tls: bool,
    /// Offer SASL PLAIN on a stream without TLS. Only meaningful with
    /// `require_tls = false`. Default `false`: PLAIN only over TLS.
    pub allow_plain_without_tls: bool,
    /// Failed SASL attempts before the stream is closed. Default 3.
    pub max_auth_failures: u32,
}

impl Default for C2sSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:5222".into(),
            require_tls: true,
            allow_plain_without_tls: false,
            max_auth_failures: 3,
        }
    }
}

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransportKind {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (federation with Lync uses TLS on 5061).
    Tls,
}

/// One `[[sip.listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipListenerSection {
    /// `"udp"`, `"tcp"` or `"tls"`.
    pub transport: SipTransportKind,
    /// `ip:port`.
    pub address: String,
}

/// `[sip]`: SIP listeners, mutual TLS and connection timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSection {
    /// Listeners. Default: one, TLS on `0.0.0.0:5061`. An empty list disables SIP
    /// listening.
    pub listeners: Vec<SipListenerSection>,
    /// Mutual TLS: a peer connecting to a TLS listener must present a certificate that
    /// chains to `tls.roots`. Default `true` (as between Lync Edge servers).
    pub require_client_cert: bool,
    /// RFC 5626 CRLF keep-alive on idle outbound connections; 0 disables. Default 95 s.
    pub keepalive_secs: u64,
    /// A ping not answered within this closes the connection. Default 10 s.
    pub pong_timeout_secs: u64,
    /// A connection with nothing received for this long is closed. Default 600 s.
    pub idle_timeout_secs: u64,
    /// Outbound TCP connect timeout. Default 10 s.
    pub connect_timeout_secs: u64,
    /// TLS handshake timeout, both directions. Default 10 s.
    pub handshake_timeout_secs: u64,
    /// Timeout of one write; a peer that does not read is closed. Default 30 s.
    pub write_timeout_secs: u64,
    /// First hold-down of an outbound target whose connection failed (its queued
    /// messages are reported failed at once), doubled after each failure in a row;
    /// also the first delay between reconnections. Default 500 ms.
    pub reconnect_initial_ms: u64,
    /// Cap on the hold-down and the reconnection delay. Default 30 s.
    pub reconnect_max_secs: u64,
    /// Reconnections in a row of an established connection that breaks with messages
    /// still queued, before they are reported failed. Default 4.
    pub reconnect_attempts: u32,
    /// Start SIP federation (the SIP gateway: presence and session-mode IM with the
    /// `protocol = "sip"` domains). Default `false`.
    pub enabled: bool,
    /// Transport of our own requests to SIP peers: `"tls"` (federation, mutual TLS) or
    /// `"tcp"` (labs and tests only). Default `"tls"`.
    pub outbound_transport: SipOutboundTransport,
    /// Expires asked for in our SUBSCRIBEs (seconds, at least 60). Default 3600.
    pub subscribe_expires_secs: u32,
    /// An IM session without traffic for this long is closed with BYE (seconds, at
    /// least 1). Default 600.
    pub im_idle_secs: u64,
}

/// `sip.outbound_transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SipOutboundTransport {
    /// TLS (default; port 5061, `_sipfederationtls._tcp`).
    #[default]
    Tls,
    /// Plain TCP (labs and tests).
    Tcp,
}

impl Default for SipSection {
    fn default() -> Self {
        Self {
            listeners: vec![SipListenerSection {
                transport: SipTransportKind::Tls,
                address: "0.0.0.0:5061".into(),
            }],
            require_client_cert: true,
            keepalive_secs: 95,
            pong_timeout_secs: 10,
            idle_timeout_secs: 600,
            connect_timeout_secs: 10,
            handshake_timeout_secs: 10,
            write_timeout_secs: 30,
            reconnect_initial_ms: 500,
            reconnect_max_secs: 30,
            reconnect_attempts: 4,
            enabled: false,
            outbound_transport: SipOutboundTransport::Tls,
            subscribe_expires_secs: 3600,
            im_idle_secs: 600,
        }
    }
}

/// The client family of a federated domain, as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FamilyName {
    /// Microsoft Lync / Skype for Business / Office 365 (SIP only).
    Lync,
    /// A third-party XMPP server (Prosody, ejabberd, Openfire, another fedgate).
    Xmpp,
    /// A Cisco Jabber-style deployment (XMPP).
    Jabber,
    /// IBM Sametime (XMPP).
    Sametime,
    /// Webex Connect / Messenger (XMPP).
    Webex,
}

impl FamilyName {
    /// The family a remote user's presence is mapped with.
    pub fn family(self) -> fedgate_presence::Family {
        use fedgate_presence::Family;
        match self {
            FamilyName::Lync => Family::Lync,
            FamilyName::Xmpp => Family::XmppFed,
            FamilyName::Jabber => Family::JabberFed,
            FamilyName::Sametime => Family::Sametime,
            FamilyName::Webex => Family::Webex,
        }
    }

    /// The default family of a protocol: `lync` for SIP, `xmpp` for XMPP.
    pub fn default_for(protocol: Protocol) -> FamilyName {
        match protocol {
            Protocol::Sip => FamilyName::Lync,
            Protocol::Xmpp => FamilyName::Xmpp,
        }
    }
}

/// One `[[federation.domain]]` entry: a remote domain we federate with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedDomainSection {
    /// The remote domain. Required.
    pub name: String,
    /// `"sip"` or `"xmpp"`. Required. A domain is federated over one of them, never both.
    pub protocol: Protocol,
    /// `"lync"` (SIP only), `"xmpp"`, `"jabber"`, `"sametime"` or `"webex"` (XMPP).
    /// Default: `lync` for SIP, `xmpp` for XMPP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<FamilyName>,
    /// XMPP only: this peer's STARTTLS policy. Default: `xmpp.s2s.starttls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starttls: Option<StartTls>,
    /// Static targets `host:port` (or `[v6]:port`; the port defaults to 5061 for SIP,
    /// 5269 for XMPP) tried in order instead of DNS SRV. Default: none (use DNS).
    #[serde(default)]
    pub targets: Vec<String>,
}

/// `[federation]`: the federated domains.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationSection {
    /// `[[federation.domain]]` entries. Default: none. XMPP entries go on the XMPP allow
    /// list of the administrator policy.
    pub domain: Vec<FederatedDomainSection>,
}

/// `[policy]`: the XMPP administrator policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// `"allow-all"`, `"allow-listed"` (default: only XMPP `[[federation.domain]]`
    /// entries) or `"deny-listed"` (every domain except `deny`).
    pub xmpp_mode: XmppMode,
    /// Domains on the XMPP deny list. Default: none.
    pub deny: Vec<String>,
    /// `[[policy.user]]`: per-user allow and block lists set by the administrator.
    /// Default: none.
    pub user: Vec<UserPolicySection>,
}

/// `[[policy.user]]`: one local user's allow and block lists, written into that user's
/// fedgate-policy rules at every start (a rule the user or the administrator set earlier
/// for the same target is replaced; removing an entry here does not remove the stored
/// rule).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserPolicySection {
    /// The local user, `local@domain` of a hosted domain.
    pub user: String,
    /// Watchers (`user@domain`) or whole domains (`domain`) whose subscriptions are
    /// accepted without asking the user. Default: none.
    pub allow: Vec<String>,
    /// Watchers or domains that are politely blocked: their subscription is accepted,
    /// they only ever see the user offline. Default: none.
    pub block: Vec<String>,
}

/// `[dns]`: the DNS adapter ([`crate::dns::DnsConfig`]); every field and default is
/// the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    /// Nameservers as `ip` or `ip:port`. Default: none = read `/etc/resolv.conf`.
    pub nameservers: Vec<String>,
    /// Per-attempt timeout in milliseconds. Default 2000.
    pub timeout_ms: u64,
    /// Rounds over the nameserver list. Default 2.
    pub attempts: u32,
    /// Cache bound, entries per record family; 0 disables the cache. Default 4096.
    pub cache_entries: usize,
    /// TTL floor in seconds. Default 5.
    pub min_ttl_secs: u32,
    /// TTL ceiling in seconds. Default 600.
    pub max_ttl_secs: u32,
    /// Negative-answer TTL ceiling in seconds. Default 60.
    pub negative_ttl_secs: u32,
    /// EDNS(0) payload size; 0 disables EDNS. Default 1232.
    pub edns_payload: u16,
}

impl Default for DnsSection {
    fn default() -> Self {
        Self::from(crate::dns::DnsConfig::default())
    }
}

impl From<crate::dns::DnsConfig> for DnsSection {
    fn from(c: crate::dns::DnsConfig) -> Self {
        Self {
            nameservers: c.nameservers,
            timeout_ms: c.timeout_ms,
            attempts: c.attempts,
            cache_entries: c.cache_entries,
            min_ttl_secs: c.min_ttl_secs,
            max_ttl_secs: c.max_ttl_secs,
            negative_ttl_secs: c.negative_ttl_secs,
            edns_payload: c.edns_payload,
        }
    }
}

impl From<&DnsSection> for crate::dns::DnsConfig {
    fn from(s: &DnsSection) -> Self {
        Self {
            nameservers: s.nameservers.clone(),
            timeout_ms: s.timeout_ms,
            attempts: s.attempts,
            cache_entries: s.cache_entries,
            min_ttl_secs: s.min_ttl_secs,
            max_ttl_secs: s.max_ttl_secs,
            negative_ttl_secs: s.negative_ttl_secs,
            edns_payload: s.edns_payload,
        }
    }
}

/// `[store]`: the durable store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// PBKDF2 iterations for new credentials; at least 4096 (RFC 7677 §4). Default 4096.
    pub scram_iterations: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            scram_iterations: fedgate_store::StoreConfig::default().scram_iterations,
        }
    }
}

/// `[limits]`: every limit on what peers can make the node hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// `[limits.node]`: connections and queues.
    pub node: NodeLimitsSection,
    /// `[limits.sip]`: [`fedgate_sip::Limits`] and the SIP transport's buffers.
    pub sip: SipLimitsSection,
    /// `[limits.xmpp]`: [`fedgate_xmpp::Limits`].
    pub xmpp: XmppLimitsSection,
    /// `[limits.store]`: [`fedgate_store::StoreLimits`].
    pub store: StoreLimitsSection,
}

/// `[limits.node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLimitsSection {
    /// Open connections in total, both directions. Default 4096.
    pub max_connections: usize,
    /// Open inbound connections from one peer IP address. Default 32.
    pub max_connections_per_ip: usize,
    /// Outbound connections opened to one peer target. Default 2.
    pub max_connections_per_peer: usize,
    /// Depth of the inbound queue from the connections to the core. Default 1024.
    pub inbound_queue: usize,
    /// Depth of each connection's outbound queue. Default 64.
    pub outbound_queue: usize,
}

impl Default for NodeLimitsSection {
    fn default() -> Self {
        let t = crate::sip::TransportLimits::DEFAULT;
        Self {
            max_connections: t.max_connections,
            max_connections_per_ip: t.max_connections_per_ip,
            max_connections_per_peer: t.max_connections_per_target,
            inbound_queue: t.inbound_queue,
            outbound_queue: t.outbound_queue,
        }
    }
}

/// `[limits.sip]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipLimitsSection {
    /// Whole message, bytes. Default 65536.
    pub max_message_size: usize,
    /// Header fields per message. Default 256.
    pub max_headers: usize,
    /// One (unfolded) header field or start line, bytes. Default 8192.
    pub max_line_length: usize,
    /// Bytes asked for per stream read. Default 4096.
    pub read_chunk: usize,
    /// Largest UDP datagram sent or received, 512..=65507. Default 65507.
    pub max_udp_datagram: usize,
}

impl Default for SipLimitsSection {
    fn default() -> Self {
        let l = fedgate_sip::Limits::DEFAULT;
        let t = crate::sip::TransportLimits::DEFAULT;
        Self {
            max_message_size: l.max_message_size,
            max_headers: l.max_headers,
            max_line_length: l.max_line_length,
            read_chunk: t.read_chunk,
            max_udp_datagram: t.max_udp_datagram,
        }
    }
}

/// `[limits.xmpp]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XmppLimitsSection {
    /// Largest stanza once authenticated, bytes. Default 262144.
    pub max_stanza_bytes: usize,
    /// Largest stanza before authentication, bytes; at most `max_stanza_bytes`.
    /// Default 16384.
    pub max_stanza_bytes_unauthenticated: usize,
    /// Deepest element nesting in a stanza. Default 32.
    pub max_depth: usize,
    /// Most attributes on one element. Default 32.
    pub max_attributes: usize,
    /// Most elements in one stanza. Default 10000.
    pub max_elements: usize,
    /// How long a stream may stay unauthenticated. Default 60 s.
    pub unauthenticated_lifetime_secs: u64,
}

impl Default for XmppLimitsSection {
    fn default() -> Self {
        let l = fedgate_xmpp::Limits::default();
        Self {
            max_stanza_bytes: l.max_stanza_bytes,
            max_stanza_bytes_unauthenticated: l.max_stanza_bytes_unauthenticated,
            max_depth: l.max_depth,
            max_attributes: l.max_attributes,
            max_elements: l.max_elements,
            unauthenticated_lifetime_secs: l.unauthenticated_lifetime.as_secs(),
        }
    }
}

/// `[limits.store]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreLimitsSection {
    /// Largest stored stanza, bytes. Default 65536.
    pub max_stanza_bytes: usize,
    /// Largest roster name or group name, bytes. Default 1024.
    pub max_text_bytes: usize,
    /// Most groups on one roster item. Default 16.
    pub max_groups_per_item: usize,
    /// Most items in one roster. Default 1000.
    pub max_roster_items: usize,
    /// Most messages in one user's offline queue. Default 500.
    pub max_offline_messages: usize,
    /// Longest password accepted, bytes. Default 1024.
    pub max_password_bytes: usize,
    /// Most stored SIP watcher dialogs (kept across restarts). Default 100000.
    pub max_sip_dialogs: usize,
    /// Largest stored SIP dialog record, bytes. Default 16384.
    pub max_sip_dialog_bytes: usize,
}

impl Default for StoreLimitsSection {
    fn default() -> Self {
        let l = fedgate_store::StoreLimits::default();
        Self {
            max_stanza_bytes: l.max_stanza_bytes,
            max_text_bytes: l.max_text_bytes,
            max_groups_per_item: l.max_groups_per_item,
            max_roster_items: l.max_roster_items,
            max_offline_messages: l.max_offline_messages,
            max_password_bytes: l.max_password_bytes,
            max_sip_dialogs: l.max_sip_dialogs,
            max_sip_dialog_bytes: l.max_sip_dialog_bytes,
        }
    }
}
