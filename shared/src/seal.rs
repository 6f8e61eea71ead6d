//! Sealing a release's chunk payloads for named devices: a fresh content key seals each
//! payload with XChaCha20-Poly1305 (a random 24-byte nonce before the ciphertext, the chunk's
//! hash as associated data, so a payload cannot stand in for another chunk's), and the key is
//! wrapped to each device's identity key: an ephemeral X25519 agreement with the Montgomery
//! form of its Ed25519 key, the wrapping key derived with BLAKE3 from the shared secret and
//! both public halves, the content key sealed under it.
//!
//! What is sealed is the payload as encoded for the device (whole or a delta): deltas and
//! local reuse work on plaintext before sealing and after opening, so sealing costs neither.
//! A device opens only what a key was wrapped for; one cut off (revoked) is simply not named.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::digest::Digest;
use crate::sign::{PublicKey, SecretKey};
use crate::wire::DeviceId;

const NONCE: usize = 24;
/// Context of the key that wraps a content key for one device.
const WRAP_CONTEXT: &str = "ferry/seal/wrap/v1";

/// A content key. Never printed; zeroed when dropped.
pub struct ContentKey([u8; 32]);

impl Drop for ContentKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(…)")
    }
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The system's random source failed.
    #[error("no randomness: {0}")]
    Randomness(String),
    /// The bytes were not sealed under this key (another device's, or altered).
    #[error("cannot open it: not sealed for this key, or altered")]
    Open,
    /// A device key that is not a usable curve point.
    #[error("the device key cannot take a wrapped key")]
    DeviceKey,
}

impl ContentKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> Result<Self, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SealError::Randomness(e.to_string()))?;
        Ok(Self(key))
    }

    /// Seals `payload` of the chunk whose (plaintext) hash is `chunk`.
    pub fn seal(&self, chunk: &Digest, payload: &[u8]) -> Result<Vec<u8>, SealError> {
        seal_with(&self.0, &chunk.0, payload)
    }

    /// Opens what [`ContentKey::seal`] sealed for chunk `chunk`.
    pub fn open(&self, chunk: &Digest, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        open_with(&self.0, &chunk.0, sealed)
    }

    /// The key wrapped for the device holding `device`'s secret half.
    pub fn wrap_for(&self, device: &PublicKey) -> Result<WrappedKey, SealError> {
        let theirs = device.agreement_public();
        let mut ephemeral = [0u8; 32];
        getrandom::fill(&mut ephemeral).map_err(|e| SealError::Randomness(e.to_string()))?;
        let ours = MontgomeryPoint::mul_base_clamped(ephemeral).to_bytes();
        let shared = MontgomeryPoint(theirs).mul_clamped(ephemeral).to_bytes();
        ephemeral.zeroize();
        if shared == [0u8; 32] {
            return Err(SealError::DeviceKey);
        }
        let kek = wrapping_key(&shared, &ours, &theirs);
        Ok(WrappedKey {
            device: DeviceId::of(device),
            ephemeral: ours,
            sealed: seal_with(&kek, &ours, &self.0)?,
        })
    }

    /// The key `wrapped` carries, opened with the device's identity key.
    pub fn unwrap(wrapped: &WrappedKey, identity: &SecretKey) -> Result<Self, SealError> {
        let mut secret = identity.agreement_secret();
        let ours = identity.public().agreement_public();
        let shared = MontgomeryPoint(wrapped.ephemeral)
            .mul_clamped(secret)
            .to_bytes();
        secret.zeroize();
        let kek = wrapping_key(&shared, &wrapped.ephemeral, &ours);
        let bytes = open_with(&kek, &wrapped.ephemeral, &wrapped.sealed)?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| SealError::Open)?;
        Ok(Self(key))
    }
}

/// A content key wrapped for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The device it is for.
    pub device: DeviceId,
    /// The ephemeral X25519 public key of the agreement.
    pub ephemeral: [u8; 32],
    /// The content key, sealed under the agreed key.
    pub sealed: Vec<u8>,
}

fn wrapping_key(shared: &[u8; 32], ephemeral: &[u8; 32], device: &[u8; 32]) -> [u8; 32] {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared);
    material.extend_from_slice(ephemeral);
    material.extend_from_slice(device);
    blake3::derive_key(WRAP_CONTEXT, &material)
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE];
    getrandom::fill(&mut nonce).map_err(|e| SealError::Randomness(e.to_string()))?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Open)?;
    let mut out = Vec::with_capacity(NONCE + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend(sealed);
    Ok(out)
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE {
        return Err(SealError::Open);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_opens_with_its_key_for_its_chunk_only() {
        let key = ContentKey::generate().unwrap();
        let chunk = Digest::of(b"chunk");
        let sealed = key.seal(&chunk, b"payload").unwrap();
        assert_eq!(key.open(&chunk, &sealed).unwrap(), b"payload");
        assert_eq!(
            key.open(&Digest::of(b"another chunk"), &sealed),
            Err(SealError::Open)
        );
        let other = ContentKey::generate().unwrap();
        assert_eq!(other.open(&chunk, &sealed), Err(SealError::Open));
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(key.open(&chunk, &altered), Err(SealError::Open));
        assert_eq!(key.open(&chunk, b"short"), Err(SealError::Open));
    }

    #[test]
    fn a_wrapped_key_opens_with_its_device_identity_only() {
        let device = SecretKey::generate().unwrap();
        let stranger = SecretKey::generate().unwrap();
        let key = ContentKey::generate().unwrap();
        let wrapped = key.wrap_for(&device.public()).unwrap();
        assert_eq!(wrapped.device, DeviceId::of(&device.public()));
        let opened = ContentKey::unwrap(&wrapped, &device).unwrap();
        let chunk = Digest::of(b"c");
        let sealed = key.seal(&chunk, b"weights").unwrap();
        assert_eq!(opened.open(&chunk, &sealed).unwrap(), b"weights");
        // Another device's identity cannot open it, even under the right device id.
        assert_eq!(
            ContentKey::unwrap(&wrapped, &stranger).unwrap_err(),
            SealError::Open
        );
        let mut swapped = wrapped.clone();
        swapped.device = DeviceId::of(&stranger.public());
        assert!(ContentKey::unwrap(&swapped, &stranger).is_err());
    }
}
