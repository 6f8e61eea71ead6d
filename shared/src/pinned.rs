//! A rustls server-certificate verifier that trusts exactly one certificate, by its pinned
//! SHA-256 fingerprint ([`crate::fingerprint`]). The handshake signature is still verified with
//! that
//! certificate's key, so holding a copy of the certificate is not enough to impersonate its
//! owner. Agents pin the coordinator's QUIC certificate with it; ferryctl its admin API's.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::fingerprint::fingerprint;

/// Accepts exactly one certificate, by fingerprint.
#[derive(Debug)]
pub struct PinnedCert {
    pin: String,
    provider: Arc<CryptoProvider>,
    mismatch: Mutex<Option<String>>,
}

impl PinnedCert {
    /// Trusts the certificate whose fingerprint is `pin` (`sha256:<hex>`, as
    /// [`crate::fingerprint::normalize_fingerprint`] writes it), checking signatures with
    /// `provider`.
    pub fn new(pin: &str, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin: pin.to_owned(),
            provider,
            mismatch: Mutex::new(None),
        }
    }

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

/// A TLS client configuration for HTTPS (ALPN `http/1.1`, no client certificate) that trusts
/// only the certificate pinned as `pin`; and the verifier, to say which certificate a refused
/// server showed.
pub fn https_client_config(
    pin: &str,
) -> Result<(rustls::ClientConfig, Arc<PinnedCert>), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCert::new(pin, provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, verifier))
}
