//! Cross-process leases on a loopback address, so two tests (in one test binary
//! or in two) never start servers on the same `127.0.0.x:5222/5269` at once.
//!
//! A lease is a file `fedgate-testkit-leases/<ip>.lock` under the system temp
//! directory, created exclusively, holding the owner's pid. A lease whose owner
//! process is gone is stale and taken over.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io};

/// In-process registry: a file lease does not stop two threads of one process.
static HELD: Mutex<Vec<Ipv4Addr>> = Mutex::new(Vec::new());

/// Exclusive use of one loopback address, released on drop.
#[derive(Debug)]
pub struct IpLease {
    ip: Ipv4Addr,
    path: PathBuf,
}

impl IpLease {
    /// Waits (at most `timeout`) until `ip` is free, then takes it.
    pub fn acquire(ip: Ipv4Addr, timeout: Duration) -> Result<Self> {
        let dir = std::env::temp_dir().join("fedgate-testkit-leases");
        if !dir.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            // Shared by every user who runs the tests (sticky, like /tmp).
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        let path = dir.join(format!("{ip}.lock"));
        let deadline = Instant::now() + timeout;
        loop {
            if Self::try_take(ip, &path)? {
                return Ok(Self { ip, path });
            }
            if Instant::now() >= deadline {
                let owner = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(Error::Timeout {
                    what: format!("the lease on {ip}"),
                    timeout,
                    diagnostics: format!("{} is held by pid {}", path.display(), owner.trim()),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_take(ip: Ipv4Addr, path: &std::path::Path) -> Result<bool> {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.contains(&ip) {
            return Ok(false);
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut f) => {
                write!(f, "{}", std::process::id()).map_err(io("writing a lease"))?;
                held.push(ip);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(path).unwrap_or_default();
                let stale = match owner.trim().parse::<u32>() {
                    Ok(pid) => {
                        pid != std::process::id()
                            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    }
                    // Being written right now, or garbage: only garbage if old.
                    Err(_) => std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(5))
                        .unwrap_or(false),
                };
                if stale {
                    let _ = std::fs::remove_file(path);
                }
                Ok(false)
            }
            Err(e) => Err(io(format!("creating {}", path.display()))(e)),
        }
    }

    /// The leased address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for IpLease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|ip| *ip != self.ip);
    }
}
