//! # fedgate-testkit
//!
//! Dev-only support for fedgate's interop tests: starts **real peers** on
//! loopback, each in its own temp directory, with bounded waits, and kills them
//! (whole process group) when dropped.
//!
//! **What it starts, and how**
//! - [`Prosody`] (Debian `prosody` 0.12 + `lua-unbound`): one process per
//!   domain, `prosody -F` run as the `prosody` user (files `chown`ed to it),
//!   bound to its own `127.0.0.x:5222/5269`. Config: dialback + `s2s_bidi`,
//!   `s2s_secure_auth = false`, s2s encryption optional or required
//!   ([`S2sEncryption`]), `s2s_timeout = 10`, `unbound = { hoststxt =
//!   "/etc/hosts" }`, `admin_shell`, a self-signed certificate with SAN made by
//!   `openssl`. [`Prosody::register`], [`Prosody::ping`] (`prosodyctl shell
//!   "xmpp:ping(...)"`: a full s2s negotiation and XEP-0199 ping),
//!   [`Prosody::s2s_show`].
//! - [`Ejabberd`] (Debian `ejabberd` 23.01): `ejabberdctl --ctl-config <own>
//!   foreground` as the `ejabberd` user, with a unique Erlang node name, its own
//!   Mnesia spool, logs and cookie, explicit `ip:` on its listeners,
//!   `mod_s2s_dialback`, `s2s_use_starttls: optional` ([`StartTls`]),
//!   `s2s_max_retry_delay: 5`, `mod_admin_extra`. [`Ejabberd::register`],
//!   [`Ejabberd::send_message`], [`Ejabberd::stop`] (clean `ejabberdctl stop`;
//!   the last instance also runs `epmd -kill` if no Erlang node is registered).
//! - [`XmppClient`]: a python3-slixmpp client (script embedded with
//!   `include_str!`, written to a temp dir) scripted over a line protocol; see
//!   its docs for the commands and event lines.
//! - [`Sipp`] (`sip-tester`, no TLS in Debian's build) as UAC ([`Sipp::run`])
//!   or UAS ([`Sipp::serve`]), always with `-m` and `-timeout`; [`Stunnel`]
//!   (`stunnel4`) client or server to put TLS in front of it; [`Dnsmasq`] for
//!   SRV/A records, queried with `dig` ([`Dnsmasq::query`]).
//!
//! **Names** ([`hosts`]): the XMPP peers resolve each other through
//! `/etc/hosts`: `prosody-a.test` → 127.0.0.2, `ejabberd-c.test` → 127.0.0.3,
//! `prosody-b.test` → 127.0.0.4, `fedgate-a.test` → 127.0.0.10,
//! `fedgate-b.test` → 127.0.0.11, and `unreachable.test` → 127.0.0.99 (never
//! has a listener). [`hosts::ensure_test_hosts`] appends the
//! missing lines (idempotent); it must run **before** the first Prosody starts,
//! since Prosody reads the file once. Not root and a line missing ⇒
//! [`Error::HostsNotWritable`] (add the lines by hand).
//!
//! **Missing peers**: a test calls [`peers_or_skip`] first. If a binary is
//! missing it prints one `skipped: <binary> not installed` line to stderr and
//! returns `false` — unless `FEDGATE_REQUIRE_PEERS=1` (CI sets it), when it
//! panics so the test fails.
//!
//! **Examples as programs**: [`build_examples`] builds a package's examples from a
//! test into the test's own target directory and profile; [`wait_within`] waits for a
//! child with a bound.
//!
//! **Running the tests** (as root, peers installed, see `.ci/run`):
//! `cargo test -p fedgate-testkit`. The tests prove the harness against the
//! peers themselves: Prosody↔Prosody ping and message, Prosody↔ejabberd
//! messages both ways, a subscription with presence, a dnsmasq SRV answer, and
//! SIPp UAC→UAS over TCP and through a stunnel TLS pair.
//!
//! **Concurrency**: a server on `127.0.0.x` holds an [`IpLease`] (a lock file
//! under the temp dir, shared across processes, stale when its pid is gone), so
//! tests that use the same address wait for each other (bounded) instead of
//! failing on `EADDRINUSE`.
//!
//! **Known pitfalls** (research/xmpp.md §4)
//! - Prosody ignores `/etc/hosts` unless `unbound = { hoststxt = "/etc/hosts" }`
//!   (lua-unbound default is off), and reads it once at startup: names added
//!   later give `NXDomain in A lookup` until restart.
//! - Two VirtualHosts in one Prosody never use s2s between themselves: one
//!   process per domain.
//! - Debian's Prosody config sets `s2s_secure_auth = true`; with self-signed
//!   certificates it must be false so dialback is used.
//! - ejabberdctl's own cfg overrides `--config`: everything goes through
//!   `--ctl-config`. Mnesia refuses a spool made under another node name ("Node
//!   name mismatch"): fresh spool per node. Listeners without `ip:` bind `::`
//!   and collide with the other servers' 5222. Without `mod_s2s_dialback` a
//!   self-signed peer cannot authenticate. After one s2s failure ejabberd
//!   bounces everything for that domain for up to `s2s_max_retry_delay`
//!   (default 300 s). `ejabberdctl stop` leaves `epmd` running.
//! - ejabberd 23.01 offers SASL EXTERNAL to self-signed peers and then fails
//!   it; Prosody falls back to dialback on the same stream (`s2s:show()` shows
//!   SASL `Failed`, Dialback `Completed`).
//! - Prosody's *outgoing* connections come from 127.0.0.1 whatever its
//!   `interfaces`: never identify a peer by source address.
//! - Debian's `python3` may be shadowed on `PATH` (pyenv): the client runs
//!   `/usr/bin/python3` unless `FEDGATE_PYTHON` says otherwise.
//! - SIPp in Debian has no TLS: use [`Stunnel`]. Every SIPp UAC gets a free
//!   local port (SIPp's default is 5060 for every instance).
//! - slixmpp: `auto_authorize = False` makes it *reject* subscriptions by
//!   itself, and `presence["type"]` answers the `<show/>` value; the driver uses
//!   `None` and the raw attribute.
//! - Peers die with their owner's `Drop`. A test binary killed with SIGKILL
//!   leaves them running (own process groups): the next start then fails with
//!   "exited unexpectedly" and an "address in use" line in the log tail; kill
//!   the leftovers by pid (`ss -ltnp` shows them).
//!
//! **Privileges**: run as root (CI does). Prosody and ejabberd then run as
//! their own users; `/etc/hosts` is completed. As another user, `/etc/hosts`
//! must already hold the names, Prosody runs as that user, and ejabberd only
//! works for the `ejabberd` user itself (ejabberdctl refuses others).
//!
//! **What it does not do**: no fedgate code (fedgate's listeners are tested
//! against these peers by other crates); no IPv6; nothing but loopback.
//!
//! ```no_run
//! use fedgate_testkit::{Prosody, XmppClient, hosts, peers_or_skip};
//! use std::time::Duration;
//! # fn main() -> Result<(), fedgate_testkit::Error> {
//! if !peers_or_skip(&["prosody", "prosodyctl"]) { return Ok(()); }
//! hosts::ensure_test_hosts()?;
//! let (a, b) = (hosts::PROSODY_A, hosts::PROSODY_B);
//! let pa = Prosody::start(a.0, a.1)?;
//! let pb = Prosody::start(b.0, b.1)?;
//! pa.ping(pb.domain())?;
//! pb.register("bob", "pw")?;
//! let mut bob = XmppClient::connect("bob@prosody-b.test", "pw", b.1)?;
//! bob.expect(|l| l.starts_with("message "), Duration::from_secs(10))?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod cert;
mod client;
mod dnsmasq;
mod ejabberd;
mod error;
mod examples;
pub mod hosts;
mod lease;
pub mod process;
mod prosody;
mod sipp;
mod stunnel;

use std::time::Duration;

pub use cert::{CertPair, self_signed};
pub use client::{DRIVER_PY, XmppClient, field, python};
pub use dnsmasq::{DnsRecord, Dnsmasq};
pub use ejabberd::{Ejabberd, EjabberdOptions, StartTls};
pub use error::{Error, Result};
pub use examples::{build_examples, wait_within};
pub use lease::IpLease;
pub use prosody::{Prosody, ProsodyOptions, S2sEncryption};
pub use sipp::{
    DEFAULT_TIMEOUT_SECS, OPTIONS_UAC, OPTIONS_UAS, SipTransport, Sipp, SippResult, SippServer,
    write_scenario,
};
pub use stunnel::Stunnel;

/// The pseudo-binary name under which [`require_binaries`] checks that
/// [`python()`] can `import slixmpp`.
pub const SLIXMPP: &str = "python3-slixmpp";

/// The environment variable that turns a missing peer into a failure.
pub const REQUIRE_PEERS_ENV: &str = "FEDGATE_REQUIRE_PEERS";

/// How long a peer waits for another test to release its loopback address.
pub(crate) const LEASE_TIMEOUT: Duration = Duration::from_secs(120);

/// `Ok` if every binary is installed ([`SLIXMPP`] = the Python module),
/// `Err(Error::MissingBinary)` naming the first one that is not.
pub fn require_binaries(binaries: &[&str]) -> Result<()> {
    for b in binaries {
        let present = if *b == SLIXMPP {
            slixmpp_importable()
        } else {
            process::which(b).is_some()
        };
        if !present {
            return Err(Error::MissingBinary {
                binary: (*b).to_owned(),
            });
        }
    }
    Ok(())
}

fn slixmpp_importable() -> bool {
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", "import slixmpp"]);
    process::run_bounded(cmd, Duration::from_secs(20))
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// For tests: `true` when every binary is installed. Otherwise, with
/// `FEDGATE_REQUIRE_PEERS=1`, panics (the test fails); without it, prints
/// `skipped: <binary> not installed` to stderr and returns `false` (the test
/// should return).
pub fn peers_or_skip(binaries: &[&str]) -> bool {
    let required = std::env::var(REQUIRE_PEERS_ENV).is_ok_and(|v| v == "1");
    // Straight to fd 2: libtest captures `eprintln!` of passing tests.
    match peers_or_skip_with(required, binaries, &mut std::io::stderr()) {
        Ok(present) => present,
        Err(message) => panic!("{message}"),
    }
}

/// `Ok(present)`, or `Err(message)` when a peer is missing and required.
fn peers_or_skip_with(
    required: bool,
    binaries: &[&str],
    report: &mut dyn std::io::Write,
) -> Result<bool, String> {
    match require_binaries(binaries) {
        Ok(()) => Ok(true),
        Err(e) if required => Err(format!("{e} (and {REQUIRE_PEERS_ENV}=1)")),
        Err(e) => {
            let _ = writeln!(report, "skipped: {e}");
            Ok(false)
        }
    }
}

/// Domains and names go into config files and shell-like command lines.
pub(crate) fn check_domain(domain: &str) -> Result<()> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("domain {domain:?}")))
    }
}

/// A fresh `fedgate-<what>-XXXX` directory under the temp dir, mode 0755 so
/// that a peer running as another user can traverse it.
pub(crate) fn peer_dir(what: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("fedgate-{what}-"))
        .tempdir()
        .map_err(error::io("creating a temp dir"))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(error::io("chmod of a temp dir"))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn domains_that_could_break_a_config_are_refused() {
        assert!(super::check_domain("prosody-a.test").is_ok());
        for bad in ["", "a b", "a'b", "a\"b", "a\nb", "a;b"] {
            assert!(super::check_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_peer_skips_unless_required() {
        let mut said = Vec::new();
        assert_eq!(
            super::peers_or_skip_with(false, &["sh"], &mut said),
            Ok(true)
        );
        assert!(said.is_empty());
        let missing = ["fedgate-no-such-binary"];
        assert_eq!(
            super::peers_or_skip_with(false, &missing, &mut said),
            Ok(false)
        );
        assert_eq!(said, b"skipped: fedgate-no-such-binary not installed\n");
        let required = super::peers_or_skip_with(true, &missing, &mut Vec::new());
        assert_eq!(
            required,
            Err("fedgate-no-such-binary not installed (and FEDGATE_REQUIRE_PEERS=1)".into())
        );
    }

    #[test]
    fn a_missing_binary_is_named() {
        let e = super::require_binaries(&["sh", "fedgate-no-such-binary"]).unwrap_err();
        assert_eq!(e.to_string(), "fedgate-no-such-binary not installed");
    }
}
