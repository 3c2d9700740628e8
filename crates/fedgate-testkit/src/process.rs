//! Child processes with bounded waits, killed (with their whole process group) on drop.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, io};

/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(50);

/// Grace period between SIGTERM and SIGKILL when a peer is dropped.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A long-running peer process: started in its own process group, stdout and
/// stderr appended to a log file, and killed (SIGTERM, then SIGKILL after a grace
/// period, to the whole group) when dropped.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl PeerProcess {
    /// Spawns `cmd` in a new process group with stdin closed and stdout/stderr
    /// going to `log` (created or appended).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("opening {}", log.display())))?;
        let err = out.try_clone().map_err(io("duplicating a log handle"))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {name} ({cmd:?})")))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// Wraps an already spawned child (which must lead its own process group).
    pub(crate) fn from_child(name: &str, child: Child, log: &Path) -> Self {
        Self {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// The peer's name, as used in diagnostics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id of the direct child (the process group id).
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file that receives the child's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Err(Error::Exited)` if the child has exited.
    pub fn check_running(&mut self, diagnostics: impl FnOnce() -> String) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Exited {
                peer: self.name.clone(),
                status: "already stopped".into(),
                diagnostics: diagnostics(),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                peer: self.name.clone(),
                status: status.to_string(),
                diagnostics: diagnostics(),
            }),
            Err(e) => Err(io(format!("polling {}", self.name))(e)),
        }
    }

    /// Waits (bounded) for the child to exit by itself; does not kill it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Invalid(format!("{} was already reaped", self.name)));
        };
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(io(format!("waiting for {}", self.name)))?
            {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} to exit", self.name),
                    timeout,
                    diagnostics: tail_file(&self.log, 30),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM to the process group, a bounded grace period, then SIGKILL.
    /// Idempotent.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + TERM_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(POLL),
            }
        }
        // Whatever is left in the group (grandchildren) goes too.
        signal_group(pgid, "KILL");
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd` to completion with stdin closed, killing its process group if it
/// takes longer than `timeout`. Returns the output whatever the exit status.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output> {
    use std::os::unix::process::CommandExt;
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(io(format!("starting {shown}")))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io(format!("waiting for {shown}")))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            signal_group(child.id(), "KILL");
            let _ = child.kill();
            let _ = child.wait();
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            return Err(Error::Timeout {
                what: shown,
                timeout,
                diagnostics: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                ),
            });
        }
        std::thread::sleep(POLL);
    };
    // A grandchild that kept the pipes open must not hang us: readers are
    // joined only after the group is gone.
    signal_group(child.id(), "KILL");
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run_bounded`], but a non-zero exit is an [`Error::Command`]; returns
/// stdout followed by stderr.
pub fn run_checked(cmd: Command, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout)?;
    let text = output_text(&out);
    if out.status.success() {
        Ok(text)
    } else {
        Err(Error::Command {
            command: shown,
            status: out.status.to_string(),
            output: text,
        })
    }
}

/// stdout followed by stderr, lossily decoded.
pub fn output_text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Polls until a TCP connection to `addr` succeeds, `alive` fails, or `timeout`
/// passes.
pub fn wait_for_tcp(
    addr: SocketAddr,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
    diagnostics: impl FnOnce() -> String,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{addr} to accept TCP connections"),
                timeout,
                diagnostics: diagnostics(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The last `lines` lines of a text file, or a note saying why there are none.
pub fn tail_file(path: &Path, lines: usize) -> String {
    let mut buf = Vec::new();
    match File::open(path).and_then(|mut f| f.read_to_end(&mut buf)) {
        Ok(_) => {
            let text = String::from_utf8_lossy(&buf);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            format!(
                "--- last {} lines of {} ---\n{}\n---",
                all.len() - start,
                path.display(),
                all[start..].join("\n")
            )
        }
        Err(e) => format!("--- {} unreadable: {e} ---", path.display()),
    }
}

/// `true` when this process runs as root (read from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Finds `binary` on `PATH` (or checks an absolute path).
pub fn which(binary: &str) -> Option<PathBuf> {
    let p = Path::new(binary);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|c| c.is_file())
}

/// A command that runs `program` as `user` (its uid and primary gid, no
/// supplementary groups, `USER`/`LOGNAME` set) when this process is root, and
/// as the current user otherwise. No `su`/`runuser` in between, so the child is
/// the program itself and is reaped by us.
/// Root and no such user is an error (the peer's package creates it).
pub fn command_as(user: &str, program: &str) -> Result<Command> {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    if is_root() {
        let (uid, gid) = lookup_user(user).ok_or_else(|| {
            Error::Invalid(format!(
                "no user {user:?} in /etc/passwd (is its package installed?)"
            ))
        })?;
        c.uid(uid).gid(gid).env("USER", user).env("LOGNAME", user);
    }
    Ok(c)
}

/// `(uid, gid)` of `user` from `/etc/passwd`.
pub fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// Recursively gives `path` to `user` (no-op unless root).
pub fn chown_to(user: &str, path: &Path) -> Result<()> {
    if !is_root() {
        return Ok(());
    }
    let mut cmd = Command::new("chown");
    cmd.arg("-R").arg(format!("{user}:")).arg(path);
    run_checked(cmd, Duration::from_secs(10)).map(drop)
}

/// A TCP and UDP port on `ip` that was free a moment ago (bind to port 0, read,
/// release). Racy by nature; good enough for loopback tests.
pub fn free_port(ip: std::net::Ipv4Addr) -> Result<u16> {
    for _ in 0..20 {
        let tcp = std::net::TcpListener::bind((ip, 0)).map_err(io("finding a free port"))?;
        let port = tcp.local_addr().map_err(io("finding a free port"))?.port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::Invalid(format!("no free TCP+UDP port on {ip}")))
}

/// Is there a TCP socket in LISTEN state on `addr` (IPv4, or the wildcard on its
/// port)? Read from `/proc/net/tcp`, so probing does not open a connection
/// (which a forwarding peer such as stunnel would pass on).
pub fn is_listening(addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else {
        return false;
    };
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let any = format!("00000000:{:04X}", v4.port());
    table.lines().skip(1).any(|l| {
        let mut w = l.split_whitespace();
        let local = w.nth(1).unwrap_or("");
        let state = w.nth(1).unwrap_or("");
        state == "0A" && (local == want || local == any)
    })
}

/// Polls [`is_listening`] until true, `alive` fails, or `timeout` passes.
pub fn wait_for_listen(
    addr: SocketAddr,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
    diagnostics: impl FnOnce() -> String,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if is_listening(addr) {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("{addr} to listen"),
                timeout,
                diagnostics: diagnostics(),
            });
        }
        std::thread::sleep(POLL);
    }
}
