//! Self-signed certificates made by the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::Result;
use crate::process::run_checked;

/// A PEM certificate and its unencrypted PEM key.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// `<name>.crt`
    pub cert: PathBuf,
    /// `<name>.key`
    pub key: PathBuf,
}

/// Makes a self-signed RSA-2048 certificate for `domain` (CN and DNS SAN) valid
/// for 30 days, as `<dir>/<domain>.crt` and `<dir>/<domain>.key`.
pub fn self_signed(dir: &Path, domain: &str) -> Result<CertPair> {
    crate::require_binaries(&["openssl"])?;
    let cert = dir.join(format!("{domain}.crt"));
    let key = dir.join(format!("{domain}.key"));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
    ])
    .arg("-subj")
    .arg(format!("/CN={domain}"))
    .arg("-addext")
    .arg(format!("subjectAltName=DNS:{domain}"))
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    run_checked(cmd, Duration::from_secs(30))?;
    Ok(CertPair { cert, key })
}
