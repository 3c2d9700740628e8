//! Server side of SASL SCRAM-SHA-256 / SCRAM-SHA-1 (RFC 5802, RFC 7677) and PLAIN
//! (RFC 4616), sans-IO.
//!
//! Usernames are SCRAM-decoded (`=2C`, `=3D`) and normalised like a JID localpart;
//! passwords are used as given (no SASLprep). Channel binding (`p=`) is not supported:
//! clients that require it are refused; `y` (client supports it, server does not
//! advertise it) and `n` are accepted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1.
    Sha1,
    /// SCRAM-SHA-256.
    Sha256,
}

impl ScramHash {
    /// The mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(key, parts),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, parts),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// `Hi()` of RFC 5802 §2.2 (PBKDF2 with HMAC).
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut u = self.hmac(password, &[salt, &1u32.to_be_bytes()]);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &[&u]);
            for (o, x) in out.iter_mut().zip(&u) {
                *o ^= x;
            }
        }
        out
    }
}

/// What a server stores for SCRAM (RFC 5802 §3): never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The hash.
    pub hash: ScramHash,
    /// Salt.
    pub salt: Vec<u8>,
    /// Iteration count.
    pub iterations: u32,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derives the stored credentials from a password.
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.hi(password.as_bytes(), salt, iterations.max(1));
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        ScramCredentials {
            hash,
            salt: salt.to_vec(),
            iterations: iterations.max(1),
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
        }
    }
}

/// Where the c2s machine checks credentials. Implementations must answer quickly (an
/// in-memory view of the store).
pub trait CredentialVerifier: std::fmt::Debug + Send + Sync {
    /// SCRAM credentials of `user` (a normalised localpart) for `hash`, if any.
    fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredentials>;
    /// Whether `password` is right for `user` (PLAIN).
    fn check_plain(&self, user: &str, password: &str) -> bool;
}

/// SASL failure conditions (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslFailure {
    /// `aborted`.
    Aborted,
    /// `incorrect-encoding`.
    IncorrectEncoding,
    /// `invalid-authzid`.
    InvalidAuthzid,
    /// `invalid-mechanism`.
    InvalidMechanism,
    /// `malformed-request`.
    MalformedRequest,
    /// `not-authorized`.
    NotAuthorized,
    /// `encryption-required`.
    EncryptionRequired,
}

impl SaslFailure {
    /// Element name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::EncryptionRequired => "encryption-required",
        }
    }
}

/// One SCRAM exchange, server side.
#[derive(Debug)]
pub(crate) struct ScramServer {
    hash: ScramHash,
    user: String,
    creds: Option<ScramCredentials>,
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    nonce: String,
}

/// Decodes a SCRAM `saslname` (RFC 5802 §5.1).
fn saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    if rest.contains(',') {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

impl ScramServer {
    /// Handles client-first; returns the server-first message.
    pub(crate) fn start(
        hash: ScramHash,
        client_first: &str,
        server_nonce: &str,
        verifier: &dyn CredentialVerifier,
    ) -> Result<(Self, String), SaslFailure> {
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = client_first.splitn(3, ',');
        let (Some(cb), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslFailure::MalformedRequest);
        };
        match cb {
            "n" | "y" => {}
            _ => return Err(SaslFailure::MalformedRequest), // p=…: channel binding unsupported
        }
        let gs2_header = format!("{cb},{authzid},");
        let mut user = None;
        let mut cnonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = saslname(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                cnonce = Some(v);
            } else if attr.starts_with("m=") {
                return Err(SaslFailure::MalformedRequest);
            }
        }
        let (Some(user), Some(cnonce)) = (user, cnonce) else {
            return Err(SaslFailure::MalformedRequest);
        };
        if cnonce.is_empty()
            || !cnonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(SaslFailure::MalformedRequest);
        }
        let user = crate::jid::BareJid::from_parts(Some(&user), "x.invalid")
            .map_err(|_| SaslFailure::NotAuthorized)?
            .local()
            .unwrap_or_default()
            .to_owned();
        let creds = verifier.scram(&user, hash);
        // Unknown users get a deterministic fake salt so they look like real ones.
        let (salt, iterations) = match &creds {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (
                hash.hash(format!("{user}{server_nonce}").as_bytes())[..16].to_vec(),
                4096,
            ),
        };
        let nonce = format!("{cnonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        Ok((
            ScramServer {
                hash,
                user,
                creds,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                gs2_header,
                nonce,
            },
            server_first,
        ))
    }

    /// Handles client-final; returns (user, server-final message) on success.
    pub(crate) fn finish(self, client_final: &str) -> Result<(String, String), SaslFailure> {
        let Some((without_proof, proof)) = client_final.rsplit_once(",p=") else {
            return Err(SaslFailure::MalformedRequest);
        };
        let mut cbind = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                cbind = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if cbind != Some(B64.encode(self.gs2_header.as_bytes()).as_str())
            || nonce != Some(self.nonce.as_str())
        {
            return Err(SaslFailure::NotAuthorized);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;
        let Some(creds) = self.creds else {
            return Err(SaslFailure::NotAuthorized);
        };
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let h = self.hash;
        let client_sig = h.hmac(&creds.stored_key, &[auth_message.as_bytes()]);
        if proof.len() != client_sig.len() {
            return Err(SaslFailure::NotAuthorized);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        let check = h.hash(&client_key);
        let diff = check
            .iter()
            .zip(&creds.stored_key)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 || check.len() != creds.stored_key.len() {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_sig = h.hmac(&creds.server_key, &[auth_message.as_bytes()]);
        Ok((self.user, format!("v={}", B64.encode(server_sig))))
    }
}

/// Checks a PLAIN message (`authzid NUL authcid NUL passwd`); returns the user.
pub(crate) fn plain(
    msg: &[u8],
    domain: &str,
    verifier: &dyn CredentialVerifier,
) -> Result<String, SaslFailure> {
    let mut it = msg.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(pass), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    let authcid = std::str::from_utf8(authcid).map_err(|_| SaslFailure::MalformedRequest)?;
    let pass = std::str::from_utf8(pass).map_err(|_| SaslFailure::MalformedRequest)?;
    let user = crate::jid::BareJid::from_parts(Some(authcid), domain)
        .map_err(|_| SaslFailure::NotAuthorized)?;
    if !authzid.is_empty() {
        let z = std::str::from_utf8(authzid).map_err(|_| SaslFailure::InvalidAuthzid)?;
        if crate::jid::BareJid::parse(z).ok().as_ref() != Some(&user) {
            return Err(SaslFailure::InvalidAuthzid);
        }
    }
    let local = user.local().unwrap_or_default().to_owned();
    if verifier.check_plain(&local, pass) {
        Ok(local)
    } else {
        Err(SaslFailure::NotAuthorized)
    }
}

/// Client side of SCRAM, for tests and for tools that log in.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    client_first_bare: String,
    cnonce: String,
}

impl ScramClient {
    /// Starts; returns the client and the client-first message.
    pub fn new(hash: ScramHash, user: &str, password: &str, cnonce: &str) -> (Self, String) {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={cnonce}");
        (
            ScramClient {
                hash,
                password: password.to_owned(),
                client_first_bare: bare.clone(),
                cnonce: cnonce.to_owned(),
            },
            format!("n,,{bare}"),
        )
    }

    /// Answers server-first; returns client-final and the expected server-final.
    pub fn respond(&self, server_first: &str) -> Option<(String, String)> {
        let mut nonce = None;
        let mut salt = None;
        let mut iter = None;
        for a in server_first.split(',') {
            if let Some(v) = a.strip_prefix("r=") {
                nonce = Some(v);
            } else if let Some(v) = a.strip_prefix("s=") {
                salt = B64.decode(v).ok();
            } else if let Some(v) = a.strip_prefix("i=") {
                iter = v.parse::<u32>().ok();
            }
        }
        let (nonce, salt, iter) = (nonce?, salt?, iter?);
        if !nonce.starts_with(&self.cnonce) {
            return None;
        }
        let h = self.hash;
        let salted = h.hi(self.password.as_bytes(), &salt, iter);
        let client_key = h.hmac(&salted, &[b"Client Key"]);
        let stored = h.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(b"n,,"));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let sig = h.hmac(&stored, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_key = h.hmac(&salted, &[b"Server Key"]);
        let v = h.hmac(&server_key, &[auth_message.as_bytes()]);
        Some((
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(v)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct One(ScramCredentials, &'static str);
    impl CredentialVerifier for One {
        fn scram(&self, user: &str, hash: ScramHash) -> Option<ScramCredentials> {
            (user == "user" && hash == self.0.hash).then(|| self.0.clone())
        }
        fn check_plain(&self, user: &str, password: &str) -> bool {
            user == "user" && password == self.1
        }
    }

    #[test]
    fn rfc5802_5_sha1_example() {
        // RFC 5802 §5: user "user", password "pencil".
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let v = One(
            ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096),
            "pencil",
        );
        let (srv, first) = ScramServer::start(
            ScramHash::Sha1,
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            &v,
        )
        .unwrap();
        assert_eq!(
            first,
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let (user, fin) = srv
            .finish("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(fin, "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn rfc7677_3_sha256_example() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = One(
            ScramCredentials::derive(ScramHash::Sha256, "pencil", &salt, 4096),
            "pencil",
        );
        let (srv, first) = ScramServer::start(
            ScramHash::Sha256,
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            &v,
        )
        .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (_, fin) = srv
            .finish("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_password_unknown_user_and_tampering() {
        let v = One(
            ScramCredentials::derive(ScramHash::Sha256, "right", b"salt", 64),
            "right",
        );
        for (user, pw) in [("user", "wrong"), ("nobody", "right")] {
            let (c, first) = ScramClient::new(ScramHash::Sha256, user, pw, "abc");
            let (srv, sf) = ScramServer::start(ScramHash::Sha256, &first, "xyz", &v).unwrap();
            let (fin, _) = c.respond(&sf).unwrap();
            assert_eq!(srv.finish(&fin).unwrap_err(), SaslFailure::NotAuthorized);
        }
        let (c, first) = ScramClient::new(ScramHash::Sha256, "user", "right", "abc");
        let (srv, sf) = ScramServer::start(ScramHash::Sha256, &first, "xyz", &v).unwrap();
        let (fin, _) = c.respond(&sf).unwrap();
        let tampered = fin.replace("r=abcxyz", "r=abcxy");
        assert_eq!(
            srv.finish(&tampered).unwrap_err(),
            SaslFailure::NotAuthorized
        );
        assert!(
            ScramServer::start(ScramHash::Sha256, "p=tls-unique,,n=user,r=a", "x", &v).is_err()
        );
        assert!(ScramServer::start(ScramHash::Sha256, "n,,n=us=er,r=a", "x", &v).is_err());
        assert_eq!(plain(b"\0user\0right", "d.test", &v), Ok("user".into()));
        assert_eq!(
            plain(b"user@d.test\0USER\0right", "d.test", &v),
            Ok("user".into())
        );
        assert_eq!(
            plain(b"\0user\0wrong", "d.test", &v),
            Err(SaslFailure::NotAuthorized)
        );
        assert_eq!(
            plain(b"other@d.test\0user\0right", "d.test", &v),
            Err(SaslFailure::InvalidAuthzid)
        );
        assert_eq!(
            plain(b"user\0right", "d.test", &v),
            Err(SaslFailure::MalformedRequest)
        );
    }
}
