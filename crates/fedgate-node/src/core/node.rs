//! [`Node`]: the federation node assembled from a validated configuration: the store on
//! its writer thread, the accounts, the [`Router`] and the c2s listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fedgate_store::{SqliteStore, StoreError, StoreHandle};
use fedgate_xmpp::DomainPart;

use super::{CoreConfig, Router, UserDirectory};
use crate::c2s::{C2sListener, C2sListenerConfig};
use crate::config::{TlsStartup, ValidatedConfig};
use crate::tls::{ClientAuth, TlsError, TlsSettings};

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
}

/// A running federation node (this slice: local users over c2s).
#[derive(Debug)]
pub struct Node {
    router: Router,
    c2s: Option<C2sListener>,
    store_thread: Option<std::thread::JoinHandle<SqliteStore>>,
}

impl Node {
    /// Opens the store in `data_dir`, reads the accounts and starts the c2s listener
    /// (with STARTTLS when `tls` holds a certificate).
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
        let router = Router::new(core, domains.clone(), handle, users);
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

    /// The accounts.
    pub fn users(&self) -> &Arc<UserDirectory> {
        self.router.users()
    }

    /// Closes every client stream with `</stream:stream>`, then stops the store's writer
    /// thread once the last request is done (bounded wait).
    pub async fn shutdown(mut self) {
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
