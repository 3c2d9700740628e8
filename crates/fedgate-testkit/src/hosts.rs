//! The `/etc/hosts` names the interop tests use.
//!
//! Prosody resolves peer domains through libunbound with
//! `unbound = { hoststxt = "/etc/hosts" }` and reads the file **once, at
//! startup**: call [`ensure_hosts`] before the first [`crate::Prosody::start`]
//! (the `start` functions do it for their own name, but a peer must also know the
//! names of the *other* peers, hence [`ensure_test_hosts`]).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result, io};

/// Prosody instance "A".
pub const PROSODY_A: (&str, Ipv4Addr) = ("prosody-a.test", Ipv4Addr::new(127, 0, 0, 2));
/// ejabberd instance "C".
pub const EJABBERD_C: (&str, Ipv4Addr) = ("ejabberd-c.test", Ipv4Addr::new(127, 0, 0, 3));
/// Prosody instance "B".
pub const PROSODY_B: (&str, Ipv4Addr) = ("prosody-b.test", Ipv4Addr::new(127, 0, 0, 4));
/// fedgate node "A" (for later rounds).
pub const FEDGATE_A: (&str, Ipv4Addr) = ("fedgate-a.test", Ipv4Addr::new(127, 0, 0, 10));
/// fedgate node "B" (for later rounds).
pub const FEDGATE_B: (&str, Ipv4Addr) = ("fedgate-b.test", Ipv4Addr::new(127, 0, 0, 11));

/// A name whose address never has a listener: for "peer down" cases.
pub const UNREACHABLE: (&str, Ipv4Addr) = ("unreachable.test", Ipv4Addr::new(127, 0, 0, 99));

/// All names the test kit's users rely on.
pub const TEST_HOSTS: [(&str, Ipv4Addr); 6] = [
    PROSODY_A,
    EJABBERD_C,
    PROSODY_B,
    FEDGATE_A,
    FEDGATE_B,
    UNREACHABLE,
];

static HOSTS_LOCK: Mutex<()> = Mutex::new(());

/// Ensures `/etc/hosts` maps every name in [`TEST_HOSTS`].
pub fn ensure_test_hosts() -> Result<()> {
    ensure_hosts(&TEST_HOSTS)
}

/// Ensures `/etc/hosts` maps each `(name, ip)`; appends only the missing lines.
/// When a line is missing and this process is not root, returns
/// [`Error::HostsNotWritable`] listing them.
pub fn ensure_hosts(entries: &[(&str, Ipv4Addr)]) -> Result<()> {
    ensure_hosts_in(Path::new("/etc/hosts"), entries, crate::process::is_root())
}

/// [`ensure_hosts`] against any file (for tests of this function).
pub fn ensure_hosts_in(path: &Path, entries: &[(&str, Ipv4Addr)], may_write: bool) -> Result<()> {
    let _guard = HOSTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    let missing: Vec<String> = entries
        .iter()
        .filter(|(name, ip)| !maps(&text, name, *ip))
        .map(|(name, ip)| format!("{ip} {name}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !may_write {
        return Err(Error::HostsNotWritable { missing });
    }
    let mut add = String::new();
    if !text.is_empty() && !text.ends_with('\n') {
        add.push('\n');
    }
    for line in &missing {
        add.push_str(line);
        add.push_str("  # fedgate-testkit\n");
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(io(format!("opening {} for append", path.display())))?;
    f.write_all(add.as_bytes())
        .map_err(io(format!("appending to {}", path.display())))
}

/// Does some non-comment line of `text` map `name` to `ip`?
fn maps(text: &str, name: &str, ip: Ipv4Addr) -> bool {
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        words.next().and_then(|w| w.parse::<Ipv4Addr>().ok()) == Some(ip)
            && words.any(|w| w.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_only_missing_lines_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n127.0.0.2 prosody-a.test\n").unwrap();
        let want = [PROSODY_A, EJABBERD_C];
        ensure_hosts_in(&path, &want, true).unwrap();
        ensure_hosts_in(&path, &want, true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("prosody-a.test").count(), 1, "{text}");
        assert_eq!(
            text.matches("127.0.0.3 ejabberd-c.test").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn wrong_ip_or_comment_does_not_count() {
        assert!(!maps(
            "127.0.0.9 prosody-a.test\n",
            "prosody-a.test",
            PROSODY_A.1
        ));
        assert!(!maps(
            "# 127.0.0.2 prosody-a.test\n",
            "prosody-a.test",
            PROSODY_A.1
        ));
        assert!(maps(
            "127.0.0.2 x prosody-a.test # c\n",
            "prosody-a.test",
            PROSODY_A.1
        ));
    }

    #[test]
    fn missing_without_permission_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost").unwrap();
        let err = ensure_hosts_in(&path, &[FEDGATE_A], false).unwrap_err();
        assert!(
            err.to_string().contains("127.0.0.10 fedgate-a.test"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.0.0.1 localhost"
        );
    }
}
