//! stunnel (Debian `stunnel4`) as a TLS client or server in front of a plain
//! TCP peer (SIPp has no TLS in Debian's build).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::cert::CertPair;
use crate::error::{Result, io};
use crate::process::{PeerProcess, tail_file, wait_for_listen};

/// A running stunnel, killed on drop.
#[derive(Debug)]
pub struct Stunnel {
    accept: SocketAddr,
    process: PeerProcess,
    dir: TempDir,
}

impl Stunnel {
    /// Accepts plain TCP on `accept` and forwards it over TLS to `connect`
    /// (no verification of the server's certificate); presents `cert` as a
    /// client certificate when given.
    pub fn client(
        accept: SocketAddr,
        connect: SocketAddr,
        cert: Option<&CertPair>,
    ) -> Result<Self> {
        Self::start(true, accept, connect, cert)
    }

    /// Accepts TLS on `accept` with `cert`, forwards plain TCP to `connect`.
    pub fn server(accept: SocketAddr, connect: SocketAddr, cert: &CertPair) -> Result<Self> {
        Self::start(false, accept, connect, Some(cert))
    }

    fn start(
        client: bool,
        accept: SocketAddr,
        connect: SocketAddr,
        cert: Option<&CertPair>,
    ) -> Result<Self> {
        let bin = if crate::process::which("stunnel4").is_some() {
            "stunnel4"
        } else {
            "stunnel"
        };
        crate::require_binaries(&[bin])?;
        let dir = crate::peer_dir("stunnel")?;
        let log = dir.path().join("stunnel.log");
        let mut conf = format!(
            "foreground = yes\npid =\ndebug = info\noutput = {}\n\n[fedgate]\nclient = {}\naccept = {accept}\nconnect = {connect}\n",
            log.display(),
            if client { "yes" } else { "no" },
        );
        if let Some(c) = cert {
            conf.push_str(&format!(
                "cert = {}\nkey = {}\n",
                c.cert.display(),
                c.key.display()
            ));
        }
        let path = dir.path().join("stunnel.conf");
        std::fs::write(&path, conf).map_err(io("writing stunnel.conf"))?;
        let mut cmd = Command::new(bin);
        cmd.arg(&path).current_dir(dir.path());
        let mut process = PeerProcess::spawn(
            &format!("stunnel {accept} -> {connect}"),
            cmd,
            &dir.path().join("stdout.log"),
        )?;
        let d = dir.path().to_owned();
        let diag = || diagnostics(&d);
        let p = &mut process;
        wait_for_listen(
            accept,
            Duration::from_secs(10),
            || p.check_running(diag),
            diag,
        )?;
        Ok(Self {
            accept,
            process,
            dir,
        })
    }

    /// Where it accepts connections.
    pub fn accept_addr(&self) -> SocketAddr {
        self.accept
    }

    /// Its log tail.
    pub fn diagnostics(&self) -> String {
        diagnostics(self.dir.path())
    }

    /// Stops it now (also done on drop).
    pub fn stop(mut self) {
        self.process.kill();
    }
}

fn diagnostics(dir: &Path) -> String {
    format!(
        "{}\n{}",
        tail_file(&dir.join("stunnel.log"), 30),
        tail_file(&dir.join("stdout.log"), 10)
    )
}
