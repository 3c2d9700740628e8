//! [`Node`]: the federation node assembled from a validated configuration: the store on
//! its writer thread, the accounts, the [`Router`], the c2s listener and, when
//! `xmpp.s2s.enabled`, XMPP federation: an [`S2sListener`] on `xmpp.s2s.listen` and an
//! [`S2sOutbound`] resolving peers with a [`FederationLookup`] (static targets, else
//! DNS), plugged into the router behind the [`FederationGate`]
//! ([`FederatedXmppLinks`] outbound, [`pump_federated`] inbound); and, when
//! `sip.enabled`, SIP federation: a [`SipTransport`] on `sip.listeners` (mutual TLS by
//! `sip.require_client_cert`), a [`SipUa`] on it and the [`SipGateway`], whose links take
//! the SIP-federated domains ([`DispatchLinks`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fedgate_policy::Protocol;
use fedgate_store::{SqliteStore, StoreError, StoreHandle};
use fedgate_xmpp::DomainPart;
use fedgate_xmpp::s2s::S2sConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::RemoteLinks;
use super::{
    CoreConfig, FederatedXmppLinks, FederationGate, FederationLookup, Router, UserDirectory,
    UserPolicy, XmppRemoteLinks, pump_federated,
};
use crate::c2s::{C2sListener, C2sListenerConfig};
use crate::config::{ConfigError, S2sSettings, TlsStartup, ValidatedConfig};
use crate::config::{SipFederationSettings, SipTransportKind};
use crate::dns::DnsLookup;
use crate::sip::{SipTransport, SipUa, SipUaConfig};
use crate::sipfed::{DispatchLinks, SipGateway, SipGatewayConfig, SipRoutes};
use crate::tls::{ClientAuth, TlsError, TlsSettings};
use crate::xmpp::{S2sListener, S2sOutbound, XmppConfig, XmppTls, random_seed};

/// How long [`Node::shutdown`] lets the SIP gateway send the last `unavailable`
/// presence before it stops it (the SIP side has no flush). The XMPP side needs no
/// such wait: [`S2sOutbound::shutdown`] writes every queued stanza before
/// `</stream:stream>`.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Why the node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A listener could not bind.
    #[error("{what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// TLS configuration.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// A hosted domain is not a valid XMPP domain.
    #[error("node.domains: {0}")]
    Domain(String),
    /// A configuration value read at start (the dialback secret file).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The XMPP s2s driver could not be built.
    #[error("xmpp.s2s: {0}")]
    S2s(String),
    /// The per-user policy engine could not be opened on the store.
    #[error("policy: {0}")]
    Policy(String),
    /// The SIP transport could not be built or bound.
    #[error("sip: {0}")]
    Sip(String),
}

/// SIP federation of a running node.
#[derive(Debug)]
struct Sip {
    transport: SipTransport,
    gateway: SipGateway,
    ua_task: JoinHandle<()>,
    listening: Vec<(SipTransportKind, SocketAddr)>,
}

impl Sip {
    fn stop(self) {
        drop(self.gateway);
        self.ua_task.abort();
        self.transport.shutdown();
    }
}

/// XMPP federation of a running node.
#[derive(Debug)]
struct S2s {
    listener: S2sListener,
    outbound: S2sOutbound,
    pump: JoinHandle<()>,
    links: Arc<dyn RemoteLinks>,
}

/// A running federation node: local users over c2s, remote XMPP domains over s2s.
#[derive(Debug)]
pub struct Node {
    router: Router,
    c2s: Option<C2sListener>,
    s2s: Option<S2s>,
    sip: Option<Sip>,
    store_thread: Option<std::thread::JoinHandle<SqliteStore>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.sip.take() {
            self.router.clear_remote_links();
            s.stop();
        }
        if let Some(s) = self.s2s.take() {
            self.router.clear_remote_links();
            s.pump.abort();
        }
    }
}

fn domain_part(d: &fedgate_policy::Domain) -> Result<DomainPart, NodeError> {
    DomainPart::new(d.as_str()).map_err(|e| NodeError::Domain(format!("{d}: {e}")))
}

async fn start_s2s(
    cfg: &ValidatedConfig,
    s: &S2sSettings,
    tls: Option<&TlsStartup>,
    domains: Vec<DomainPart>,
    router: &Router,
) -> Result<S2s, NodeError> {
    let core = S2sConfig {
        local_domains: domains,
        secret: s.dialback_secret(random_seed())?,
        limits: cfg.xmpp_limits.clone(),
        tls_available: false, // set by the driver from `XmppConfig::tls`
        incoming_tls: s.starttls,
        tls_required_peers: cfg
            .xmpp_peers_requiring_tls()
            .into_iter()
            .map(domain_part)
            .collect::<Result<_, _>>()?,
        id_seed: random_seed(),
    };
    let mut xc = XmppConfig::new(core);
    if let Some(identity) = tls.and_then(|t| t.settings.identity.clone()) {
        xc.tls = Some(XmppTls::new(identity)?);
    }
    xc.default_tls_policy = s.starttls;
    for p in cfg.peers.iter().filter(|p| p.protocol == Protocol::Xmpp) {
        if let Some(policy) = p.starttls {
            xc.peer_tls.insert(domain_part(&p.domain)?, policy);
        }
    }
    xc.limits.idle_timeout = s.idle_timeout;
    xc.limits.close_timeout = s.close_timeout;
    // No keep-alive: never before the idle close.
    xc.limits.keepalive_interval = s
        .keepalive
        .unwrap_or(s.idle_timeout + Duration::from_secs(1));
    let dns = match DnsLookup::new(&cfg.dns) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "xmpp.s2s: no DNS; only peers with static targets are reachable");
            None
        }
    };
    let lookup = FederationLookup::new(cfg, dns);
    let (sink, rx) = mpsc::channel(cfg.connections.inbound_queue.max(1));
    let outbound = S2sOutbound::new(xc, lookup, sink).map_err(|e| NodeError::S2s(e.to_string()))?;
    let listener = S2sListener::bind(s.listen, &outbound)
        .await
        .map_err(|source| NodeError::Bind {
            what: "xmpp.s2s.listen",
            addr: s.listen,
            source,
        })?;
    let gate = Arc::new(FederationGate::from_config(cfg));
    let links: Arc<dyn RemoteLinks> = Arc::new(FederatedXmppLinks::new(
        gate.clone(),
        XmppRemoteLinks(outbound.clone()),
    ));
    router.set_remote_links(links.clone());
    let pump = tokio::spawn(pump_federated(rx, router.clone(), gate, outbound.clone()));
    Ok(S2s {
        listener,
        outbound,
        pump,
        links,
    })
}

async fn start_sip(
    cfg: &ValidatedConfig,
    f: SipFederationSettings,
    tls: Option<&TlsStartup>,
    router: &Router,
) -> Result<Sip, NodeError> {
    let settings = tls.map(|t| {
        let mut s = t.settings.clone();
        s.client_auth = cfg.sip.client_auth;
        s
    });
    let (transport, inbound) = SipTransport::new(cfg.sip.transport, settings.as_ref())
        .map_err(|e| NodeError::Sip(e.to_string()))?;
    let mut listening = Vec::new();
    for l in &cfg.sip.listeners {
        let r = match l.transport {
            SipTransportKind::Tls => transport.listen_tls(l.addr).await,
            SipTransportKind::Tcp => transport.listen_tcp(l.addr).await,
            SipTransportKind::Udp => transport.bind_udp(l.addr).await,
        };
        let addr = r.map_err(|e| NodeError::Sip(format!("sip.listeners {}: {e}", l.addr)))?;
        listening.push((l.transport, addr));
    }
    let host = cfg
        .local_domains
        .first()
        .map(|d| d.as_str().to_owned())
        .ok_or_else(|| NodeError::Domain("no local domain".into()))?;
    let (kind, port) = listening
        .iter()
        .find(|(k, _)| *k == SipTransportKind::Tls)
        .or_else(|| listening.iter().find(|(k, _)| *k == SipTransportKind::Tcp))
        .map(|(k, a)| (*k, a.port()))
        .unwrap_or((SipTransportKind::Tls, 5061));
    let param = match kind {
        SipTransportKind::Tls => "tls",
        SipTransportKind::Tcp => "tcp",
        SipTransportKind::Udp => "udp",
    };
    let contact = fedgate_sip_txn::ua::address(&format!("<sip:{host}:{port};transport={param}>"))
        .map_err(|e| NodeError::Sip(format!("contact: {e}")))?;
    let seed = random_seed();
    let seed = u64::from_le_bytes([
        seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
    ]);
    let ep = fedgate_sip_txn::EndpointConfig::new(
        fedgate_sip::Host::Domain(bytes::Bytes::from(host.clone())),
        seed,
    );
    let mut ua = fedgate_sip_txn::UaConfig::new(ep, contact);
    ua.idle_timeout = f.im_idle;
    ua.sdp_host = host;
    ua.sdp_port = port;
    // The gateway answers each MESSAGE from Lync by the router's outcome (RFC 7247).
    ua.app_answers_messages = true;
    let (sip_ua, events, ua_task) = SipUa::spawn(transport.clone(), inbound, SipUaConfig::new(ua));
    let dns = match DnsLookup::new(&cfg.dns) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "sip: no DNS; only SIP peers with static targets are reachable");
            None
        }
    };
    let gateway = SipGateway::start(
        SipGatewayConfig {
            federation: cfg.federation.clone(),
            subscribe_expires: f.subscribe_expires,
            queue: cfg.connections.inbound_queue,
        },
        sip_ua,
        events,
        router.clone(),
        SipRoutes::from_config(cfg, dns),
    )
    .await;
    Ok(Sip {
        transport,
        gateway,
        ua_task,
        listening,
    })
}

impl Node {
    /// Opens the store in `data_dir`, reads the accounts, starts the c2s listener (with
    /// STARTTLS when `tls` holds a certificate) and, when `xmpp.s2s.enabled`, XMPP
    /// federation (s2s listener and outbound links behind the [`FederationGate`]).
    ///
    /// s2s settings: dialback secret from `xmpp.s2s.dialback_secret` / `secret_file` (random
    /// per start otherwise); STARTTLS offered with the node certificate when there is one;
    /// `xmpp.s2s.starttls` is both the inbound requirement and the default outbound policy,
    /// a peer's own `starttls` overrides it outbound, and the peers whose effective policy is
    /// `required` must use TLS inbound too; `idle_timeout_secs`, `keepalive_secs` (0: no
    /// keep-alive before the idle close) and `close_timeout_secs` go to the driver's
    /// limits.
    pub async fn start(cfg: &ValidatedConfig, tls: Option<&TlsStartup>) -> Result<Node, NodeError> {
        let domains = cfg
            .local_domains
            .iter()
            .map(|d| DomainPart::new(d.as_str()).map_err(|e| NodeError::Domain(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let (dir, store_cfg) = (cfg.data_dir.clone(), cfg.store);
        let store = tokio::task::spawn_blocking(move || SqliteStore::open_with(dir, store_cfg))
            .await
            .map_err(|_| StoreError::WriterGone)??;
        let (handle, store_thread) = StoreHandle::spawn(store, cfg.connections.inbound_queue)?;
        let users = UserDirectory::load(handle.clone()).await?;
        let core = CoreConfig {
            session_queue: cfg.connections.outbound_queue,
            ..CoreConfig::default()
        };
        let router = Router::new(core, domains.clone(), handle.clone(), users);
        let policy = UserPolicy::open(
            handle,
            cfg.federation.clone(),
            cfg.user_rules.clone(),
            super::util::now(),
        )
        .await
        .map_err(|e| NodeError::Policy(e.to_string()))?;
        router.set_user_policy(policy);
        let s2s = match &cfg.s2s {
            Some(s) => Some(start_s2s(cfg, s, tls, domains.clone(), &router).await?),
            None => None,
        };
        let sip = match cfg.sip.federation {
            Some(f) => {
                let sip = start_sip(cfg, f, tls, &router).await?;
                router.set_remote_links(Arc::new(DispatchLinks::new(
                    cfg.federation.clone(),
                    sip.gateway.links(),
                    s2s.as_ref().map(|s| s.links.clone()),
                )));
                Some(sip)
            }
            None => None,
        };
        let c2s = match &cfg.c2s {
            None => None,
            Some(c) => {
                let mut lc = C2sListenerConfig::new(c.listen, domains);
                if let Some(identity) = tls.and_then(|t| t.settings.identity.clone()) {
                    let settings = TlsSettings {
                        identity: Some(identity),
                        roots: Vec::new(),
                        client_auth: ClientAuth::None,
                    };
                    lc.tls = Some(settings.server_config()?);
                }
                lc.require_tls = c.require_tls;
                if c.require_tls && lc.tls.is_none() {
                    tracing::warn!(
                        "xmpp.c2s.require_tls is set but no certificate is configured: clients log in without TLS (and without PLAIN)"
                    );
                }
                lc.max_auth_failures = c.max_auth_failures;
                lc.limits = cfg.xmpp_limits.clone();
                lc.max_connections = cfg.connections.max_connections;
                lc.max_connections_per_ip = cfg.connections.max_connections_per_ip;
                if c.allow_plain_without_tls {
                    tracing::warn!(
                        "xmpp.c2s.allow_plain_without_tls is not supported: PLAIN is offered over TLS only"
                    );
                }
                let l = C2sListener::bind(lc, router.clone())
                    .await
                    .map_err(|source| NodeError::Bind {
                        what: "xmpp.c2s.listen",
                        addr: c.listen,
                        source,
                    })?;
                Some(l)
            }
        };
        Ok(Node {
            router,
            c2s,
            s2s,
            sip,
            store_thread: Some(store_thread),
        })
    }

    /// The router (to install remote links, or to inspect sessions).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Where the c2s listener listens.
    pub fn c2s_addr(&self) -> Option<SocketAddr> {
        self.c2s.as_ref().map(C2sListener::local_addr)
    }

    /// Where the s2s listener listens (`None`: XMPP federation disabled).
    pub fn s2s_addr(&self) -> Option<SocketAddr> {
        self.s2s.as_ref().map(|s| s.listener.local_addr())
    }

    /// The XMPP outbound driver (`None`: XMPP federation disabled).
    pub fn s2s_outbound(&self) -> Option<&S2sOutbound> {
        self.s2s.as_ref().map(|s| &s.outbound)
    }

    /// Where the SIP listeners listen (empty: SIP federation disabled).
    pub fn sip_addrs(&self) -> Vec<(SipTransportKind, SocketAddr)> {
        self.sip
            .as_ref()
            .map(|s| s.listening.clone())
            .unwrap_or_default()
    }

    /// The accounts.
    pub fn users(&self) -> &Arc<UserDirectory> {
        self.router.users()
    }

    /// Graceful shutdown, in this order:
    /// 1. `unavailable` for every available local session to its watchers, while every
    ///    link (XMPP and SIP) is still installed; with SIP federation, a short grace
    ///    ([`SHUTDOWN_GRACE`]) for the SIP side to send it, then SIP stops.
    /// 2. XMPP federation: the remote links are detached, then [`S2sOutbound::shutdown`]
    ///    writes what each outbound link has queued (the `unavailable` presences
    ///    included), sends `</stream:stream>`, waits for the peer's closing tag and
    ///    closes; then [`S2sListener::shutdown`] stops accepting and closes the inbound
    ///    streams the same way (stanzas they deliver meanwhile still reach local
    ///    users); then the inbound pump stops. Each step is bounded by
    ///    `XmppLimits::close_timeout` (2 s), after which what is left is aborted.
    /// 3. Every client stream is closed with `</stream:stream>`.
    /// 4. The store's writer thread stops once the last request is done (bounded wait).
    pub async fn shutdown(mut self) {
        // First, while every link (XMPP and SIP) is still installed: watchers are told.
        // The XMPP links have them queued now; only SIP needs a grace to send them.
        if self.router.broadcast_unavailable_all().await > 0 && self.sip.is_some() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
        if let Some(s) = self.sip.take() {
            self.router.clear_remote_links();
            s.stop();
        }
        if let Some(s) = self.s2s.take() {
            self.router.clear_remote_links();
            s.outbound.shutdown().await;
            s.listener.shutdown().await;
            s.pump.abort();
        }
        if let Some(c) = self.c2s.take() {
            c.shutdown().await;
        }
        let store_thread = self.store_thread.take();
        drop(self);
        if let Some(t) = store_thread {
            let join = tokio::task::spawn_blocking(move || t.join());
            if tokio::time::timeout(Duration::from_secs(5), join)
                .await
                .is_err()
            {
                tracing::warn!("store: writer thread still busy at shutdown");
            }
        }
        tracing::info!("node stopped");
    }
}
