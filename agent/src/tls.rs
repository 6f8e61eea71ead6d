//! TLS for the agent: the coordinator's certificate is trusted by its pinned SHA-256
//! fingerprint, and the handshake signature is still verified with it, so holding a copy of
//! the certificate is not enough to impersonate the coordinator. The agent presents a
//! self-signed client certificate of its ed25519 identity key (mutual TLS): the coordinator
//! knows the device by that key from the handshake on.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_shared::SecretKey;
pub use ferry_shared::pinned::PinnedCert;
use ferry_shared::wire::ALPN;
use ferry_shared::wire::DeviceId;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// How many bytes of a fetch stream the coordinator may send ahead of what the agent has
/// read (QUIC flow control): 4 MiB, a maximum-size chunk, which the coordinator sends while
/// the agent applies the one before. Measured on a 512 MiB download over loopback: 4 MiB kept
/// the speed of 8 MiB (2.06–2.64 s against 2.50–2.73 s) with the agent's peak RSS at 23.5 MiB
/// instead of 30.6–32.2, since QUIC holds what was received and not yet read; 2 MiB saved
/// 3.6 MiB more and was no faster (2.65–2.71 s). A link of 100 Mbit/s with 300 ms of round
/// trip needs under 4 MiB in flight.
pub(crate) const STREAM_RECEIVE_WINDOW: u32 = 4 * 1024 * 1024;
/// The connection's window: the fetch stream's with room for the control stream.
pub(crate) const CONNECTION_RECEIVE_WINDOW: u32 = STREAM_RECEIVE_WINDOW + STREAM_RECEIVE_WINDOW / 4;

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
    let verifier = Arc::new(PinnedCert::new(pin, provider.clone()));
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
    // The coordinator acknowledges each packet of the agent's at once instead of after its
    // 25 ms delay. The agent's probe timeout allows just that delay over the round trip, so a
    // coordinator a few milliseconds late (busy pushing to thousands) had reports probed
    // again, each probe more work for it: the fleet simulator counted four probes per agent
    // in one 10,000-device push. The agent sends little (reports, fetch requests), so the
    // acknowledgements cost the coordinator almost nothing.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(0u32.into());
    transport.ack_frequency_config(Some(acks));
    // One fetch stream at a time (plus the control stream): the connection's window is the
    // stream's with room for the control stream, bounding what QUIC buffers for the agent.
    transport.stream_receive_window(STREAM_RECEIVE_WINDOW.into());
    transport.receive_window(CONNECTION_RECEIVE_WINDOW.into());
    transport.max_idle_timeout(Some(
        Duration::from_secs(20)
            .try_into()
            .context("idle timeout out of range")?,
    ));
    config.transport_config(Arc::new(transport));
    Ok((config, verifier))
}
