//! [`NodeConfig::validate`]: from the TOML sections to typed values.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use fedgate_policy::{
    Domain, FederationConfig, Protocol, Rule, RuleTarget, UserAddress, XmppListing,
};
use fedgate_presence::Family;
use fedgate_xmpp::dialback::DialbackSecret;
use fedgate_xmpp::s2s::TlsPolicy;

use super::sections::{FamilyName, MissingSan, SipOutboundTransport, SipTransportKind, StartTls};
use super::{ConfigError, NodeConfig};
use crate::dns::DnsConfig;
use crate::sip::{Backoff, Timers, TransportConfig, TransportLimits};
use crate::tls::ClientAuth;

/// A configuration that passed [`NodeConfig::validate`]: typed values only. Nothing
/// here has touched the network; file contents (certificate, key, roots, dialback
/// secret file) are read by [`ValidatedConfig::load_tls`] and
/// [`S2sSettings::dialback_secret`], still before anything listens.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    /// `node.name`.
    pub name: String,
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// `node.domains`, canonical, in the order written.
    pub local_domains: Vec<Domain>,
    /// `[tls]`.
    pub tls: TlsPlan,
    /// `[xmpp.s2s]`; `None` when `enabled = false`.
    pub s2s: Option<S2sSettings>,
    /// `[xmpp.c2s]`; `None` when `enabled = false`.
    pub c2s: Option<C2sSettings>,
    /// `[sip]` and the SIP parts of `[limits]`.
    pub sip: SipSettings,
    /// `[[federation.domain]]`, in the order written.
    pub peers: Vec<Peer>,
    /// Local domains, federated domains and the XMPP administrator policy, built through
    /// fedgate-policy's rules.
    pub federation: FederationConfig,
    /// `[dns]`, checked.
    pub dns: DnsConfig,
    /// `[limits.node]`.
    pub connections: ConnectionLimits,
    /// `[limits.xmpp]`.
    pub xmpp_limits: fedgate_xmpp::Limits,
    /// `[limits.store]` and `[store]`.
    pub store: fedgate_store::StoreConfig,
    /// `[[policy.user]]`: per-user rules set by the administrator, in the order written.
    pub user_rules: Vec<(UserAddress, RuleTarget, Rule)>,
}

impl ValidatedConfig {
    /// The federated domain entry for `domain`, if configured.
    pub fn peer(&self, domain: &Domain) -> Option<&Peer> {
        self.peers.iter().find(|p| &p.domain == domain)
    }

    /// The XMPP peers whose effective STARTTLS policy is `Required` (for
    /// `fedgate_xmpp::s2s::S2sConfig::tls_required_peers`).
    pub fn xmpp_peers_requiring_tls(&self) -> Vec<&Domain> {
        self.peers
            .iter()
            .filter(|p| p.protocol == Protocol::Xmpp)
            .filter(|p| self.starttls_for(&p.domain) == TlsPolicy::Required)
            .map(|p| &p.domain)
            .collect()
    }

    /// The STARTTLS policy towards an XMPP `domain`: its own override, else
    /// `xmpp.s2s.starttls` (`Optional` when s2s is disabled).
    pub fn starttls_for(&self, domain: &Domain) -> TlsPolicy {
        self.peer(domain)
            .and_then(|p| p.starttls)
            .or(self.s2s.as_ref().map(|s| s.starttls))
            .unwrap_or(TlsPolicy::Optional)
    }
}

/// Where the node's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `tls.cert` and `tls.key`.
    Files {
        /// PEM chain.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
    /// `tls.generate = true`: `cert.pem` and `key.pem` in this folder
    /// (`<data_dir>/tls`), generated on first start.
    Generate {
        /// The folder.
        dir: PathBuf,
    },
    /// No certificate: no TLS listener, STARTTLS not offered.
    None,
}

/// `[tls]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    /// The certificate.
    pub source: CertSource,
    /// `tls.roots`.
    pub roots: Vec<PathBuf>,
    /// `tls.missing_san`.
    pub missing_san: MissingSan,
    /// From `sip.require_client_cert`.
    pub client_auth: ClientAuth,
}

/// Where the dialback secret comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// `xmpp.s2s.dialback_secret`.
    Configured(DialbackSecret),
    /// `xmpp.s2s.secret_file`, read at start.
    File(PathBuf),
    /// Neither: random at every start.
    Random,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Configured(_) => f.write_str("Configured(..)"),
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretSource::Random => f.write_str("Random"),
        }
    }
}

/// Shortest dialback secret accepted, in bytes.
pub const MIN_DIALBACK_SECRET_LEN: usize = 16;

/// `[xmpp.s2s]`, checked.
#[derive(Debug, Clone)]
pub struct S2sSettings {
    /// `listen`.
    pub listen: SocketAddr,
    /// `starttls`: the default policy for peers.
    pub starttls: TlsPolicy,
    /// `dialback_secret` / `secret_file`.
    pub secret: SecretSource,
    /// `idle_timeout_secs`.
    pub idle_timeout: Duration,
    /// `keepalive_secs`; `None` when 0.
    pub keepalive: Option<Duration>,
    /// `close_timeout_secs`.
    pub close_timeout: Duration,
}

impl S2sSettings {
    /// The dialback secret: the configured one, the file's content (trailing whitespace
    /// dropped), or `random` when neither is configured.
    pub fn dialback_secret(&self, random: [u8; 32]) -> Result<DialbackSecret, ConfigError> {
        match &self.secret {
            SecretSource::Configured(s) => Ok(s.clone()),
            SecretSource::Random => Ok(DialbackSecret::new(&random)),
            SecretSource::File(path) => {
                let key = "xmpp.s2s.secret_file";
                let text = std::fs::read(path).map_err(|e| {
                    ConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
                })?;
                let trimmed = text.trim_ascii_end();
                if trimmed.len() < MIN_DIALBACK_SECRET_LEN {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{} holds {} bytes; a dialback secret needs at least \
                             {MIN_DIALBACK_SECRET_LEN}",
                            path.display(),
                            trimmed.len()
                        ),
                    ));
                }
                Ok(DialbackSecret::new(trimmed))
            }
        }
    }
}

/// `[xmpp.c2s]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2sSettings {
    /// `listen`.
    pub listen: SocketAddr,
    /// `require_tls`.
    pub require_tls: bool,
    /// `allow_plain_without_tls`.
    pub allow_plain_without_tls: bool,
    /// `max_auth_failures`.
    pub max_auth_failures: u32,
}

/// One SIP listener, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipListener {
    /// Transport.
    pub transport: SipTransportKind,
    /// Address.
    pub addr: SocketAddr,
}

/// `[sip]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    /// `sip.listeners`.
    pub listeners: Vec<SipListener>,
    /// `sip.require_client_cert`.
    pub client_auth: ClientAuth,
    /// Timers (`sip.*_secs`), reconnection (`sip.reconnect_*`) and limits
    /// (`[limits.node]`, `[limits.sip]`) for [`crate::sip::SipTransport`].
    pub transport: TransportConfig,
    /// `sip.enabled` and the gateway's keys; `None` when SIP federation is off.
    pub federation: Option<SipFederationSettings>,
}

/// The SIP gateway's settings (`sip.enabled = true`), checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipFederationSettings {
    /// `sip.outbound_transport`.
    pub outbound_transport: SipOutboundTransport,
    /// `sip.subscribe_expires_secs`.
    pub subscribe_expires: u32,
    /// `sip.im_idle_secs`.
    pub im_idle: Duration,
}

/// `[limits.node]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `max_connections`.
    pub max_connections: usize,
    /// `max_connections_per_ip`.
    pub max_connections_per_ip: usize,
    /// `max_connections_per_peer`.
    pub max_connections_per_peer: usize,
    /// `inbound_queue`.
    pub inbound_queue: usize,
    /// `outbound_queue`.
    pub outbound_queue: usize,
}

/// The host of a static target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetHost {
    /// An address: connect to it directly.
    Ip(IpAddr),
    /// A host name, resolved with A/AAAA (no SRV).
    Name(Domain),
}

/// One static target of a federated domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StaticTarget {
    /// Host.
    pub host: TargetHost,
    /// Port.
    pub port: u16,
}

impl fmt::Display for StaticTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            TargetHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            TargetHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            TargetHost::Name(d) => write!(f, "{d}:{}", self.port),
        }
    }
}

impl StaticTarget {
    /// Parses `host:port`, `[v6]:port`, `host`, `ip` or `[v6]`, with `default_port`.
    pub fn parse(s: &str, default_port: u16) -> Result<StaticTarget, String> {
        let s = s.trim();
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return port_ok(TargetHost::Ip(sa.ip()), sa.port());
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, port) = match rest.split_once(']') {
                Some((ip, "")) => (ip, None),
                Some((ip, p)) => (ip, Some(p.strip_prefix(':').ok_or("expected ]:port")?)),
                None => return Err("missing ]".into()),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("{ip:?} is not an IP address"))?;
            let port = port.map_or(Ok(default_port), parse_port)?;
            return port_ok(TargetHost::Ip(ip), port);
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return port_ok(TargetHost::Ip(ip), default_port);
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (s, default_port),
        };
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => TargetHost::Ip(ip),
            Err(_) => TargetHost::Name(Domain::new(host).map_err(|e| e.to_string())?),
        };
        port_ok(host, port)
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("{p:?} is not a port number"))
}

fn port_ok(host: TargetHost, port: u16) -> Result<StaticTarget, String> {
    if port == 0 {
        return Err("port 0".into());
    }
    Ok(StaticTarget { host, port })
}

/// A `[[federation.domain]]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The remote domain.
    pub domain: Domain,
    /// SIP or XMPP.
    pub protocol: Protocol,
    /// The presence family its users' presence is mapped with.
    pub family: Family,
    /// XMPP only: the peer's STARTTLS override (`None`: `xmpp.s2s.starttls`).
    pub starttls: Option<TlsPolicy>,
    /// Static targets, tried in order instead of DNS; empty: DNS SRV.
    pub targets: Vec<StaticTarget>,
}

fn tls_policy(s: StartTls) -> TlsPolicy {
    match s {
        StartTls::Optional => TlsPolicy::Optional,
        StartTls::Required => TlsPolicy::Required,
    }
}

fn socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim().parse::<SocketAddr>().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{s:?} is not an address `ip:port` (IPv6: `[::1]:port`)"),
        )
    })
}

fn positive<T: PartialOrd + Default + Copy>(key: &str, v: T) -> Result<T, ConfigError> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(ConfigError::invalid(key, "must be greater than 0"))
    }
}

fn secs(key: &str, v: u64) -> Result<Duration, ConfigError> {
    positive(key, v).map(Duration::from_secs)
}

fn domain(key: &str, s: &str) -> Result<Domain, ConfigError> {
    Domain::new(s).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

/// Listening sockets by (stream?, address), to refuse two listeners on one socket.
#[derive(Default)]
struct Sockets(HashMap<(bool, SocketAddr), String>);

impl Sockets {
    fn claim(&mut self, stream: bool, addr: SocketAddr, key: String) -> Result<(), ConfigError> {
        if addr.port() == 0 {
            return Ok(()); // an ephemeral port: never the same socket twice
        }
        if let Some(first) = self.0.get(&(stream, addr)) {
            return Err(ConfigError::invalid(
                key,
                format!("{addr} is already the address of `{first}`"),
            ));
        }
        self.0.insert((stream, addr), key);
        Ok(())
    }
}

impl NodeConfig {
    /// Checks every value and rule, and builds the typed configuration. Pure: reads no
    /// file and touches no network. The first error found is returned; it names its key.
    pub fn validate(&self) -> Result<ValidatedConfig, ConfigError> {
        // [node]
        if self.node.name.trim().is_empty() {
            return Err(ConfigError::invalid("node.name", "must not be empty"));
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("node.data_dir", "must not be empty"));
        }
        if self.node.domains.is_empty() {
            return Err(ConfigError::invalid(
                "node.domains",
                "at least one local domain is required",
            ));
        }
        let mut federation = FederationConfig::new();
        let mut local_domains: Vec<Domain> = Vec::new();
        for (i, d) in self.node.domains.iter().enumerate() {
            let key = format!("node.domains[{i}]");
            let d = domain(&key, d)?;
            if let Some(j) = local_domains.iter().position(|x| x == &d) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{d} is already node.domains[{j}]"),
                ));
            }
            federation
                .add_local_domain(d.clone())
                .map_err(|source| ConfigError::Federation {
                    key: key.clone(),
                    source,
                })?;
            local_domains.push(d);
        }
        federation.set_xmpp_mode(self.policy.xmpp_mode);

        // [xmpp.s2s]: the default STARTTLS policy is needed by the peers.
        let s2s = &self.xmpp.s2s;
        let default_starttls = tls_policy(s2s.starttls);

        // [[federation.domain]]
        let mut peers: Vec<(String, Peer)> = Vec::new();
        for (i, e) in self.federation.domain.iter().enumerate() {
            let key = format!("federation.domain[{i}]");
            let d = domain(&format!("{key}.name"), &e.name)?;
            if let Some(j) = peers
                .iter()
                .position(|(_, p)| p.domain == d && p.protocol == e.protocol)
            {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("{d} is already federation.domain[{j}]"),
                ));
            }
            let family = e.family.unwrap_or(FamilyName::default_for(e.protocol));
            let fits = (family == FamilyName::Lync) == (e.protocol == Protocol::Sip);
            if !fits {
                return Err(ConfigError::invalid(
                    format!("{key}.family"),
                    format!(
                        "family {:?} does not fit protocol {:?}: \"lync\" is federated over \
                         SIP, and SIP only with \"lync\"; \"xmpp\", \"jabber\", \"sametime\" \
                         and \"webex\" over XMPP",
                        family.family().name(),
                        e.protocol.to_string().to_lowercase()
                    ),
                ));
            }
            let starttls = match (e.protocol, e.starttls) {
                (Protocol::Sip, Some(_)) => {
                    return Err(ConfigError::invalid(
                        format!("{key}.starttls"),
                        "only for XMPP peers: SIP federation always uses TLS",
                    ));
                }
                (_, s) => s.map(tls_policy),
            };
            let default_port = match e.protocol {
                Protocol::Sip => 5061,
                Protocol::Xmpp => 5269,
            };
            let mut targets = Vec::new();
            for (t, s) in e.targets.iter().enumerate() {
                let target = StaticTarget::parse(s, default_port).map_err(|reason| {
                    ConfigError::invalid(
                        format!("{key}.targets[{t}]"),
                        format!("{s:?}: {reason}; expected `host:port`"),
                    )
                })?;
                targets.push(target);
            }
            peers.push((
                key,
                Peer {
                    domain: d,
                    protocol: e.protocol,
                    family: family.family(),
                    starttls,
                    targets,
                },
            ));
        }
        // SIP entries first, so that a domain configured both ways fails on its XMPP
        // entry with the seed's "delete … as a SIP federated domain first".
        for protocol in [Protocol::Sip, Protocol::Xmpp] {
            for (key, p) in peers.iter().filter(|(_, p)| p.protocol == protocol) {
                let r = match protocol {
                    Protocol::Sip => federation.add_sip_domain(p.domain.clone()),
                    Protocol::Xmpp => {
                        federation.add_xmpp_domain(p.domain.clone(), XmppListing::Allow)
                    }
                };
                r.map_err(|source| ConfigError::Federation {
                    key: format!("{key}.protocol"),
                    source,
                })?;
            }
        }

        // [policy]
        for (i, s) in self.policy.deny.iter().enumerate() {
            let key = format!("policy.deny[{i}]");
            let d = domain(&key, s)?;
            if let Some((k, _)) = peers
                .iter()
                .find(|(_, p)| p.domain == d && p.protocol == Protocol::Xmpp)
            {
                return Err(ConfigError::invalid(
                    key,
                    format!("{d} is also the XMPP peer `{k}`; a domain is on one XMPP list"),
                ));
            }
            federation
                .add_xmpp_domain(d, XmppListing::Deny)
                .map_err(|source| ConfigError::Federation { key, source })?;
        }

        // [[policy.user]]
        let mut user_rules = Vec::new();
        for (i, u) in self.policy.user.iter().enumerate() {
            let key = format!("policy.user[{i}]");
            let user = UserAddress::new(&u.user)
                .map_err(|e| ConfigError::invalid(format!("{key}.user"), e.to_string()))?;
            if !federation.is_local(user.domain()) {
                return Err(ConfigError::invalid(
                    format!("{key}.user"),
                    format!("{} is not one of node.domains", user.domain()),
                ));
            }
            for (list, targets, rule) in [
                ("allow", &u.allow, Rule::Allow),
                ("block", &u.block, Rule::Block),
            ] {
                for (j, t) in targets.iter().enumerate() {
                    let k = format!("{key}.{list}[{j}]");
                    let target = if t.contains('@') {
                        RuleTarget::User(
                            UserAddress::new(t)
                                .map_err(|e| ConfigError::invalid(&k, e.to_string()))?,
                        )
                    } else {
                        RuleTarget::Domain(domain(&k, t)?)
                    };
                    user_rules.push((user.clone(), target, rule));
                }
            }
        }

        // Listeners.
        let mut sockets = Sockets::default();
        let s2s_settings = if s2s.enabled {
            let listen = socket_addr("xmpp.s2s.listen", &s2s.listen)?;
            sockets.claim(true, listen, "xmpp.s2s.listen".into())?;
            let secret = match (&s2s.dialback_secret, &s2s.secret_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::invalid(
                        "xmpp.s2s.secret_file",
                        "give xmpp.s2s.dialback_secret or xmpp.s2s.secret_file, not both",
                    ));
                }
                (Some(s), None) if s.len() < MIN_DIALBACK_SECRET_LEN => {
                    return Err(ConfigError::invalid(
                        "xmpp.s2s.dialback_secret",
                        format!("at least {MIN_DIALBACK_SECRET_LEN} bytes are required"),
                    ));
                }
                (Some(s), None) => SecretSource::Configured(DialbackSecret::new(s.as_bytes())),
                (None, Some(p)) if p.as_os_str().is_empty() => {
                    return Err(ConfigError::invalid(
                        "xmpp.s2s.secret_file",
                        "must not be empty",
                    ));
                }
                (None, Some(p)) => SecretSource::File(p.clone()),
                (None, None) => SecretSource::Random,
            };
            Some(S2sSettings {
                listen,
                starttls: default_starttls,
                secret,
                idle_timeout: secs("xmpp.s2s.idle_timeout_secs", s2s.idle_timeout_secs)?,
                keepalive: (s2s.keepalive_secs > 0)
                    .then(|| Duration::from_secs(s2s.keepalive_secs)),
                close_timeout: secs("xmpp.s2s.close_timeout_secs", s2s.close_timeout_secs)?,
            })
        } else {
            None
        };
        let c2s = &self.xmpp.c2s;
        let c2s_settings = if c2s.enabled {
            let listen = socket_addr("xmpp.c2s.listen", &c2s.listen)?;
            sockets.claim(true, listen, "xmpp.c2s.listen".into())?;
            if c2s.require_tls && c2s.allow_plain_without_tls {
                return Err(ConfigError::invalid(
                    "xmpp.c2s.allow_plain_without_tls",
                    "contradicts xmpp.c2s.require_tls = true (no authentication happens \
                     without TLS)",
                ));
            }
            Some(C2sSettings {
                listen,
                require_tls: c2s.require_tls,
                allow_plain_without_tls: c2s.allow_plain_without_tls,
                max_auth_failures: positive("xmpp.c2s.max_auth_failures", c2s.max_auth_failures)?,
            })
        } else {
            None
        };
        let mut sip_listeners = Vec::new();
        for (i, l) in self.sip.listeners.iter().enumerate() {
            let key = format!("sip.listeners[{i}].address");
            let addr = socket_addr(&key, &l.address)?;
            sockets.claim(l.transport != SipTransportKind::Udp, addr, key)?;
            sip_listeners.push(SipListener {
                transport: l.transport,
                addr,
            });
        }

        // [tls]
        let tls = &self.tls;
        let source = match (&tls.cert, &tls.key, tls.generate) {
            (Some(_), _, true) | (_, Some(_), true) => {
                return Err(ConfigError::invalid(
                    "tls.generate",
                    "excludes tls.cert and tls.key: generate a self-signed certificate, or \
                     give one",
                ));
            }
            (Some(c), Some(k), false) => {
                if c.as_os_str().is_empty() {
                    return Err(ConfigError::invalid("tls.cert", "must not be empty"));
                }
                if k.as_os_str().is_empty() {
                    return Err(ConfigError::invalid("tls.key", "must not be empty"));
                }
                CertSource::Files {
                    cert: c.clone(),
                    key: k.clone(),
                }
            }
            (Some(_), None, false) => {
                return Err(ConfigError::invalid("tls.key", "required with tls.cert"));
            }
            (None, Some(_), false) => {
                return Err(ConfigError::invalid("tls.cert", "required with tls.key"));
            }
            (None, None, true) => CertSource::Generate {
                dir: self.node.data_dir.join("tls"),
            },
            (None, None, false) => CertSource::None,
        };
        let tls_listener = self
            .sip
            .listeners
            .iter()
            .position(|l| l.transport == SipTransportKind::Tls);
        let needs_cert = tls_listener
            .map(|i| format!("sip.listeners[{i}] is a TLS listener"))
            .or_else(|| {
                (c2s.enabled && c2s.require_tls).then(|| "xmpp.c2s.require_tls = true".into())
            })
            .or_else(|| {
                (s2s.enabled && s2s.starttls == StartTls::Required)
                    .then(|| "xmpp.s2s.starttls = \"required\"".into())
            })
            .or_else(|| {
                let (key, _) = peers.iter().find(|(_, p)| {
                    p.protocol == Protocol::Xmpp
                        && p.starttls.unwrap_or(default_starttls) == TlsPolicy::Required
                })?;
                Some(format!("{key} requires STARTTLS"))
            })
            .or_else(|| {
                let (key, _) = peers.iter().find(|(_, p)| p.protocol == Protocol::Sip)?;
                Some(format!(
                    "{key} is a SIP peer (SIP federation is mutual TLS)"
                ))
            });
        if let (Some(why), CertSource::None) = (&needs_cert, &source) {
            return Err(ConfigError::invalid(
                "tls.cert",
                format!(
                    "a certificate is required because {why}; set tls.cert and tls.key, or \
                     tls.generate = true"
                ),
            ));
        }
        for (i, r) in tls.roots.iter().enumerate() {
            if r.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    format!("tls.roots[{i}]"),
                    "must not be empty",
                ));
            }
        }
        if tls.roots.is_empty() && !tls.generate {
            let why = tls_listener
                .filter(|_| self.sip.require_client_cert)
                .map(|i| {
                    format!(
                        "sip.require_client_cert = true: clients of sip.listeners[{i}] are \
                         verified against them"
                    )
                })
                .or_else(|| {
                    let (key, _) = peers.iter().find(|(_, p)| p.protocol == Protocol::Sip)?;
                    Some(format!(
                        "{key} is a SIP peer: its certificate is verified against them"
                    ))
                });
            if let Some(why) = why {
                return Err(ConfigError::invalid(
                    "tls.roots",
                    format!("at least one root is required: {why}"),
                ));
            }
        }
        let client_auth = if self.sip.require_client_cert {
            ClientAuth::Required
        } else {
            ClientAuth::Optional
        };

        // [sip] timers and [limits]
        let sip = &self.sip;
        let sip_federation = if sip.enabled {
            if sip
                .listeners
                .iter()
                .all(|l| l.transport == SipTransportKind::Udp)
            {
                return Err(ConfigError::invalid(
                    "sip.enabled",
                    "SIP federation needs a TLS or TCP listener in sip.listeners",
                ));
            }
            if sip.subscribe_expires_secs < 60 {
                return Err(ConfigError::invalid(
                    "sip.subscribe_expires_secs",
                    "must be at least 60 (RFC 6665 Min-Expires)",
                ));
            }
            if sip.im_idle_secs == 0 {
                return Err(ConfigError::invalid("sip.im_idle_secs", "must be positive"));
            }
            Some(SipFederationSettings {
                outbound_transport: sip.outbound_transport,
                subscribe_expires: sip.subscribe_expires_secs,
                im_idle: Duration::from_secs(sip.im_idle_secs),
            })
        } else {
            None
        };
        let nl = &self.limits.node;
        let sl = &self.limits.sip;
        let max_connections = positive("limits.node.max_connections", nl.max_connections)?;
        let max_connections_per_ip = positive(
            "limits.node.max_connections_per_ip",
            nl.max_connections_per_ip,
        )?;
        if max_connections_per_ip > max_connections {
            return Err(ConfigError::invalid(
                "limits.node.max_connections_per_ip",
                "must not exceed limits.node.max_connections",
            ));
        }
        let connections = ConnectionLimits {
            max_connections,
            max_connections_per_ip,
            max_connections_per_peer: positive(
                "limits.node.max_connections_per_peer",
                nl.max_connections_per_peer,
            )?,
            inbound_queue: positive("limits.node.inbound_queue", nl.inbound_queue)?,
            outbound_queue: positive("limits.node.outbound_queue", nl.outbound_queue)?,
        };
        let sip_limits = fedgate_sip::Limits {
            max_message_size: positive("limits.sip.max_message_size", sl.max_message_size)?,
            max_headers: positive("limits.sip.max_headers", sl.max_headers)?,
            max_line_length: positive("limits.sip.max_line_length", sl.max_line_length)?,
        };
        if sip_limits.max_line_length > sip_limits.max_message_size {
            return Err(ConfigError::invalid(
                "limits.sip.max_line_length",
                "must not exceed limits.sip.max_message_size",
            ));
        }
        if !(512..=65_507).contains(&sl.max_udp_datagram) {
            return Err(ConfigError::invalid(
                "limits.sip.max_udp_datagram",
                "must be between 512 and 65507",
            ));
        }
        let reconnect_initial = Duration::from_millis(positive(
            "sip.reconnect_initial_ms",
            sip.reconnect_initial_ms,
        )?);
        let reconnect_max = secs("sip.reconnect_max_secs", sip.reconnect_max_secs)?;
        if reconnect_max < reconnect_initial {
            return Err(ConfigError::invalid(
                "sip.reconnect_max_secs",
                "must not be shorter than sip.reconnect_initial_ms",
            ));
        }
        let transport = TransportConfig {
            limits: TransportLimits {
                max_connections,
                max_connections_per_ip,
                max_connections_per_target: connections.max_connections_per_peer,
                sip: sip_limits,
                read_chunk: positive("limits.sip.read_chunk", sl.read_chunk)?,
                inbound_queue: connections.inbound_queue,
                outbound_queue: connections.outbound_queue,
                max_udp_datagram: sl.max_udp_datagram,
            },
            timers: Timers {
                keepalive_interval: (sip.keepalive_secs > 0)
                    .then(|| Duration::from_secs(sip.keepalive_secs)),
                pong_timeout: secs("sip.pong_timeout_secs", sip.pong_timeout_secs)?,
                idle_timeout: secs("sip.idle_timeout_secs", sip.idle_timeout_secs)?,
                connect_timeout: secs("sip.connect_timeout_secs", sip.connect_timeout_secs)?,
                handshake_timeout: secs("sip.handshake_timeout_secs", sip.handshake_timeout_secs)?,
                write_timeout: secs("sip.write_timeout_secs", sip.write_timeout_secs)?,
            },
            backoff: Backoff {
                initial: reconnect_initial,
                max: reconnect_max,
                attempts: positive("sip.reconnect_attempts", sip.reconnect_attempts)?,
            },
        };

        let xl = &self.limits.xmpp;
        let xmpp_limits = fedgate_xmpp::Limits {
            max_stanza_bytes: positive("limits.xmpp.max_stanza_bytes", xl.max_stanza_bytes)?,
            max_stanza_bytes_unauthenticated: positive(
                "limits.xmpp.max_stanza_bytes_unauthenticated",
                xl.max_stanza_bytes_unauthenticated,
            )?,
            max_depth: positive("limits.xmpp.max_depth", xl.max_depth)?,
            max_attributes: positive("limits.xmpp.max_attributes", xl.max_attributes)?,
            max_elements: positive("limits.xmpp.max_elements", xl.max_elements)?,
            unauthenticated_lifetime: secs(
                "limits.xmpp.unauthenticated_lifetime_secs",
                xl.unauthenticated_lifetime_secs,
            )?,
        };
        if xmpp_limits.max_stanza_bytes_unauthenticated > xmpp_limits.max_stanza_bytes {
            return Err(ConfigError::invalid(
                "limits.xmpp.max_stanza_bytes_unauthenticated",
                "must not exceed limits.xmpp.max_stanza_bytes",
            ));
        }
        let stl = &self.limits.store;
        let store = fedgate_store::StoreConfig {
            limits: fedgate_store::StoreLimits {
                max_stanza_bytes: positive("limits.store.max_stanza_bytes", stl.max_stanza_bytes)?,
                max_text_bytes: positive("limits.store.max_text_bytes", stl.max_text_bytes)?,
                max_groups_per_item: positive(
                    "limits.store.max_groups_per_item",
                    stl.max_groups_per_item,
                )?,
                max_roster_items: positive("limits.store.max_roster_items", stl.max_roster_items)?,
                max_offline_messages: positive(
                    "limits.store.max_offline_messages",
                    stl.max_offline_messages,
                )?,
                max_password_bytes: positive(
                    "limits.store.max_password_bytes",
                    stl.max_password_bytes,
                )?,
                max_sip_dialogs: positive("limits.store.max_sip_dialogs", stl.max_sip_dialogs)?,
                max_sip_dialog_bytes: positive(
                    "limits.store.max_sip_dialog_bytes",
                    stl.max_sip_dialog_bytes,
                )?,
            },
            scram_iterations: self.store.scram_iterations,
        };
        if store.scram_iterations < 4096 {
            return Err(ConfigError::invalid(
                "store.scram_iterations",
                "must be at least 4096 (RFC 7677 §4)",
            ));
        }

        // [dns]: the adapter's own checks. With no nameserver, /etc/resolv.conf is read
        // when the adapter starts, not here.
        let dns = DnsConfig::from(&self.dns);
        let mut probe = dns.clone();
        if probe.nameservers.is_empty() {
            probe.nameservers.push("127.0.0.1".into());
        }
        probe
            .settings_with_resolv_conf("/dev/null")
            .map_err(|e| match e {
                crate::dns::DnsConfigError::Invalid { key, reason } => {
                    ConfigError::Invalid { key, reason }
                }
                other => ConfigError::invalid("dns", other.to_string()),
            })?;

        Ok(ValidatedConfig {
            name: self.node.name.clone(),
            data_dir: self.node.data_dir.clone(),
            local_domains,
            tls: TlsPlan {
                source,
                roots: tls.roots.clone(),
                missing_san: tls.missing_san,
                client_auth,
            },
            s2s: s2s_settings,
            c2s: c2s_settings,
            sip: SipSettings {
                listeners: sip_listeners,
                client_auth,
                transport,
                federation: sip_federation,
            },
            peers: peers.into_iter().map(|(_, p)| p).collect(),
            federation,
            dns,
            connections,
            xmpp_limits,
            store,
            user_rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_target_forms() {
        let t = |s: &str| StaticTarget::parse(s, 5269).map(|t| t.to_string());
        assert_eq!(
            t("xmpp.example.org:5270").as_deref(),
            Ok("xmpp.example.org:5270")
        );
        assert_eq!(
            t("Xmpp.Example.org").as_deref(),
            Ok("xmpp.example.org:5269")
        );
        assert_eq!(t("127.0.0.1:15269").as_deref(), Ok("127.0.0.1:15269"));
        assert_eq!(t("127.0.0.1").as_deref(), Ok("127.0.0.1:5269"));
        assert_eq!(t("[::1]:5061").as_deref(), Ok("[::1]:5061"));
        assert_eq!(t("[::1]").as_deref(), Ok("[::1]:5269"));
        assert_eq!(t("::1").as_deref(), Ok("[::1]:5269"));
        assert!(t("host:0").is_err());
        assert!(t("host:99999").is_err());
        assert!(t("bad host:5269").is_err());
        assert!(t("[::1:5061").is_err());
        assert!(t("[::1]5061").is_err());
        assert!(t("").is_err());
    }
}
