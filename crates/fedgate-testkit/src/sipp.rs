//! SIPp (Debian `sip-tester`, built without TLS) as UAC or UAS, bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Error, Result, io};
use crate::process::{PeerProcess, run_bounded, tail_file, wait_for_listen};

/// Default `-timeout` (global, seconds) given to every SIPp run; bounds are
/// never left to SIPp's defaults (which are "forever").
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// A minimal UAC scenario: one OPTIONS, expect a 200.
pub const OPTIONS_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="fedgate options uac">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Accept: application/sdp
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="10000"/>
</scenario>
"#;

/// The matching UAS scenario: expect one OPTIONS, answer 200.
pub const OPTIONS_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="fedgate options uas">
  <recv request="OPTIONS" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Allow: OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// SIPp's `-t` transport (no TLS in Debian's build: front it with
/// [`crate::Stunnel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    /// `-t u1`: UDP, one socket.
    Udp,
    /// `-t t1`: TCP, one connection.
    Tcp,
}

impl SipTransport {
    fn flag(self) -> &'static str {
        match self {
            Self::Udp => "u1",
            Self::Tcp => "t1",
        }
    }
}

/// What one SIPp run did.
#[derive(Debug, Clone)]
pub struct SippResult {
    /// SIPp's exit code: 0 all calls succeeded, 1 some failed, 97 exit on
    /// internal command, 99 no call processed, 255/254 fatal (binding, …).
    pub exit_code: Option<i32>,
    /// `SuccessfulCall(C)` from the statistics file.
    pub successful_calls: u64,
    /// `FailedCall(C)` from the statistics file.
    pub failed_calls: u64,
    /// Tail of the screen, error and message logs.
    pub diagnostics: String,
}

impl SippResult {
    /// Exit code 0, at least one successful and no failed call.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && self.successful_calls > 0 && self.failed_calls == 0
    }
}

/// SIPp runner.
#[derive(Debug)]
pub struct Sipp;

/// A SIPp UAS running in the background (see [`Sipp::serve`]).
#[derive(Debug)]
pub struct SippServer {
    process: PeerProcess,
    dir: TempDir,
}

impl Sipp {
    /// Runs SIPp as a UAC against `target` and waits for it (bounded by
    /// `-timeout`, default [`DEFAULT_TIMEOUT_SECS`], plus a margin). `extra`
    /// is appended to the command line; `-m 1` and `-timeout …` are added
    /// unless `extra` has them.
    pub fn run(
        scenario: &Path,
        target: SocketAddr,
        transport: SipTransport,
        extra: &[&str],
    ) -> Result<SippResult> {
        crate::require_binaries(&["sipp"])?;
        let dir = crate::peer_dir("sipp-uac")?;
        let mut cmd = Command::new("sipp");
        cmd.arg(target.to_string());
        // SIPp's default local port is 5060 for every instance: pick a free one.
        if !extra.contains(&"-p") {
            let ip = match target.ip() {
                std::net::IpAddr::V4(v4) => v4,
                std::net::IpAddr::V6(_) => std::net::Ipv4Addr::LOCALHOST,
            };
            cmd.args(["-p", &crate::process::free_port(ip)?.to_string()]);
            if !extra.contains(&"-i") {
                cmd.args(["-i", &ip.to_string()]);
            }
        }
        let timeout = common_args(&mut cmd, scenario, transport, extra, dir.path());
        cmd.current_dir(dir.path());
        let out = run_bounded(cmd, timeout + Duration::from_secs(10))?;
        let mut diagnostics = crate::process::output_text(&out);
        diagnostics.truncate(4000);
        Ok(result(out.status.code(), dir.path(), diagnostics))
    }

    /// Starts SIPp as a UAS listening on `listen` (e.g. with [`OPTIONS_UAS`])
    /// and, for TCP, waits (bounded) until it accepts connections.
    pub fn serve(
        scenario: &Path,
        listen: SocketAddr,
        transport: SipTransport,
        extra: &[&str],
    ) -> Result<SippServer> {
        crate::require_binaries(&["sipp"])?;
        let dir = crate::peer_dir("sipp-uas")?;
        let mut cmd = Command::new("sipp");
        cmd.args([
            "-i",
            &listen.ip().to_string(),
            "-p",
            &listen.port().to_string(),
        ]);
        common_args(&mut cmd, scenario, transport, extra, dir.path());
        cmd.current_dir(dir.path());
        let mut process = PeerProcess::spawn("sipp uas", cmd, &dir.path().join("stdout.log"))?;
        if transport == SipTransport::Tcp {
            let d = dir.path().to_owned();
            let diag = || logs_tail(&d);
            let p = &mut process;
            wait_for_listen(
                listen,
                Duration::from_secs(10),
                || p.check_running(diag),
                diag,
            )?;
        } else {
            // No readiness probe for UDP without sending SIP: give it a moment.
            std::thread::sleep(Duration::from_millis(300));
            process.check_running(|| logs_tail(dir.path()))?;
        }
        Ok(SippServer { process, dir })
    }
}

impl SippServer {
    /// Waits (bounded) for the UAS to finish its `-m` calls and returns its result.
    pub fn wait(mut self, timeout: Duration) -> Result<SippResult> {
        match self.process.wait_exit(timeout) {
            Ok(status) => Ok(result(status.code(), self.dir.path(), String::new())),
            Err(Error::Timeout { what, timeout, .. }) => Err(Error::Timeout {
                what,
                timeout,
                diagnostics: logs_tail(self.dir.path()),
            }),
            Err(e) => Err(e),
        }
    }

    /// The UAS's working directory (logs, statistics).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes a scenario (e.g. [`OPTIONS_UAC`]) to `dir/name` and returns the path.
pub fn write_scenario(dir: &Path, name: &str, xml: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, xml).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

fn common_args(
    cmd: &mut Command,
    scenario: &Path,
    transport: SipTransport,
    extra: &[&str],
    dir: &Path,
) -> Duration {
    cmd.arg("-sf").arg(scenario);
    cmd.args([
        "-t",
        transport.flag(),
        "-nostdin",
        "-trace_stat",
        "-trace_screen",
    ]);
    cmd.args(["-trace_err", "-trace_msg"]);
    cmd.arg("-stf").arg(dir.join("stats.csv"));
    cmd.arg("-screen_file").arg(dir.join("screen.log"));
    cmd.arg("-error_file").arg(dir.join("errors.log"));
    cmd.arg("-message_file").arg(dir.join("messages.log"));
    if !extra.contains(&"-m") {
        cmd.args(["-m", "1"]);
    }
    let mut timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS.into());
    if let Some(i) = extra.iter().position(|a| *a == "-timeout") {
        if let Some(secs) = extra
            .get(i + 1)
            .and_then(|v| v.trim_end_matches('s').parse::<u64>().ok())
        {
            timeout = Duration::from_secs(secs);
        }
    } else {
        cmd.args([
            "-timeout",
            &format!("{DEFAULT_TIMEOUT_SECS}s"),
            "-timeout_error",
        ]);
    }
    cmd.args(extra);
    timeout
}

fn logs_tail(dir: &Path) -> String {
    ["screen.log", "errors.log", "messages.log", "stdout.log"]
        .iter()
        .map(|f| tail_file(&dir.join(f), 25))
        .collect::<Vec<_>>()
        .join("\n")
}

fn result(exit_code: Option<i32>, dir: &Path, output: String) -> SippResult {
    let stats = std::fs::read_to_string(dir.join("stats.csv")).unwrap_or_default();
    let (successful_calls, failed_calls) = parse_stats(&stats);
    SippResult {
        exit_code,
        successful_calls,
        failed_calls,
        diagnostics: format!("{output}\n{}", logs_tail(dir)),
    }
}

/// Cumulative successful and failed calls from the last row of a SIPp
/// `-trace_stat` CSV (`;`-separated, header row first).
fn parse_stats(csv: &str) -> (u64, u64) {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (0, 0);
    };
    let Some(last) = lines.next_back() else {
        return (0, 0);
    };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        cols.iter()
            .position(|c| c.trim() == name)
            .and_then(|i| vals.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_last_row_wins() {
        let csv = "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
                   x;0;0;0;0;\nx;1;1;0;2;\n";
        assert_eq!(super::parse_stats(csv), (1, 2));
        assert_eq!(super::parse_stats(""), (0, 0));
    }
}
