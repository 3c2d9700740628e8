//! TLS configuration shared by the SIP (and, later, XMPP) drivers: certificates from PEM,
//! rustls client and server configurations with the `ring` provider, self-signed
//! certificates for demos and tests, and the subjectAltName helpers.
//!
//! **Identity rules.** A peer's identity is the set of names in its certificate's
//! subjectAltName: every `dNSName`, plus the host of every `sip:`/`sips:` URI name
//! (RFC 5922 §7.1). A domain matches when one of those names equals it exactly
//! (ASCII case-insensitive, a trailing dot ignored). Wildcard names (`*.example.com`)
//! never match: Lync/Skype for Business does not support wildcard certificates for
//! federation (research/sip.md §4), and a wildcard cannot name a SIP domain. The
//! subject CN is ignored ("TLS ignores the subject").
//!
//! **Provider.** Every configuration is built with [`provider`] (rustls' `ring`
//! provider), named explicitly, so the process-wide default provider does not matter.
//!
//! What it does not do: no revocation checking (CRL/OCSP), no certificate reloading,
//! no SNI-based certificate selection (one identity per node).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("PEM {what}: {detail}")]
    Pem {
        /// What was being read (`"certificate chain"`, `"private key"`, `"roots"`).
        what: &'static str,
        /// The underlying problem.
        detail: String,
    },
    /// rustls refused the configuration (bad key, key not matching the certificate…).
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (for instance: no roots).
    #[error("client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    /// A server needs an identity (certificate chain and key).
    #[error("a TLS server needs a certificate chain and key")]
    NoIdentity,
    /// Client certificates are requested but no roots are configured to verify them.
    #[error("client certificates are requested but no roots are configured")]
    NoRoots,
    /// A certificate could not be parsed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider of every fedgate TLS configuration: rustls' `ring` provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain (end entity first) and its private key.
pub struct TlsIdentity {
    /// The chain, end-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self
            .chain
            .first()
            .and_then(|c| sip_domains(c).ok())
            .unwrap_or_default();
        f.debug_struct("TlsIdentity")
            .field("chain_len", &self.chain.len())
            .field("names", &names)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Reads a PEM chain (end entity first) and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, TlsError> {
        let chain = certs_from_pem(chain_pem, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
            what: "private key",
            detail: e.to_string(),
        })?;
        Ok(TlsIdentity { chain, key })
    }

    /// Reads the chain and key from PEM files.
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
        let read = |p: &Path, what| {
            std::fs::read(p).map_err(|e| TlsError::Pem {
                what,
                detail: format!("{}: {e}", p.display()),
            })
        };
        TlsIdentity::from_pem(
            &read(chain, "certificate chain")?,
            &read(key, "private key")?,
        )
    }

    /// The SIP domain names of the end-entity certificate (see [`sip_domains`]).
    pub fn names(&self) -> Vec<String> {
        self.chain
            .first()
            .and_then(|c| sip_domains(c).ok())
            .unwrap_or_default()
    }
}

/// Every certificate in a PEM buffer (at least one).
pub fn certs_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            detail: "no CERTIFICATE section".into(),
        });
    }
    Ok(certs)
}

/// Reads root certificates from PEM files (each may hold several).
pub fn roots_from_pem_files(paths: &[&Path]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for p in paths {
        let pem = std::fs::read(p).map_err(|e| TlsError::Pem {
            what: "roots",
            detail: format!("{}: {e}", p.display()),
        })?;
        out.extend(certs_from_pem(&pem, "roots")?);
    }
    Ok(out)
}

/// Whether a TLS server asks connecting clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is requested.
    None,
    /// A certificate is requested and verified if sent; clients without one are accepted
    /// (their [`PeerIdentity`](crate::sip::PeerIdentity) is absent).
    Optional,
    /// Mutual TLS: a client without a certificate verified against the roots is refused
    /// during the handshake. The default, as between Lync Edge servers.
    #[default]
    Required,
}

/// Everything needed to build the TLS client and server configurations.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Our certificate and key: presented as a server, and as a client when we connect out
    /// (Lync partners require it). Give it both the serverAuth and clientAuth EKUs.
    pub identity: Option<TlsIdentity>,
    /// Trust anchors for the peers' certificates (both directions).
    pub roots: Vec<CertificateDer<'static>>,
    /// Whether our server asks for client certificates.
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    fn root_store(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut store = RootCertStore::empty();
        for c in &self.roots {
            store
                .add(c.clone())
                .map_err(|e| TlsError::Certificate(e.to_string()))?;
        }
        Ok(Arc::new(store))
    }

    /// The rustls server configuration (needs an identity; roots when clients are asked
    /// for certificates).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let id = self.identity.as_ref().ok_or(TlsError::NoIdentity)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional | ClientAuth::Required => {
                if self.roots.is_empty() {
                    return Err(TlsError::NoRoots);
                }
                let v = WebPkiClientVerifier::builder_with_provider(self.root_store()?, provider());
                let v = if self.client_auth == ClientAuth::Optional {
                    v.allow_unauthenticated().build()?
                } else {
                    v.build()?
                };
                builder.with_client_cert_verifier(v)
            }
        };
        let mut cfg = builder.with_single_cert(id.chain.clone(), id.key.clone_key())?;
        // Session tickets are of no use on a handful of long-lived federation links.
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    /// The rustls client configuration: the peers' certificates are verified against
    /// the roots and the name the connection was opened for; our identity, if any, is
    /// presented when the server asks.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(self.root_store()?, provider()).build();
        let verifier = verifier.map_err(|e| TlsError::Certificate(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(verifier);
        let mut cfg = match &self.identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(cfg))
    }
}

/// A freshly generated self-signed certificate and its key.
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("names", &sip_domains(&self.cert).unwrap_or_default())
            .finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// As an identity to present.
    pub fn identity(&self) -> TlsIdentity {
        TlsIdentity {
            chain: vec![self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
        }
    }
}

/// Generates a self-signed certificate (ECDSA P-256) whose subjectAltName holds
/// `dns_names` as dNSNames, with the serverAuth and clientAuth EKUs, valid now for a
/// long time. For demos and tests: a peer trusts it by listing it among its roots.
pub fn self_signed(dns_names: &[&str]) -> Result<SelfSigned, TlsError> {
    let names: Vec<String> = dns_names.iter().map(|s| (*s).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        dns_names.first().copied().unwrap_or("fedgate"),
    );
    params.distinguished_name = dn;
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert: cert.der().clone(),
        key_der: key.serialize_der(),
    })
}

fn parse<'a>(cert: &'a CertificateDer<'a>) -> Result<webpki::EndEntityCert<'a>, TlsError> {
    webpki::EndEntityCert::try_from(cert).map_err(|e| TlsError::Certificate(e.to_string()))
}

/// The dNSName entries of a certificate's subjectAltName, as written (wildcards included).
pub fn dns_sans(cert: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    Ok(parse(cert)?.valid_dns_names().map(str::to_owned).collect())
}

/// The SIP domain identities of a certificate (RFC 5922 §7.1): its dNSNames and the
/// host of each `sip:`/`sips:` URI name, lower-cased, without duplicates.
pub fn sip_domains(cert: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    let c = parse(cert)?;
    let mut out: Vec<String> = Vec::new();
    let uris = c.valid_uri_names().filter_map(|u| {
        let lower = u.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("sip:")
            .or_else(|| lower.strip_prefix("sips:"))?;
        // sip:example.com, or sip:user@host (not a domain identity but keep the host).
        let host = rest.rsplit('@').next()?;
        let host = host.split([';', '?', ':']).next()?;
        (!host.is_empty()).then(|| host.to_owned())
    });
    for n in c.valid_dns_names().map(str::to_ascii_lowercase).chain(uris) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// True when `domain` is one of `names` exactly (ASCII case-insensitive, trailing dots
/// ignored). Wildcard names never match.
pub fn name_matches(names: &[String], domain: &str) -> bool {
    let d = domain.trim_end_matches('.');
    !d.is_empty()
        && names.iter().any(|n| {
            let n = n.trim_end_matches('.');
            !n.starts_with('*') && n.eq_ignore_ascii_case(d)
        })
}

/// The hosted domains that the certificate does not name (the node warns about each:
/// peers will refuse connections for them).
pub fn missing_domains(
    cert: &CertificateDer<'_>,
    hosted: &[&str],
) -> Result<Vec<String>, TlsError> {
    let names = sip_domains(cert)?;
    Ok(hosted
        .iter()
        .filter(|d| !name_matches(&names, d))
        .map(|d| (*d).to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_names_round_trip() {
        let c = self_signed(&["sip.contoso.example", "contoso.example"]).unwrap();
        assert_eq!(
            dns_sans(&c.cert).unwrap(),
            vec!["sip.contoso.example", "contoso.example"]
        );
        let names = sip_domains(&c.cert).unwrap();
        assert!(name_matches(&names, "CONTOSO.example."));
        assert!(!name_matches(&names, "fabrikam.example"));
        assert!(!name_matches(&names, ""));
        assert_eq!(
            missing_domains(&c.cert, &["contoso.example", "fabrikam.example"]).unwrap(),
            vec!["fabrikam.example"]
        );
        // PEM round trip gives the same identity.
        let id = TlsIdentity::from_pem(c.cert_pem.as_bytes(), c.key_pem.as_bytes()).unwrap();
        assert_eq!(id.chain, vec![c.cert.clone()]);
        assert_eq!(id.names(), names);
    }

    #[test]
    fn wildcards_never_match() {
        let c = self_signed(&["*.contoso.example"]).unwrap();
        let names = sip_domains(&c.cert).unwrap();
        assert_eq!(names, vec!["*.contoso.example"]);
        assert!(!name_matches(&names, "sip.contoso.example"));
        assert!(!name_matches(&names, "*.contoso.example"));
    }

    #[test]
    fn configs_build_and_check_their_inputs() {
        let c = self_signed(&["a.example"]).unwrap();
        let mut s = TlsSettings {
            identity: Some(c.identity()),
            roots: vec![],
            client_auth: ClientAuth::Required,
        };
        assert!(matches!(s.server_config(), Err(TlsError::NoRoots)));
        s.roots.push(c.cert.clone());
        s.server_config().unwrap();
        s.client_config().unwrap();
        s.identity = None;
        assert!(matches!(s.server_config(), Err(TlsError::NoIdentity)));
        assert!(TlsIdentity::from_pem(b"junk", b"junk").is_err());
        assert!(dns_sans(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }
}
