//! Node configuration: one typed struct read from TOML and validated before anything
//! listens.
//!
//! # Steps
//!
//! 1. [`NodeConfig::from_toml_str`] / [`NodeConfig::load`]: TOML to the section structs.
//!    Unknown keys, wrong types and unknown names (`protocol = "smtp"`) fail here.
//! 2. [`NodeConfig::validate`]: every value and rule checked, typed values built
//!    ([`Domain`](fedgate_policy::Domain)s, `SocketAddr`s, the
//!    [`FederationConfig`](fedgate_policy::FederationConfig), the drivers' limits) into a
//!    [`ValidatedConfig`]. Pure: no file read, no socket.
//! 3. [`ValidatedConfig::load_tls`] (certificate, generated on first start with
//!    `tls.generate`; roots; the subjectAltName check) and
//!    [`S2sSettings::dialback_secret`]: the file reads, still before anything listens.
//!
//! # Sections
//!
//! Every key, with its default, is written in `examples/fedgate.toml` at the root of the
//! repository (a test checks that file against the defaults in code).
//!
//! | section | what | type |
//! |---|---|---|
//! | `[node]` | `name`, `data_dir`, `domains` (local; at least one) | [`NodeSection`] |
//! | `[tls]` | `cert` + `key` or `generate`; `roots`; `missing_san = "warn"\|"error"` | [`TlsSection`] |
//! | `[xmpp.s2s]` | `enabled`, `listen` (0.0.0.0:5269), `starttls = "optional"\|"required"`, `dialback_secret` or `secret_file`, `idle_timeout_secs`, `keepalive_secs` | [`S2sSection`] |
//! | `[xmpp.c2s]` | `enabled`, `listen` (0.0.0.0:5222), `require_tls`, `allow_plain_without_tls`, `max_auth_failures` | [`C2sSection`] |
//! | `[sip]` | `[[sip.listeners]]` (`transport` udp/tcp/tls, `address`; default TLS 0.0.0.0:5061), `require_client_cert`, keep-alive, timeouts, reconnection; SIP federation: `enabled`, `outbound_transport`, `subscribe_expires_secs`, `im_idle_secs` | [`SipSection`] |
//! | `[[federation.domain]]` | `name`, `protocol = "sip"\|"xmpp"`, `family`, `starttls`, `targets` | [`FederatedDomainSection`] |
//! | `[policy]` | `xmpp_mode = "allow-all"\|"allow-listed"\|"deny-listed"`, `deny` | [`PolicySection`] |
//! | `[[policy.user]]` | `user`, `allow`, `block` (watchers `user@domain` or domains) | [`UserPolicySection`] |
//! | `[dns]` | nameservers, timeouts, cache bounds ([`crate::dns::DnsConfig`]) | [`DnsSection`] |
//! | `[store]` | `scram_iterations` | [`StoreSection`] |
//! | `[limits.node]`, `[limits.sip]`, `[limits.xmpp]`, `[limits.store]` | connections and queues; [`fedgate_sip::Limits`]; [`fedgate_xmpp::Limits`]; [`fedgate_store::StoreLimits`] | [`LimitsSection`] |
//!
//! # Precedence
//!
//! * No file: [`NodeConfig::embedded_default`], the loopback demo. A file replaces it
//!   whole; nothing is merged with the demo.
//! * In a file, a missing key or section takes the default in code (the one documented
//!   on its field and in the example); there are no environment overrides.
//! * A `[[federation.domain]]` entry's `starttls` overrides `xmpp.s2s.starttls` for that
//!   peer; its `targets` replace DNS SRV for that peer (static routes).
//! * The XMPP `[[federation.domain]]` entries are the XMPP allow list, `policy.deny` the
//!   deny list; `policy.xmpp_mode` says how they apply (table on
//!   [`XmppMode`](fedgate_policy::XmppMode)). A SIP entry is SIP whatever the mode.
//! * Relative paths are relative to the working directory.
//!
//! # Errors
//!
//! One [`ConfigError`]: the first problem found, always naming the key path, and for TOML
//! errors the line and column:
//!
//! ```text
//! config: `federation.domain[2].protocol` (line 14, column 12): unknown variant `smtp`, expected `sip` or `xmpp`
//! config: `xmpp.c2s.listen`: "localhost:5222" is not an address `ip:port` (IPv6: `[::1]:port`)
//! config: `federation.domain[1].protocol`: example.com is configured as a SIP federated domain; … delete example.com as a SIP federated domain first, then add it for XMPP
//! ```
//!
//! # Example
//!
//! ```
//! use fedgate_node::config::NodeConfig;
//!
//! let cfg = NodeConfig::from_toml_str(r#"
//!     [node]
//!     domains = ["example.com"]
//!     [tls]
//!     cert = "/etc/fedgate/cert.pem"
//!     key = "/etc/fedgate/key.pem"
//!     roots = ["/etc/fedgate/roots.pem"]
//!     [[federation.domain]]
//!     name = "contoso.example"
//!     protocol = "sip"
//! "#)?;
//! let valid = cfg.validate()?;
//! assert_eq!(valid.sip.listeners[0].addr.port(), 5061);
//!
//! let err = NodeConfig::from_toml_str("[xmpp.s2s]\nstarttls = \"maybe\"\n").unwrap_err();
//! assert_eq!(err.key(), Some("xmpp.s2s.starttls"));
//! # Ok::<(), fedgate_node::config::ConfigError>(())
//! ```
//!
//! Not done here: reloading, environment or command-line overrides, and per-peer
//! STARTTLS `optional` exceptions to a `required` default (fedgate-xmpp's s2s machine
//! takes one incoming policy plus a list of peers that must use TLS).

mod error;
mod identity;
mod sections;
mod validate;

use std::path::{Path, PathBuf};

use fedgate_policy::Protocol;
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use identity::{GENERATED_CERT, GENERATED_KEY, TlsStartup};
pub use sections::{
    C2sSection, DnsSection, FamilyName, FederatedDomainSection, FederationSection, LimitsSection,
    MissingSan, NodeLimitsSection, NodeSection, PolicySection, S2sSection, SipLimitsSection,
    SipListenerSection, SipOutboundTransport, SipSection, SipTransportKind, StartTls,
    StoreLimitsSection, StoreSection, TlsSection, UserPolicySection, XmppLimitsSection,
    XmppSection,
};
pub use validate::{
    C2sSettings, CertSource, ConnectionLimits, MIN_DIALBACK_SECRET_LEN, Peer, S2sSettings,
    SecretSource, SipFederationSettings, SipListener, SipSettings, StaticTarget, TargetHost,
    TlsPlan, ValidatedConfig,
};

/// The whole node configuration, as read from TOML. `Default` is every documented
/// default (which does not validate: it has no local domain).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[tls]`.
    pub tls: TlsSection,
    /// `[xmpp]`: `[xmpp.s2s]` and `[xmpp.c2s]`.
    pub xmpp: XmppSection,
    /// `[sip]`.
    pub sip: SipSection,
    /// `[federation]`: `[[federation.domain]]`.
    pub federation: FederationSection,
    /// `[policy]`.
    pub policy: PolicySection,
    /// `[dns]`.
    pub dns: DnsSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[limits]`.
    pub limits: LimitsSection,
}

/// The demo's local domain.
pub const DEMO_DOMAIN: &str = "fedgate-a.test";
/// The demo's XMPP peer: a second demo node, expected on 127.0.0.1:25269.
pub const DEMO_PEER: &str = "fedgate-b.test";

impl NodeConfig {
    /// Reads TOML. Unknown keys, wrong types, unknown names and syntax errors give
    /// [`ConfigError::Toml`] with the key path, line and column.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::from_toml(text, &e))
    }

    /// Reads a TOML file (see [`NodeConfig::from_toml_str`]).
    pub fn load(path: impl AsRef<Path>) -> Result<NodeConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        NodeConfig::from_toml_str(&text)
    }

    /// Reads and validates a file in one step.
    pub fn load_validated(path: impl AsRef<Path>) -> Result<ValidatedConfig, ConfigError> {
        NodeConfig::load(path)?.validate()
    }

    /// The demo configuration the node runs with no arguments: local domain
    /// [`DEMO_DOMAIN`] on loopback, on ports that do not collide with a system XMPP or
    /// SIP server (c2s 127.0.0.1:15222, s2s 127.0.0.1:15269, SIP TLS 127.0.0.1:15061), a
    /// self-signed certificate generated on first start in `./fedgate-data`, and one XMPP
    /// peer, [`DEMO_PEER`], reached statically at 127.0.0.1:25269 (a second demo node).
    /// Everything else is the default. It validates.
    pub fn embedded_default() -> NodeConfig {
        let mut cfg = NodeConfig::default();
        cfg.node.name = "fedgate-demo".into();
        cfg.node.data_dir = PathBuf::from("./fedgate-data");
        cfg.node.domains = vec![DEMO_DOMAIN.into()];
        cfg.tls.generate = true;
        cfg.xmpp.s2s.listen = "127.0.0.1:15269".into();
        cfg.xmpp.c2s.listen = "127.0.0.1:15222".into();
        cfg.sip.listeners = vec![SipListenerSection {
            transport: SipTransportKind::Tls,
            address: "127.0.0.1:15061".into(),
        }];
        cfg.federation.domain = vec![FederatedDomainSection {
            name: DEMO_PEER.into(),
            protocol: Protocol::Xmpp,
            family: Some(FamilyName::Xmpp),
            starttls: None,
            targets: vec!["127.0.0.1:25269".into()],
        }];
        cfg
    }
}
