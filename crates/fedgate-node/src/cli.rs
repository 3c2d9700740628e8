//! The `fedgate-federation` command line (the binary in `bins/fedgate-federation` is a
//! thin `main` calling [`main`]).
//!
//! ```text
//! fedgate-federation [--config FILE]                 run the node (no file: the loopback demo)
//! fedgate-federation check-config [--config FILE]    validate, print a summary (exit 1 on error)
//! fedgate-federation user add USER [--password PW]   USER is local@domain or local (first domain);
//! fedgate-federation user remove USER                the password is read from stdin without --password
//! fedgate-federation user list
//! fedgate-federation dns-records --deployment FILE   the zone fragment a deployment must publish
//! ```
//! Logs go to stderr through `tracing-subscriber` (`RUST_LOG`, default `info`). The node
//! stops on SIGTERM or ctrl-c ([`Node::shutdown`](crate::core::Node::shutdown)): watchers
//! get `unavailable`, then every s2s and client stream is closed with `</stream:stream>`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedgate_policy::{Domain, UserAddress};
use fedgate_store::{SqliteStore, StoreError, UserStore};

use crate::config::{ConfigError, NodeConfig, ValidatedConfig};
use crate::core::{Node, NodeError};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "fedgate-federation",
    version,
    about = "fedgate federation node"
)]
pub struct Cli {
    /// The configuration file (TOML); without it, the embedded loopback demo.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do (default: run the node).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (the default).
    Run,
    /// Validate the configuration and print a summary.
    CheckConfig,
    /// Manage local users (in the store of the configuration's data_dir).
    User {
        /// The action.
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Print the DNS records a deployment must publish (zone-file fragment).
    DnsRecords {
        /// The deployment description (fedgate-srv `DeploymentConfig`, TOML).
        #[arg(long, value_name = "FILE")]
        deployment: PathBuf,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// `local@domain`, or `local` for the first hosted domain.
        user: String,
        /// The password (else read one line from stdin).
        #[arg(long)]
        password: Option<String>,
    },
    /// Remove a user, its roster and offline messages.
    Remove {
        /// `local@domain`, or `local` for the first hosted domain.
        user: String,
    },
    /// List the users.
    List,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The configuration.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The node.
    #[error("{0}")]
    Node(#[from] NodeError),
    /// Reading or writing.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad arguments or input.
    #[error("{0}")]
    Usage(String),
}

/// The binary's `main`: parses the arguments, sets up logging, runs, and maps errors to
/// exit code 1 (2 for usage errors, from clap).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let stdin = std::io::stdin();
    match execute(cli, &mut std::io::stdout(), &mut stdin.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the configuration: the file, or the embedded demo (second value true).
pub fn load_config(path: Option<&Path>) -> Result<(NodeConfig, bool), ConfigError> {
    match path {
        Some(p) => Ok((NodeConfig::load(p)?, false)),
        None => Ok((NodeConfig::embedded_default(), true)),
    }
}

/// Runs one command; output to `out`, passwords read from `input`.
pub fn execute(cli: Cli, out: &mut dyn Write, input: &mut dyn BufRead) -> Result<(), CliError> {
    let path = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(path, out),
        Command::CheckConfig => {
            let (cfg, embedded) = load_config(path)?;
            let v = cfg.validate()?;
            let source = match path {
                Some(p) => p.display().to_string(),
                None if embedded => "embedded demo configuration".into(),
                None => String::new(),
            };
            writeln!(out, "configuration OK ({source})")?;
            write!(out, "{}", summary(&v))?;
            Ok(())
        }
        Command::User { action } => {
            let (cfg, _) = load_config(path)?;
            let v = cfg.validate()?;
            let mut store = SqliteStore::open_with(&v.data_dir, v.store)?;
            match action {
                UserCommand::Add { user, password } => {
                    let u = user_address(&v, &user)?;
                    let pw = match password {
                        Some(p) => p,
                        None => {
                            let mut line = String::new();
                            input.read_line(&mut line)?;
                            line.trim_end_matches(['\r', '\n']).to_owned()
                        }
                    };
                    if pw.is_empty() {
                        return Err(CliError::Usage("empty password".into()));
                    }
                    store.add_user(&u, &pw)?;
                    writeln!(out, "added {u}")?;
                }
                UserCommand::Remove { user } => {
                    let u = user_address(&v, &user)?;
                    if !store.remove_user(&u)? {
                        return Err(CliError::Usage(format!("no such user: {u}")));
                    }
                    writeln!(out, "removed {u}")?;
                }
                UserCommand::List => {
                    for u in store.list_users()? {
                        writeln!(out, "{u}")?;
                    }
                }
            }
            Ok(())
        }
        Command::DnsRecords { deployment } => {
            let text = std::fs::read_to_string(&deployment).map_err(|e| {
                CliError::Usage(format!("cannot read {}: {e}", deployment.display()))
            })?;
            let d = fedgate_srv::Deployment::from_toml_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", deployment.display())))?;
            write!(out, "{}", d.zone_fragment())?;
            Ok(())
        }
    }
}

fn user_address(v: &ValidatedConfig, user: &str) -> Result<UserAddress, CliError> {
    let first = v
        .local_domains
        .first()
        .ok_or_else(|| CliError::Usage("no hosted domain".into()))?;
    let u = if user.contains('@') {
        UserAddress::new(user)
    } else {
        UserAddress::from_parts(user, first)
    }
    .map_err(|e| CliError::Usage(format!("user {user:?}: {e}")))?;
    if !v.local_domains.contains(u.domain()) {
        let list: Vec<&str> = v.local_domains.iter().map(Domain::as_str).collect();
        return Err(CliError::Usage(format!(
            "{} is not a hosted domain (node.domains: {})",
            u.domain(),
            list.join(", ")
        )));
    }
    Ok(u)
}

/// A few lines describing a validated configuration.
pub fn summary(v: &ValidatedConfig) -> String {
    let domains: Vec<&str> = v.local_domains.iter().map(Domain::as_str).collect();
    let mut s = format!(
        "node: {} (data in {})\ndomains: {}\n",
        v.name,
        v.data_dir.display(),
        domains.join(", ")
    );
    match &v.c2s {
        Some(c) => s += &format!("xmpp c2s: {} (require_tls: {})\n", c.listen, c.require_tls),
        None => s += "xmpp c2s: disabled\n",
    }
    match &v.s2s {
        Some(c) => s += &format!("xmpp s2s: {}\n", c.listen),
        None => s += "xmpp s2s: disabled\n",
    }
    for l in &v.sip.listeners {
        s += &format!("sip: {:?} {}\n", l.transport, l.addr);
    }
    for p in &v.peers {
        s += &format!("federated: {} ({:?})\n", p.domain, p.protocol);
    }
    s
}

fn random_password() -> Result<String, CliError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 14];
    crate::tls::provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| CliError::Usage("no randomness for the demo passwords".into()))?;
    Ok(b.iter()
        .map(|x| char::from(ALPHABET[usize::from(*x) % ALPHABET.len()]))
        .collect())
}

fn run(path: Option<&Path>, out: &mut dyn Write) -> Result<(), CliError> {
    let (cfg, embedded) = load_config(path)?;
    let v = cfg.validate()?;
    let tls = v.load_tls()?;
    if let Some(t) = &tls
        && t.generated
    {
        writeln!(
            out,
            "generated a self-signed certificate in {}",
            v.data_dir.join("tls").display()
        )?;
    }
    if embedded {
        let mut store = SqliteStore::open_with(&v.data_dir, v.store)?;
        if store.list_users()?.is_empty()
            && let Some(d) = v.local_domains.first()
        {
            for name in ["alice", "bob"] {
                let u =
                    UserAddress::from_parts(name, d).map_err(|e| CliError::Usage(e.to_string()))?;
                let pw = random_password()?;
                store.add_user(&u, &pw)?;
                writeln!(out, "demo user {u} password {pw}")?;
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let node = Node::start(&v, tls.as_ref()).await?;
        if let Some(a) = node.c2s_addr() {
            let domains: Vec<&str> = v.local_domains.iter().map(Domain::as_str).collect();
            writeln!(
                out,
                "XMPP clients connect to {a} (domain {}; STARTTLS{}); stop with ctrl-c",
                domains.join(", "),
                if tls.as_ref().is_some_and(|t| t.generated) || embedded {
                    ", self-signed certificate"
                } else {
                    ""
                }
            )?;
            out.flush()?;
        }
        if let Some(a) = node.s2s_addr() {
            let peers: Vec<&str> = v
                .peers
                .iter()
                .filter(|p| p.protocol == fedgate_policy::Protocol::Xmpp)
                .map(|p| p.domain.as_str())
                .collect();
            writeln!(
                out,
                "XMPP federation (s2s) listens on {a}; federated XMPP domains: {} (xmpp_mode {})",
                if peers.is_empty() {
                    "none configured".to_owned()
                } else {
                    peers.join(", ")
                },
                match v.federation.xmpp_mode() {
                    fedgate_policy::XmppMode::AllowAll => "allow-all",
                    fedgate_policy::XmppMode::AllowListed => "allow-listed",
                    fedgate_policy::XmppMode::DenyListed => "deny-listed",
                }
            )?;
            out.flush()?;
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok::<(), CliError>(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
