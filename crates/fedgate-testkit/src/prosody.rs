//! One Prosody 0.12 process per domain, on its own loopback address.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Error, Result, io};
use crate::lease::IpLease;
use crate::process::{PeerProcess, chown_to, command_as, run_bounded, tail_file, wait_for_listen};

/// Bound on starting Prosody (it listens after ~0.1 s here).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one `prosodyctl` call (a ping includes a full s2s negotiation).
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether Prosody insists on TLS for server-to-server streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum S2sEncryption {
    /// `s2s_require_encryption = false`: STARTTLS when offered, plaintext allowed.
    #[default]
    Optional,
    /// `s2s_require_encryption = true` (Prosody's own default): STARTTLS always,
    /// even if the peer does not offer it.
    Required,
}

/// Options for [`Prosody::start_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProsodyOptions {
    /// s2s TLS policy (default: optional).
    pub s2s_encryption: S2sEncryption,
    /// `s2s_timeout`, seconds an unauthenticated s2s stream may take (default 10).
    pub s2s_timeout_secs: u32,
    /// Log at `debug` (every stanza) instead of `info`.
    pub debug_log: bool,
}

impl Default for ProsodyOptions {
    fn default() -> Self {
        Self {
            s2s_encryption: S2sEncryption::Optional,
            s2s_timeout_secs: 10,
            debug_log: false,
        }
    }
}

/// A running Prosody serving one `VirtualHost` on `ip:5222` (c2s) and
/// `ip:5269` (s2s). Killed, and its directory removed, on drop.
#[derive(Debug)]
pub struct Prosody {
    domain: String,
    ip: Ipv4Addr,
    config: PathBuf,
    log: PathBuf,
    process: PeerProcess,
    // Field order = drop order: the process dies before the lease and directory go.
    _lease: IpLease,
    dir: TempDir,
}

impl Prosody {
    /// Starts Prosody for `domain` on `ip` with [`ProsodyOptions::default`].
    pub fn start(domain: &str, ip: Ipv4Addr) -> Result<Self> {
        Self::start_with(domain, ip, ProsodyOptions::default())
    }

    /// Starts Prosody for `domain` on `ip`: writes the config and a self-signed
    /// certificate to a fresh temp directory owned by the `prosody` user, runs
    /// `prosody -F` as that user, and waits (bounded) until c2s and s2s accept.
    pub fn start_with(domain: &str, ip: Ipv4Addr, opts: ProsodyOptions) -> Result<Self> {
        crate::require_binaries(&["prosody", "prosodyctl", "openssl"])?;
        crate::check_domain(domain)?;
        crate::hosts::ensure_hosts(&[(domain, ip)])?;
        let lease = IpLease::acquire(ip, crate::LEASE_TIMEOUT)?;
        let dir = crate::peer_dir(&format!("prosody-{domain}"))?;
        let base = dir.path();
        let certs = base.join("certs");
        let data = base.join("data");
        for d in [&certs, &data] {
            std::fs::create_dir(d).map_err(io(format!("creating {}", d.display())))?;
        }
        crate::cert::self_signed(&certs, domain)?;
        let log = base.join("prosody.log");
        let config = base.join("prosody.cfg.lua");
        std::fs::write(&config, config_text(domain, ip, base, &opts))
            .map_err(io("writing prosody.cfg.lua"))?;
        chown_to("prosody", base)?;

        let mut cmd = command_as("prosody", "prosody")?;
        cmd.arg("--config")
            .arg(&config)
            .arg("-F")
            .current_dir(base)
            .env("HOME", base);
        let process =
            PeerProcess::spawn(&format!("prosody {domain}"), cmd, &base.join("stdout.log"))?;
        let mut this = Self {
            domain: domain.to_owned(),
            ip,
            config,
            log,
            process,
            _lease: lease,
            dir,
        };
        let (log, out) = (this.log.clone(), this.process.log_path().to_owned());
        let diag = || format!("{}\n{}", tail_file(&log, 40), tail_file(&out, 10));
        for port in [5222, 5269] {
            let process = &mut this.process;
            wait_for_listen(
                SocketAddr::from((ip, port)),
                START_TIMEOUT,
                || process.check_running(diag),
                diag,
            )?;
        }
        // The admin shell's socket (for ping, s2s_show) appears with the module.
        let sock = this.dir.path().join("data").join("prosody.sock");
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while !sock.exists() {
            this.process.check_running(diag)?;
            if std::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{}", sock.display()),
                    timeout: START_TIMEOUT,
                    diagnostics: diag(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(this)
    }

    /// The served domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The loopback address it listens on.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// `ip:5222`.
    pub fn c2s_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, 5222))
    }

    /// `ip:5269`.
    pub fn s2s_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, 5269))
    }

    /// The instance's temp directory (config, certs, data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Prosody's own log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The tail of Prosody's log and of its stdout/stderr.
    pub fn diagnostics(&self) -> String {
        format!(
            "{}\n{}",
            tail_file(&self.log, 40),
            tail_file(self.process.log_path(), 10)
        )
    }

    /// Runs `prosodyctl --config <cfg> <args…>` as `prosody` (bounded); returns
    /// the output, whatever the exit status, with the status.
    pub fn ctl(&self, args: &[&str]) -> Result<(bool, String)> {
        let mut cmd = command_as("prosody", "prosodyctl")?;
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir())
            .env("HOME", self.dir());
        let out = run_bounded(cmd, CTL_TIMEOUT)?;
        Ok((out.status.success(), crate::process::output_text(&out)))
    }

    fn ctl_checked(&self, args: &[&str]) -> Result<String> {
        let (ok, output) = self.ctl(args)?;
        if ok {
            Ok(output)
        } else {
            Err(Error::Command {
                command: format!("prosodyctl {}", args.join(" ")),
                status: "non-zero exit".into(),
                output: format!("{output}\n{}", self.diagnostics()),
            })
        }
    }

    /// Creates the account `user@domain`.
    pub fn register(&self, user: &str, password: &str) -> Result<()> {
        self.ctl_checked(&["register", user, &self.domain, password])
            .map(drop)
    }

    /// Runs one admin-shell command (`prosodyctl shell "<command>"`).
    pub fn shell(&self, command: &str) -> Result<String> {
        self.ctl_checked(&["shell", command])
    }

    /// XEP-0199 ping from this server to `to_domain` over s2s
    /// (`xmpp:ping(...)` in the admin shell): negotiates the s2s stream if there
    /// is none. `Ok(output)` on `pong`, `Err` with the output otherwise.
    pub fn ping(&self, to_domain: &str) -> Result<String> {
        crate::check_domain(to_domain)?;
        let command = format!("xmpp:ping('{}', '{}')", self.domain, to_domain);
        let (ok, output) = self.ctl(&["shell", &command])?;
        if ok && output.contains("pong") {
            Ok(output)
        } else {
            Err(Error::Command {
                command: format!("prosodyctl shell \"{command}\""),
                status: if ok {
                    "no pong".into()
                } else {
                    "non-zero exit".into()
                },
                output: format!("{output}\n{}", self.diagnostics()),
            })
        }
    }

    /// The admin shell's `s2s:show()` table (direction, TLS, SASL, dialback of
    /// each s2s stream).
    pub fn s2s_show(&self) -> Result<String> {
        self.shell("s2s:show()")
    }

    /// Stops Prosody now (SIGTERM, then SIGKILL); also done on drop.
    pub fn stop(mut self) {
        self.process.kill();
    }
}

fn config_text(domain: &str, ip: Ipv4Addr, base: &Path, opts: &ProsodyOptions) -> String {
    let b = base.display();
    let level = if opts.debug_log { "debug" } else { "info" };
    let require = opts.s2s_encryption == S2sEncryption::Required;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"-- written by fedgate-testkit
pidfile = "{b}/prosody.pid"
data_path = "{b}/data"
log = {{ {level} = "{b}/prosody.log" }}
interfaces = {{ "{ip}" }}
c2s_ports = {{ 5222 }}
s2s_ports = {{ 5269 }}
c2s_direct_tls_ports = {{}}
s2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
http_ports = {{}}
https_ports = {{}}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "s2s_bidi"; "admin_shell" }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = {require}
s2s_secure_auth = false
s2s_timeout = {timeout}
use_ipv6 = false
unbound = {{ hoststxt = "/etc/hosts" }}
certificates = "{b}/certs"
VirtualHost "{domain}"
"#,
        timeout = opts.s2s_timeout_secs,
    );
    s
}
