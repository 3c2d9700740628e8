//! dnsmasq as a tiny authoritative DNS server for SRV/A records.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Error, Result, io};
use crate::process::{PeerProcess, run_checked, tail_file, wait_for_listen};

/// One record dnsmasq should serve.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsRecord {
    /// `name A ip`.
    A {
        /// Owner name.
        name: String,
        /// Address.
        ip: Ipv4Addr,
    },
    /// `name SRV priority weight port target` (e.g. `_xmpp-server._tcp.x.test`).
    Srv {
        /// Owner name, `_service._proto.domain`.
        name: String,
        /// Target host.
        target: String,
        /// Port.
        port: u16,
        /// Priority (lower first).
        priority: u16,
        /// Weight within a priority.
        weight: u16,
    },
    /// `name SRV 0 0 1 .`: "service decidedly not available" (RFC 2782).
    NoService {
        /// Owner name.
        name: String,
    },
}

impl DnsRecord {
    /// `DnsRecord::A`.
    pub fn a(name: &str, ip: Ipv4Addr) -> Self {
        Self::A {
            name: name.into(),
            ip,
        }
    }

    /// `DnsRecord::Srv`.
    pub fn srv(name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Self {
        Self::Srv {
            name: name.into(),
            target: target.into(),
            port,
            priority,
            weight,
        }
    }

    fn config_line(&self) -> String {
        match self {
            // NB dnsmasq's order is port, priority, weight (BIND's is priority weight port).
            Self::Srv {
                name,
                target,
                port,
                priority,
                weight,
            } => format!("srv-host={name},{target},{port},{priority},{weight}"),
            Self::NoService { name } => format!("srv-host={name}"),
            Self::A { name, ip } => format!("host-record={name},{ip}"),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::A { name, .. } | Self::Srv { name, .. } | Self::NoService { name } => name,
        }
    }
}

/// A running dnsmasq answering only the given records (no upstream, no
/// `/etc/hosts`, TTL 30 s, NXDOMAIN for other names in the records' zones).
/// Killed on drop. dnsmasq cannot change SRV records while running: restart it.
#[derive(Debug)]
pub struct Dnsmasq {
    addr: SocketAddr,
    process: PeerProcess,
    dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on `ip:port` (UDP and TCP) serving `records`, waits
    /// (bounded) until it listens.
    pub fn start(ip: Ipv4Addr, port: u16, records: &[DnsRecord]) -> Result<Self> {
        crate::require_binaries(&["dnsmasq"])?;
        for r in records {
            let n = r.name();
            if n.is_empty() || n.contains([',', ' ', '\n', '/']) {
                return Err(Error::Invalid(format!("DNS name {n:?}")));
            }
        }
        let dir = crate::peer_dir("dnsmasq")?;
        let mut conf = format!(
            "port={port}\nlisten-address={ip}\nbind-interfaces\nno-resolv\nno-hosts\nno-poll\n\
             local-ttl=30\nlog-queries\nlog-facility=-\npid-file=\n"
        );
        if crate::process::is_root() {
            // Stay root: the default ("nobody"/"dnsmasq") may not exist.
            conf.push_str("user=root\n");
        }
        let mut zones: Vec<String> = records
            .iter()
            .filter_map(|r| {
                let name = r.name().trim_start_matches('_');
                // zone = the last two labels (`x.test`)
                let labels: Vec<&str> = name.split('.').collect();
                (labels.len() >= 2).then(|| labels[labels.len() - 2..].join("."))
            })
            .collect();
        zones.sort();
        zones.dedup();
        for z in zones {
            let _ = writeln!(conf, "local=/{z}/");
        }
        for r in records {
            let _ = writeln!(conf, "{}", r.config_line());
        }
        let path = dir.path().join("dnsmasq.conf");
        std::fs::write(&path, conf).map_err(io("writing dnsmasq.conf"))?;
        let mut cmd = Command::new("dnsmasq");
        cmd.arg(format!("--conf-file={}", path.display()))
            .arg("--keep-in-foreground")
            .current_dir(dir.path());
        let addr = SocketAddr::from((ip, port));
        let log = dir.path().join("dnsmasq.log");
        let mut process = PeerProcess::spawn("dnsmasq", cmd, &log)?;
        let diag = || tail_file(&log, 30);
        let p = &mut process;
        wait_for_listen(
            addr,
            Duration::from_secs(10),
            || p.check_running(diag),
            diag,
        )?;
        Ok(Self { addr, process, dir })
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `dig +short` for `name`/`rtype` against this server (needs `dig`, from
    /// `bind9-dnsutils`); returns the answer lines.
    pub fn query(&self, name: &str, rtype: &str) -> Result<String> {
        crate::require_binaries(&["dig"])?;
        let mut cmd = Command::new("dig");
        cmd.arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string()])
            .args(["+short", "+time=2", "+tries=1", rtype, name]);
        run_checked(cmd, Duration::from_secs(10))
    }

    /// The query log and errors.
    pub fn diagnostics(&self) -> String {
        tail_file(self.process.log_path(), 30)
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
