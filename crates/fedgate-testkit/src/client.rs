//! An XMPP client (python3-slixmpp) scripted over a line protocol.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{Error, Result, io};
use crate::process::{PeerProcess, tail_file};

/// The driver script, written to the client's temp directory at run time.
pub const DRIVER_PY: &str = include_str!("xmpp_client.py");

/// Bound on login (c2s connect, STARTTLS, SASL, bind, roster).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The Python interpreter: `$FEDGATE_PYTHON`, else Debian's `/usr/bin/python3`
/// (where `python3-slixmpp` lives, whatever `python3` on `PATH` is).
pub fn python() -> String {
    std::env::var("FEDGATE_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

/// A logged-in slixmpp client, driven by lines on its stdin, reporting events
/// as lines on its stdout. Killed on drop.
///
/// Commands ([`send_line`](Self::send_line)): `send <jid> <body>`,
/// `presence <show|available|unavailable> [status]` (show: `away chat dnd xa`),
/// `subscribe <jid>`, `approve <jid>`, `deny <jid>`, `roster`,
/// `chatstate <jid> <composing|paused|active|inactive|gone>` (XEP-0085),
/// `block <jid>...`, `unblock [<jid>...]` (XEP-0191; `unblock` alone: the whole list),
/// `jabber <busy|idle> [status]` (presence as a Jabber-style client announces Busy or
/// Idle: `dnd` / `away` with fedgate's `urn:fedgate:presence:jabber-state:0` `<state/>`
/// element), `quit`. Each
/// is acknowledged with `ok <command>` (or `cmderror command=… reason=…`).
///
/// Events ([`expect`](Self::expect)):
/// `message from=… type=… [chatstate=…] body=…` (also for a chat state without a
/// body), `presence from=… type=… show=… status=…`,
/// `subscribe from=…`, `error from=… condition=… [text=…]`, roster lines
/// `roster jid=… subscription=… ask=…` and `roster end`. `body`, `status` and
/// `text` run to the end of the line (newlines escaped as `\n`); read fields
/// with [`field`].
#[derive(Debug)]
pub struct XmppClient {
    jid: String,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pending: VecDeque<String>,
    history: Vec<String>,
    stderr_log: PathBuf,
    process: PeerProcess,
    _dir: TempDir,
}

impl XmppClient {
    /// Starts the driver, logs `jid` in at `server_ip:5222` (certificate checks
    /// off, STARTTLS when offered) and waits (bounded) for `ready`.
    pub fn connect(jid: &str, password: &str, server_ip: Ipv4Addr) -> Result<Self> {
        Self::connect_port(jid, password, server_ip, 5222)
    }

    /// [`connect`](Self::connect) to another port.
    pub fn connect_port(jid: &str, password: &str, server_ip: Ipv4Addr, port: u16) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let py = python();
        crate::require_binaries(&[py.as_str()])?;
        if !jid.contains('@') || jid.contains(char::is_whitespace) {
            return Err(Error::Invalid(format!("not a bare/full user JID: {jid:?}")));
        }
        let dir = crate::peer_dir("xmpp-client")?;
        let script = dir.path().join("xmpp_client.py");
        std::fs::write(&script, DRIVER_PY).map_err(io("writing xmpp_client.py"))?;
        let stderr_log = dir.path().join("client.log");
        let err = std::fs::File::create(&stderr_log).map_err(io("creating client.log"))?;
        let mut cmd = Command::new(&py);
        cmd.arg(&script)
            .args([jid, password, &server_ip.to_string(), &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .process_group(0);
        let mut child = cmd.spawn().map_err(io("starting the slixmpp driver"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let process = PeerProcess::from_child(&format!("xmpp client {jid}"), child, &stderr_log);
        let mut this = Self {
            jid: jid.to_owned(),
            stdin,
            lines,
            pending: VecDeque::new(),
            history: Vec::new(),
            stderr_log,
            process,
            _dir: dir,
        };
        this.expect(|l| l.starts_with("ready "), LOGIN_TIMEOUT)?;
        Ok(this)
    }

    /// The JID it logged in as.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Sends one command line (without the newline).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        if line.contains('\n') {
            return Err(Error::Invalid("a command is one line".into()));
        }
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| Error::Invalid("client already quit".into()))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(io(format!("writing to the client of {}", self.jid)))
    }

    /// Sends a command and waits for its `ok <word>` acknowledgement.
    pub fn command(&mut self, line: &str, timeout: Duration) -> Result<()> {
        self.send_line(line)?;
        let word = line.split_whitespace().next().unwrap_or("");
        let ok = format!("ok {word}");
        let bad = format!("cmderror command={word} ");
        let got = self.expect(|l| l == ok || l.starts_with(&bad), timeout)?;
        if got.starts_with("cmderror") {
            Err(Error::Command {
                command: line.into(),
                status: "rejected by the driver".into(),
                output: got,
            })
        } else {
            Ok(())
        }
    }

    /// Waits (at most `timeout`) for the first event line, received earlier or
    /// later, that satisfies `predicate`; returns it and forgets it. Lines that
    /// do not match stay available to later calls. A `fatal` line or the
    /// driver's exit ends the wait with an error carrying the driver's log.
    pub fn expect(
        &mut self,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        if let Some(i) = self.pending.iter().position(|l| predicate(l)) {
            return Ok(self.pending.remove(i).unwrap_or_default());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.history.push(line.clone());
                    if predicate(&line) {
                        return Ok(line);
                    }
                    if line.starts_with("fatal ") {
                        return Err(Error::Exited {
                            peer: format!("xmpp client {}", self.jid),
                            status: line,
                            diagnostics: self.diagnostics(),
                        });
                    }
                    self.pending.push_back(line);
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout {
                        what: format!("an expected event at the client of {}", self.jid),
                        timeout,
                        diagnostics: self.diagnostics(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Exited {
                        peer: format!("xmpp client {}", self.jid),
                        status: "stdout closed".into(),
                        diagnostics: self.diagnostics(),
                    });
                }
            }
        }
    }

    /// Every line received so far, in order.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// The last event lines and the tail of the driver's stderr.
    pub fn diagnostics(&self) -> String {
        let start = self.history.len().saturating_sub(20);
        format!(
            "--- last events of the client {} ---\n{}\n{}",
            self.jid,
            self.history[start..].join("\n"),
            tail_file(&self.stderr_log, 30)
        )
    }

    /// Sends `quit` and waits (bounded) for the driver to exit; killed otherwise.
    pub fn quit(mut self) {
        let _ = self.send_line("quit");
        self.stdin = None;
        let _ = self.process.wait_exit(Duration::from_secs(3));
    }
}

/// The value of `key` in an event line: for `body`, `status` and `text` the
/// rest of the line (unescaped), for other keys up to the next space.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    if matches!(key, "body" | "status" | "text") {
        let mut s = String::with_capacity(rest.len());
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    Some(o) => s.push(o),
                    None => s.push('\\'),
                }
            } else {
                s.push(c);
            }
        }
        Some(s)
    } else {
        Some(rest.split(' ').next().unwrap_or("").to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_of_event_lines() {
        let l = "message from=bob@b.test/r type=chat body=hi there x=1\\nnext";
        assert_eq!(field(l, "from").as_deref(), Some("bob@b.test/r"));
        assert_eq!(field(l, "type").as_deref(), Some("chat"));
        assert_eq!(field(l, "body").as_deref(), Some("hi there x=1\nnext"));
        assert_eq!(field(l, "show"), None);
        let p = "presence from=b@b.test/r type=available show=away status=";
        assert_eq!(field(p, "show").as_deref(), Some("away"));
        assert_eq!(field(p, "status").as_deref(), Some(""));
    }
}
