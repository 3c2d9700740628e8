//! SCRAM credentials (RFC 5802 SCRAM-SHA-1, RFC 7677 SCRAM-SHA-256), derived with
//! PBKDF2-HMAC, and the checks a SASL server makes with them.
//!
//! ```text
//! SaltedPassword  := Hi(Normalize(password), salt, i)      (PBKDF2-HMAC-H)
//! ClientKey       := HMAC(SaltedPassword, "Client Key")
//! StoredKey       := H(ClientKey)                          stored
//! ServerKey       := HMAC(SaltedPassword, "Server Key")    stored
//! ClientSignature := HMAC(StoredKey, AuthMessage)
//! ClientProof     := ClientKey XOR ClientSignature         sent by the client
//! ServerSignature := HMAC(ServerKey, AuthMessage)          sent by the server
//! ```
//!
//! `Normalize` (SASLprep / OpaqueString) is the caller's: the bytes given are hashed as
//! they are, at `add_user` and at every check alike.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A SCRAM mechanism whose credentials the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-1` (RFC 5802).
    Sha1,
    /// `SCRAM-SHA-256` (RFC 7677).
    Sha256,
}

impl ScramMechanism {
    /// Every mechanism, weakest first.
    pub const ALL: [Self; 2] = [Self::Sha1, Self::Sha256];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SCRAM-SHA-1",
            Self::Sha256 => "SCRAM-SHA-256",
        }
    }

    /// The mechanism of a SASL name (exact, as registered).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Output length of the hash, in bytes (20 or 32).
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        match self {
            Self::Sha1 => {
                let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Self::Sha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2-HMAC with this mechanism's hash.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            Self::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            Self::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// What a SCRAM server needs for one user and mechanism: never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// The salt (raw bytes; base64 it for the `s=` attribute).
    pub salt: Vec<u8>,
    /// The iteration count (the `i=` attribute).
    pub iterations: u32,
    /// `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are password equivalents for this server: keep them out of logs.
        f.debug_struct("ScramCredentials")
            .field("mechanism", &self.mechanism)
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// Derives the credentials for `password` (already normalized by the caller).
    pub fn derive(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    fn from_salted_password(
        mechanism: ScramMechanism,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        Self {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
        }
    }

    /// True when `password` is the one these credentials were derived from (the PLAIN
    /// check: re-derive `StoredKey` with the stored salt and count, compare in constant
    /// time).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let again = Self::derive(self.mechanism, password, &self.salt, self.iterations);
        ct_eq(&again.stored_key, &self.stored_key)
    }

    /// The server's check of a client-final-message (RFC 5802 §3): recovers `ClientKey`
    /// from `client_proof` and compares `H(ClientKey)` with `StoredKey`, in constant time.
    pub fn verify_client_proof(&self, auth_message: &[u8], client_proof: &[u8]) -> bool {
        if client_proof.len() != self.mechanism.output_len() {
            return false;
        }
        let signature = self.mechanism.hmac(&self.stored_key, auth_message);
        let client_key: Vec<u8> = client_proof
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        ct_eq(&self.mechanism.hash(&client_key), &self.stored_key)
    }

    /// `ServerSignature` for the server-final-message (`v=`).
    pub fn server_signature(&self, auth_message: &[u8]) -> Vec<u8> {
        self.mechanism.hmac(&self.server_key, auth_message)
    }
}

/// Constant-time (for equal lengths) byte comparison.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// RFC 5802 §5: user "user", password "pencil", salt QSXCR+Q6sek8bf92, i=4096.
    #[test]
    fn rfc5802_section5_scram_sha1_vector() {
        let c = ScramCredentials::derive(
            ScramMechanism::Sha1,
            b"pencil",
            &b64("QSXCR+Q6sek8bf92"),
            4096,
        );
        let auth = "n=user,r=fyko+d2lbbFgONRv9qkxdawL,\
                    r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,\
                    c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let proof = b64("v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
        assert!(c.verify_client_proof(auth.as_bytes(), &proof));
        assert_eq!(
            c.server_signature(auth.as_bytes()),
            b64("rmF9pqV8S7suAoZWja4dJRkFsKQ=")
        );
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(!c.verify_client_proof(auth.as_bytes(), &wrong));
        assert!(!c.verify_client_proof(auth.as_bytes(), &proof[..19]));
        assert!(c.verify_password(b"pencil"));
        assert!(!c.verify_password(b"pencil "));
    }

    /// RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
    #[test]
    fn rfc7677_section3_scram_sha256_vector() {
        let c = ScramCredentials::derive(
            ScramMechanism::Sha256,
            b"pencil",
            &b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        );
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = b64("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert!(c.verify_client_proof(auth.as_bytes(), &proof));
        assert_eq!(
            c.server_signature(auth.as_bytes()),
            b64("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        assert!(!c.verify_client_proof(b"n=user,r=other", &proof));
        assert!(c.verify_password(b"pencil"));
        assert!(!c.verify_password(b"Pencil"));
    }

    #[test]
    fn names_round_trip_and_debug_hides_keys() {
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
        }
        assert_eq!(ScramMechanism::from_name("SCRAM-SHA-512"), None);
        let c = ScramCredentials::derive(ScramMechanism::Sha256, b"x", b"salt", 1);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("stored_key") && !shown.contains("server_key"),
            "{shown}"
        );
    }
}
