//! TLS for the agent: the coordinator's certificate is trusted by its pinned SHA-256
//! fingerprint, and the handshake signature is still verified with it, so holding a copy of
//! the certificate is not enough to impersonate the coordinator. The agent presents a
//! self-signed client certificate of its ed25519 identity key (mutual TLS): the coordinator
//! knows the device by that key from the handshake on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_shared::SecretKey;
use ferry_shared::pin::fingerprint;
use ferry_shared::wire::ALPN;
use ferry_shared::wire::DeviceId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Accepts exactly one certificate, by fingerprint.
#[derive(Debug)]
pub struct PinnedCert {
    pin: String,
    provider: Arc<CryptoProvider>,
    mismatch: Mutex<Option<String>>,
}

impl PinnedCert {
    /// The fingerprint of the last certificate refused, to explain a failed connection.
    pub fn last_mismatch(&self) -> Option<String> {
        self.mismatch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The pinned fingerprint.
    pub fn pin(&self) -> &str {
        &self.pin
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity.as_ref());
        if presented == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        *self.mismatch.lock().unwrap_or_else(|p| p.into_inner()) = Some(presented);
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A self-signed certificate of `identity`, and its key, for client authentication.
pub fn identity_cert(
    identity: &SecretKey,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let pkcs8 = PrivatePkcs8KeyDer::from(identity.to_pkcs8_der());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .context("the identity key is not usable for TLS")?;
    let name = DeviceId::of(&identity.public()).to_string();
    let params = rcgen::CertificateParams::new(vec![name])
        .context("cannot describe the device certificate")?;
    let cert = params
        .self_signed(&pair)
        .context("cannot make the device certificate")?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// A QUIC client configuration trusting only the pinned certificate and presenting the
/// device's identity certificate.
pub fn client_config(
    pin: &str,
    identity: &SecretKey,
) -> Result<(quinn::ClientConfig, Arc<PinnedCert>)> {
    let (cert, cert_key) = identity_cert(identity)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCert {
        pin: pin.to_owned(),
        provider: provider.clone(),
        mismatch: Mutex::new(None),
    });
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 is unavailable")?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(vec![cert], cert_key)
        .context("the device certificate is not usable")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .context("TLS configuration unusable for QUIC")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    transport.max_idle_timeout(Some(
        Duration::from_secs(20)
            .try_into()
            .context("idle timeout out of range")?,
    ));
    config.transport_config(Arc::new(transport));
    Ok((config, verifier))
}
