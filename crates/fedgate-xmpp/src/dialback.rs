//! Dialback keys (XEP-0185) and the XEP-0220 wire elements.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The secret dialback keys are derived from. Configure the same secret on every node
/// of a cluster that serves the same domains, or generate one at startup.
#[derive(Clone)]
pub struct DialbackSecret {
    /// Hex of SHA-256(secret): the HMAC key XEP-0185 prescribes.
    hashed_hex: [u8; 64],
}

impl std::fmt::Debug for DialbackSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialbackSecret(..)")
    }
}

fn hex(bytes: &[u8], out: &mut [u8]) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = H[(b >> 4) as usize];
        out[2 * i + 1] = H[(b & 15) as usize];
    }
}

impl DialbackSecret {
    /// From the configured secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut hashed_hex = [0u8; 64];
        hex(&Sha256::digest(secret), &mut hashed_hex);
        DialbackSecret { hashed_hex }
    }

    /// XEP-0185 §2: `hex(HMAC-SHA256(hex(SHA256(secret)), receiving ' ' originating ' ' stream_id))`.
    pub fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hashed_hex)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(receiving.as_bytes());
        mac.update(b" ");
        mac.update(originating.as_bytes());
        mac.update(b" ");
        mac.update(stream_id.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 64];
        hex(&tag, &mut out);
        out.iter().map(|&b| b as char).collect()
    }

    /// Checks a received key in constant time (whitespace around it is ignored).
    pub fn verify(&self, receiving: &str, originating: &str, stream_id: &str, key: &str) -> bool {
        let want = self.key(receiving, originating, stream_id);
        let got = key.trim().as_bytes();
        if got.len() != want.len() {
            return false;
        }
        got.iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0185_example_vector() {
        let s = DialbackSecret::new(b"s3cr3tf0rd14lb4ck");
        assert_eq!(
            std::str::from_utf8(&s.hashed_hex).unwrap(),
            "a7136eb1f46c9ef18c5e78c36ca257067c69b3d518285f0b18a96c33beae9acc"
        );
        let k = s.key("xmpp.example.com", "example.org", "D60000229F");
        assert_eq!(
            k,
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
        assert!(s.verify(
            "xmpp.example.com",
            "example.org",
            "D60000229F",
            &format!("\n  {k}\n")
        ));
        assert!(!s.verify("xmpp.example.com", "example.org", "D60000229E", &k));
        assert!(!s.verify("xmpp.example.com", "example.net", "D60000229F", &k));
        assert!(!DialbackSecret::new(b"other").verify(
            "xmpp.example.com",
            "example.org",
            "D60000229F",
            &k
        ));
        assert!(!s.verify("xmpp.example.com", "example.org", "D60000229F", ""));
    }
}
