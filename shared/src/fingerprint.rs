//! Certificates without a CA: agents trust the coordinator's TLS certificate by its SHA-256
//! fingerprint (the same figure `openssl x509 -fingerprint -sha256` prints), and the
//! coordinator knows a device by the ed25519 key of its self-signed client certificate.

use sha2::{Digest as _, Sha256};

/// Text form of a certificate fingerprint: `sha256:<64 lowercase hex>`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(cert_der)))
}

/// Normalises a fingerprint given by a person: accepts `sha256:` + hex, upper or lower case,
/// with or without `:` separators between bytes. `None` when it is not 32 bytes of hex.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let body = text.trim();
    let body = body
        .strip_prefix("sha256:")
        .or_else(|| body.strip_prefix("SHA256:"))
        .unwrap_or(body);
    let hex_only: String = body.chars().filter(|c| *c != ':').collect();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_only.to_ascii_lowercase(), &mut bytes).ok()?;
    Some(format!("sha256:{}", hex::encode(bytes)))
}

/// DER of an ed25519 SubjectPublicKeyInfo up to the key: SEQUENCE { SEQUENCE { OID 1.3.101.112 }
/// BIT STRING (33 bytes, no unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The ed25519 public key a certificate carries, when it carries exactly one ed25519
/// SubjectPublicKeyInfo. The TLS handshake has already proved the peer holds its private key.
pub fn ed25519_key_of_cert(cert_der: &[u8]) -> Option<[u8; 32]> {
    let mut found = cert_der
        .windows(ED25519_SPKI_PREFIX.len() + 32)
        .filter(|w| w.starts_with(&ED25519_SPKI_PREFIX));
    let first = found.next()?;
    if found.next().is_some() {
        return None;
    }
    first[ED25519_SPKI_PREFIX.len()..].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize_from_openssl_style() {
        let fp = fingerprint(b"cert");
        let hex = fp.trim_start_matches("sha256:").to_ascii_uppercase();
        let openssl: Vec<String> = hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert_eq!(normalize_fingerprint(&openssl.join(":")), Some(fp.clone()));
        assert_eq!(normalize_fingerprint(&fp), Some(fp));
        assert_eq!(normalize_fingerprint("sha256:abcd"), None);
    }
}
