//! rustls configurations for s2s STARTTLS, built on [`crate::tls`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::tls::{ClientAuth, TlsError, TlsIdentity, TlsSettings, provider};

/// The TLS side of the XMPP driver: our certificate as a STARTTLS server and client.
#[derive(Clone)]
pub struct XmppTls {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for XmppTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppTls").finish_non_exhaustive()
    }
}

impl XmppTls {
    /// From our certificate chain and key. Its subjectAltName should list every hosted
    /// domain (peers check it only where they insist on authenticated certificates).
    /// No client certificate is requested; the peer's certificate is not verified (see
    /// the [module docs](super)).
    pub fn new(identity: TlsIdentity) -> Result<Self, TlsError> {
        let settings = TlsSettings {
            identity: Some(identity.clone()),
            roots: Vec::new(),
            client_auth: ClientAuth::None,
        };
        let server = settings.server_config()?;
        let p = provider();
        let builder = rustls::ClientConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(p)));
        let mut client = builder.with_client_auth_cert(identity.chain, identity.key)?;
        client.resumption = rustls::client::Resumption::disabled();
        Ok(XmppTls {
            server,
            client: Arc::new(client),
        })
    }

    /// A client-only configuration (no certificate to present): used when the node has
    /// no certificate but a peer requires STARTTLS.
    pub(crate) fn client_without_identity() -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let p = provider();
        let mut c = rustls::ClientConfig::builder_with_provider(p.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(p)))
            .with_no_client_auth();
        c.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(c))
    }
}

/// Accepts any server certificate but still checks the handshake signatures with it:
/// the link is encrypted to whoever holds that key; dialback authenticates the domain.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
