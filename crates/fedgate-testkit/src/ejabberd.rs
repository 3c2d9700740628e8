//! A private ejabberd 23.01 instance per domain, on its own loopback address.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Error, Result, io};
use crate::lease::IpLease;
use crate::process::{
    PeerProcess, chown_to, command_as, run_bounded, run_checked, tail_file, wait_for_listen,
};

/// Bound on starting ejabberd (≈1.5 s here; Erlang boot can be slow on CI).
const START_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound on one `ejabberdctl` call (each boots a small Erlang node: ≈0.7 s).
const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a clean stop before the process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Live instances in this process; the last one to stop kills `epmd`.
static LIVE: Mutex<u32> = Mutex::new(0);
/// Makes node names unique within this process.
static SERIAL: AtomicU32 = AtomicU32::new(0);

/// ejabberd's `s2s_use_starttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartTls {
    /// `false`: never offer or use STARTTLS on s2s.
    Off,
    /// `optional`: offer and use it, do not insist.
    #[default]
    Optional,
    /// `required`: insist on it.
    Required,
}

impl StartTls {
    fn yaml(self) -> &'static str {
        match self {
            Self::Off => "false",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// Options for [`Ejabberd::start_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EjabberdOptions {
    /// `s2s_use_starttls` (default optional).
    pub s2s_use_starttls: StartTls,
    /// `s2s_max_retry_delay` in seconds (default 5; ejabberd's own is 300, i.e.
    /// five minutes of bouncing everything for a domain after one failure).
    pub s2s_max_retry_delay_secs: u32,
    /// `loglevel: debug` instead of `info`.
    pub debug_log: bool,
}

impl Default for EjabberdOptions {
    fn default() -> Self {
        Self {
            s2s_use_starttls: StartTls::Optional,
            s2s_max_retry_delay_secs: 5,
            debug_log: false,
        }
    }
}

/// A running ejabberd node (`ejabberdctl foreground`, as the `ejabberd` user)
/// with its own Erlang node name, Mnesia spool, logs and ctl config, serving
/// one domain on `ip:5222` and `ip:5269`. Stopped cleanly on [`stop`](Self::stop)
/// or drop (process group killed if that does not finish in time).
#[derive(Debug)]
pub struct Ejabberd {
    domain: String,
    ip: Ipv4Addr,
    ctl_config: PathBuf,
    log: PathBuf,
    process: PeerProcess,
    stopped: bool,
    _lease: IpLease,
    dir: TempDir,
}

impl Ejabberd {
    /// Starts ejabberd for `domain` on `ip` with [`EjabberdOptions::default`].
    pub fn start(domain: &str, ip: Ipv4Addr) -> Result<Self> {
        Self::start_with(domain, ip, EjabberdOptions::default())
    }

    /// Starts ejabberd for `domain` on `ip` and waits (bounded) for c2s and s2s.
    pub fn start_with(domain: &str, ip: Ipv4Addr, opts: EjabberdOptions) -> Result<Self> {
        crate::require_binaries(&["ejabberdctl", "erl", "epmd", "openssl"])?;
        crate::check_domain(domain)?;
        crate::hosts::ensure_hosts(&[(domain, ip)])?;
        let lease = IpLease::acquire(ip, crate::LEASE_TIMEOUT)?;
        let dir = crate::peer_dir(&format!("ejabberd-{domain}"))?;
        let base = dir.path();
        let (spool, logs) = (base.join("spool"), base.join("logs"));
        for d in [&spool, &logs] {
            std::fs::create_dir(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let pair = crate::cert::self_signed(base, domain)?;
        let mut pem = std::fs::read(&pair.cert).map_err(io("reading the certificate"))?;
        pem.extend(std::fs::read(&pair.key).map_err(io("reading the key"))?);
        let pem_path = base.join("server.pem");
        std::fs::write(&pem_path, pem).map_err(io("writing server.pem"))?;

        let node = format!(
            "fgtk{}x{}@localhost",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let yml = base.join("ejabberd.yml");
        std::fs::write(&yml, config_yaml(domain, ip, &pem_path, &opts))
            .map_err(io("writing ejabberd.yml"))?;
        let ctl_config = base.join("ejabberdctl.cfg");
        std::fs::write(&ctl_config, ctl_cfg(&node, base)).map_err(io("writing ejabberdctl.cfg"))?;
        chown_to("ejabberd", base)?;

        let mut cmd = command_as("ejabberd", &ejabberdctl())?;
        cmd.arg("--ctl-config")
            .arg(&ctl_config)
            .arg("foreground")
            .current_dir(base)
            .env("HOME", base);
        let process =
            PeerProcess::spawn(&format!("ejabberd {domain}"), cmd, &base.join("stdout.log"))?;
        *LIVE.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let mut this = Self {
            domain: domain.to_owned(),
            ip,
            ctl_config,
            log: logs.join("ejabberd.log"),
            process,
            stopped: false,
            _lease: lease,
            dir,
        };
        let (log, out) = (this.log.clone(), this.process.log_path().to_owned());
        let diag = || format!("{}\n{}", tail_file(&log, 40), tail_file(&out, 20));
        for port in [5222, 5269] {
            let process = &mut this.process;
            wait_for_listen(
                SocketAddr::from((ip, port)),
                START_TIMEOUT,
                || process.check_running(diag),
                diag,
            )?;
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

    /// The instance's temp directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// ejabberd's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The tail of ejabberd's log and of its stdout/stderr.
    pub fn diagnostics(&self) -> String {
        format!(
            "{}\n{}",
            tail_file(&self.log, 40),
            tail_file(self.process.log_path(), 20)
        )
    }

    /// Runs `ejabberdctl --ctl-config <cfg> <args…>` (bounded, as `ejabberd`).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = command_as("ejabberd", &ejabberdctl())?;
        cmd.arg("--ctl-config")
            .arg(&self.ctl_config)
            .args(args)
            .current_dir(self.dir())
            .env("HOME", self.dir());
        run_checked(cmd, CTL_TIMEOUT).map_err(|e| match e {
            Error::Command {
                command,
                status,
                output,
            } => Error::Command {
                command,
                status,
                output: format!("{output}\n{}", self.diagnostics()),
            },
            other => other,
        })
    }

    /// Creates the account `user@domain`.
    pub fn register(&self, user: &str, password: &str) -> Result<()> {
        self.ctl(&["register", user, &self.domain, password])
            .map(drop)
    }

    /// Sends a `type='chat'` message from `from` (any JID this server serves)
    /// to `to` (local or remote) through `mod_admin_extra`'s `send_message`.
    /// `Ok` means accepted for routing, not delivered.
    pub fn send_message(&self, from: &str, to: &str, body: &str) -> Result<()> {
        self.ctl(&["send_message", "chat", from, to, "", body])
            .map(drop)
    }

    /// Stops the node cleanly (`ejabberdctl stop`, bounded), then makes sure
    /// the process group is gone; the last instance of this process to stop
    /// also stops `epmd` if no other Erlang node is registered with it.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let clean = self
            .ctl(&["stop"])
            .and_then(|_| self.process.wait_exit(STOP_TIMEOUT).map(drop));
        self.process.kill();
        let last = {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            *live = live.saturating_sub(1);
            *live == 0
        };
        if last {
            stop_idle_epmd();
        }
        clean
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// `epmd -kill`, but only if no node is registered (so another engineer's or
/// test's Erlang node is never disturbed; epmd itself refuses too).
fn stop_idle_epmd() {
    let names = |_: ()| {
        let mut cmd = Command::new("epmd");
        cmd.arg("-names");
        run_bounded(cmd, Duration::from_secs(5))
            .map(|o| crate::process::output_text(&o))
            .unwrap_or_default()
    };
    // A node's registration disappears when its connection to epmd closes,
    // which can lag its exit by a moment.
    for _ in 0..20 {
        let listing = names(());
        if listing.contains("not running") || listing.is_empty() {
            return;
        }
        if !listing.lines().any(|l| l.starts_with("name ")) {
            let mut cmd = Command::new("epmd");
            cmd.arg("-kill");
            let _ = run_bounded(cmd, Duration::from_secs(5));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ejabberdctl() -> String {
    crate::process::which("ejabberdctl")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "ejabberdctl".into())
}

fn ctl_cfg(node: &str, base: &Path) -> String {
    let b = base.display();
    format!(
        r#"# written by fedgate-testkit; sourced by ejabberdctl
ERLANG_NODE={node}
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie fedgatetestkit"
ERL_EPMD_ADDRESS=127.0.0.1
INET_DIST_INTERFACE=127.0.0.1
EJABBERD_CONFIG_PATH={b}/ejabberd.yml
EJABBERD_PID_PATH={b}/ejabberd.pid
CONTRIB_MODULES_PATH={b}/contrib
CONTRIB_MODULES_CONF_DIR={b}/modules.d
SPOOL_DIR={b}/spool
LOGS_DIR={b}/logs
"#
    )
}

fn config_yaml(domain: &str, ip: Ipv4Addr, pem: &Path, opts: &EjabberdOptions) -> String {
    let level = if opts.debug_log { "debug" } else { "info" };
    format!(
        r#"# written by fedgate-testkit
hosts:
  - {domain}
loglevel: {level}
certfiles:
  - "{pem}"
listen:
  - port: 5222
    ip: "{ip}"
    module: ejabberd_c2s
    starttls: true
  - port: 5269
    ip: "{ip}"
    module: ejabberd_s2s_in
s2s_use_starttls: {starttls}
s2s_max_retry_delay: {retry}
s2s_dns_timeout: 2
s2s_dns_retries: 1
outgoing_s2s_families: [ipv4]
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  s2s:
    allow: all
auth_method: internal
auth_password_format: plain
modules:
  mod_admin_extra: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_offline: {{}}
  mod_s2s_dialback: {{}}
"#,
        pem = pem.display(),
        starttls = opts.s2s_use_starttls.yaml(),
        retry = opts.s2s_max_retry_delay_secs,
    )
}
