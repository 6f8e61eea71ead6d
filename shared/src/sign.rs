//! Keys and signed envelopes.
//!
//! An [`Envelope`] carries a payload, the BLAKE3 digest of that payload, and ed25519 signatures
//! over `context || digest`, each named by the signer's [`KeyId`] (a hash of its public key).
//! The context separates document kinds, so a signature over a release can never be replayed
//! as a signature over anything else. Verification reports distinct failures for a payload
//! altered after signing, a signature by a key nobody trusts, and a signature that does not
//! verify, because each means something different to an operator.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;
use crate::manifest::{ManifestError, Release};

/// Signing context for release manifests.
pub const RELEASE_CONTEXT: &str = "ferry/release/v1";
/// Signing context for a device proving it holds its identity key on a TLS session.
pub const DEVICE_AUTH_CONTEXT: &str = "ferry/device-auth/v1";

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ferry-ed25519-secret:";

/// An ed25519 private key. Never printed.
pub struct SecretKey(SigningKey);

/// An ed25519 public key; text form `ed25519:<64 hex>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// The identifier of a public key: BLAKE3 of the key under a fixed context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub Digest);

/// Key handling failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a key of the expected kind.
    #[error("not a {kind}: expected `{prefix}` followed by 64 hex characters")]
    Format {
        /// Which kind of key was expected.
        kind: &'static str,
        /// The prefix the text should start with.
        prefix: &'static str,
    },
    /// The 32 bytes are not a valid curve point.
    #[error("the public key bytes are not a valid ed25519 key")]
    InvalidPoint,
    /// The operating system gave no randomness.
    #[error("no randomness available from the operating system: {0}")]
    Randomness(String),
}

impl SecretKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Randomness(e.to_string()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Text form for a key file: `ferry-ed25519-secret:<hex>`.
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", hex::encode(self.0.to_bytes()))
    }

    /// Parses the text form (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let seed = parse_hex32(text.trim(), SECRET_PREFIX, "secret key")?;
        Ok(Self::from_seed(&seed))
    }

    /// Signs `context || message`.
    pub fn sign(&self, context: &str, message: &[u8]) -> [u8; 64] {
        self.0.sign(&signing_input(context, message)).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public())
    }
}

impl SecretKey {
    /// The key as PKCS#8 v1 DER (RFC 8410), for TLS libraries; handle it like the key itself.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&self.0.to_bytes());
        der
    }
}

impl SecretKey {
    /// The X25519 secret of this key (its unclamped Ed25519 scalar), for agreeing on the key
    /// that wraps a content key for this device ([`crate::seal`]); zero it after use.
    pub(crate) fn agreement_secret(&self) -> [u8; 32] {
        self.0.to_scalar_bytes()
    }
}

impl PublicKey {
    /// The X25519 public half matching [`SecretKey::agreement_secret`]: the Montgomery form
    /// of this key's point.
    pub(crate) fn agreement_public(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }
}

impl PublicKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| KeyError::InvalidPoint)
    }

    /// Its 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Its identifier.
    pub fn key_id(&self) -> KeyId {
        KeyId(Digest::keyed_context("ferry/key-id/v1", self.0.as_bytes()))
    }

    /// Verifies a signature over `context || message` (strict: no malleable signatures).
    pub fn verify(&self, context: &str, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.0
            .verify_strict(&signing_input(context, message), &signature)
            .is_ok()
    }
}

fn signing_input(context: &str, message: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(context.len() + 1 + message.len());
    input.extend_from_slice(context.as_bytes());
    input.push(0);
    input.extend_from_slice(message);
    input
}

fn parse_hex32(text: &str, prefix: &'static str, kind: &'static str) -> Result<[u8; 32], KeyError> {
    let hex_part = text
        .strip_prefix(prefix)
        .ok_or(KeyError::Format { kind, prefix })?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| KeyError::Format { kind, prefix })?;
    Ok(out)
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::from_bytes(&parse_hex32(text.trim(), PUBLIC_PREFIX, "public key")?)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.to_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let bytes = <[u8; 32]>::deserialize(deserializer)?;
            Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex()[..16])
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A set of public keys trusted for one purpose.
#[derive(Clone, Debug, Default)]
pub struct Keyring(BTreeMap<KeyId, PublicKey>);

impl Keyring {
    /// A keyring holding these keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self(keys.into_iter().map(|k| (k.key_id(), k)).collect())
    }

    /// Adds a key.
    pub fn insert(&mut self, key: PublicKey) {
        self.0.insert(key.key_id(), key);
    }

    /// The key with this id, if trusted.
    pub fn get(&self, id: &KeyId) -> Option<&PublicKey> {
        self.0.get(id)
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One signature in an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    /// Who signed.
    pub key_id: KeyId,
    /// The 64-byte ed25519 signature.
    pub signature: Vec<u8>,
}

/// Signed bytes, as stored and as sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The signed document's canonical bytes.
    pub payload: Vec<u8>,
    /// BLAKE3 of `payload`; this is what the signatures cover.
    pub payload_digest: Digest,
    /// One or more signatures.
    pub signatures: Vec<SignatureEntry>,
}

/// Why a signed document was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The envelope bytes do not decode.
    #[error("signed envelope does not decode: {0}")]
    Malformed(String),
    /// The payload no longer matches the digest it was signed under.
    #[error("payload was altered after signing (digest {actual}, signed digest {signed})")]
    PayloadAltered {
        /// Digest the signatures cover.
        signed: Digest,
        /// Digest of the payload as received.
        actual: Digest,
    },
    /// No signature is by a key this side trusts.
    #[error("signed only by keys that are not trusted here: {}", display_ids(.key_ids))]
    UnknownKey {
        /// Who did sign.
        key_ids: Vec<KeyId>,
    },
    /// A trusted key's signature does not verify.
    #[error("signature by trusted key {key_id} does not verify")]
    BadSignature {
        /// The key the signature claims.
        key_id: KeyId,
    },
    /// The signed payload is not an acceptable manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

fn display_ids(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "(no signatures)".into();
    }
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Envelope {
    /// The envelope's own bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding plain bytes and vectors into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes envelope bytes (not yet verified). Bytes after the envelope are refused, so a
    /// signed document has exactly one encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifyError> {
        let (envelope, rest) =
            postcard::take_from_bytes(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(VerifyError::Malformed(format!(
                "{} bytes after the envelope",
                rest.len()
            )));
        }
        Ok(envelope)
    }

    /// Checks the payload digest and that a trusted key signed it under `context`; returns the
    /// id of the key that did.
    pub fn verify(&self, context: &str, trusted: &Keyring) -> Result<KeyId, VerifyError> {
        let actual = Digest::of(&self.payload);
        if actual != self.payload_digest {
            return Err(VerifyError::PayloadAltered {
                signed: self.payload_digest,
                actual,
            });
        }
        let mut first_bad = None;
        for entry in &self.signatures {
            if let Some(key) = trusted.get(&entry.key_id) {
                if key.verify(context, &self.payload_digest.0, &entry.signature) {
                    return Ok(entry.key_id);
                }
                first_bad.get_or_insert(entry.key_id);
            }
        }
        Err(match first_bad {
            Some(key_id) => VerifyError::BadSignature { key_id },
            None => VerifyError::UnknownKey {
                key_ids: self.signatures.iter().map(|s| s.key_id).collect(),
            },
        })
    }
}

/// A release manifest whose signature has been checked, with the envelope bytes it came in.
#[derive(Clone, Debug)]
pub struct SignedRelease {
    /// The decoded, validated manifest.
    pub release: Release,
    /// Who signed it.
    pub signer: KeyId,
    /// The envelope exactly as received, for storing and forwarding verbatim.
    pub envelope_bytes: Vec<u8>,
}

impl SignedRelease {
    /// Signs a release with a publisher key.
    pub fn sign(release: &Release, key: &SecretKey) -> Result<Self, ManifestError> {
        Self::sign_all(release, &[key])
    }

    /// Signs a release with every key in `keys` (a root may require several publishers);
    /// `signer` names the first.
    pub fn sign_all(release: &Release, keys: &[&SecretKey]) -> Result<Self, ManifestError> {
        release.validate()?;
        let Some(first) = keys.first() else {
            return Err(ManifestError::Invalid {
                name: release.name.to_string(),
                version: release.version.to_string(),
                reason: "no key to sign it with".into(),
            });
        };
        let payload = release.to_canonical_bytes()?;
        let payload_digest = Digest::of(&payload);
        let signatures = keys
            .iter()
            .map(|key| SignatureEntry {
                key_id: key.public().key_id(),
                signature: key.sign(RELEASE_CONTEXT, &payload_digest.0).to_vec(),
            })
            .collect();
        let envelope = Envelope {
            payload,
            payload_digest,
            signatures,
        };
        Ok(Self {
            release: release.clone(),
            signer: first.public().key_id(),
            envelope_bytes: envelope.to_bytes(),
        })
    }

    /// Verifies envelope bytes against trusted publisher keys and decodes the manifest.
    pub fn verify(envelope_bytes: &[u8], trusted: &Keyring) -> Result<Self, VerifyError> {
        let envelope = Envelope::from_bytes(envelope_bytes)?;
        let signer = envelope.verify(RELEASE_CONTEXT, trusted)?;
        let release = Release::from_canonical_bytes(&envelope.payload)?;
        Ok(Self {
            release,
            signer,
            envelope_bytes: envelope_bytes.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    #[test]
    fn a_signed_release_verifies_against_its_key() {
        let publisher = key(1);
        let signed = SignedRelease::sign(&sample(), &publisher).unwrap();
        let trusted = Keyring::new([publisher.public()]);
        let verified = SignedRelease::verify(&signed.envelope_bytes, &trusted).unwrap();
        assert_eq!(verified.release, sample());
        assert_eq!(verified.signer, publisher.public().key_id());
    }

    #[test]
    fn a_changed_payload_byte_is_reported_as_altered() {
        let publisher = key(1);
        let signed = SignedRelease::sign(&sample(), &publisher).unwrap();
        let mut envelope = Envelope::from_bytes(&signed.envelope_bytes).unwrap();
        let last = envelope.payload.len() - 1;
        envelope.payload[last] ^= 0x01;
        let err = SignedRelease::verify(&envelope.to_bytes(), &Keyring::new([publisher.public()]))
            .unwrap_err();
        assert!(matches!(err, VerifyError::PayloadAltered { .. }), "{err}");
    }

    #[test]
    fn a_payload_re_digested_by_an_attacker_fails_the_signature() {
        let publisher = key(1);
        let signed = SignedRelease::sign(&sample(), &publisher).unwrap();
        let mut envelope = Envelope::from_bytes(&signed.envelope_bytes).unwrap();
        let mut forged = sample();
        forged.variants[0].hash = Digest::of(b"malware");
        envelope.payload = forged.to_canonical_bytes().unwrap();
        envelope.payload_digest = Digest::of(&envelope.payload);
        let err = SignedRelease::verify(&envelope.to_bytes(), &Keyring::new([publisher.public()]))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::BadSignature {
                key_id: publisher.public().key_id()
            }
        );
    }

    #[test]
    fn a_signature_by_the_wrong_key_under_a_trusted_key_id_is_a_bad_signature() {
        let publisher = key(1);
        let impostor = key(4);
        let mut envelope = Envelope::from_bytes(
            &SignedRelease::sign(&sample(), &impostor)
                .unwrap()
                .envelope_bytes,
        )
        .unwrap();
        envelope.signatures[0].key_id = publisher.public().key_id();
        let err = SignedRelease::verify(&envelope.to_bytes(), &Keyring::new([publisher.public()]))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::BadSignature {
                key_id: publisher.public().key_id()
            }
        );
    }

    #[test]
    fn a_corrupted_signature_is_a_bad_signature() {
        let publisher = key(1);
        let signed = SignedRelease::sign(&sample(), &publisher).unwrap();
        let mut envelope = Envelope::from_bytes(&signed.envelope_bytes).unwrap();
        envelope.signatures[0].signature[10] ^= 0x80;
        let err = SignedRelease::verify(&envelope.to_bytes(), &Keyring::new([publisher.public()]))
            .unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn a_release_signed_by_an_unknown_key_is_refused() {
        let stranger = key(2);
        let signed = SignedRelease::sign(&sample(), &stranger).unwrap();
        let err = SignedRelease::verify(&signed.envelope_bytes, &Keyring::new([key(1).public()]))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::UnknownKey {
                key_ids: vec![stranger.public().key_id()]
            }
        );
        assert!(
            err.to_string()
                .contains(&stranger.public().key_id().to_string())
        );
    }

    #[test]
    fn a_signature_for_another_context_does_not_verify() {
        let k = key(3);
        let sig = k.sign(DEVICE_AUTH_CONTEXT, b"nonce");
        assert!(k.public().verify(DEVICE_AUTH_CONTEXT, b"nonce", &sig));
        assert!(!k.public().verify(RELEASE_CONTEXT, b"nonce", &sig));
    }

    #[test]
    fn bytes_after_the_envelope_are_refused() {
        let publisher = key(1);
        let mut bytes = SignedRelease::sign(&sample(), &publisher)
            .unwrap()
            .envelope_bytes;
        bytes.push(0);
        let err = SignedRelease::verify(&bytes, &Keyring::new([publisher.public()])).unwrap_err();
        assert!(
            matches!(&err, VerifyError::Malformed(m) if m.contains("after the envelope")),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let err = SignedRelease::verify(&[0xff; 7], &Keyring::default()).unwrap_err();
        assert!(matches!(err, VerifyError::Malformed(_)), "{err}");
    }

    #[test]
    fn keys_round_trip_as_text() {
        let k = key(9);
        let back = SecretKey::from_text(&format!("{}\n", k.to_text())).unwrap();
        assert_eq!(back.public(), k.public());
        let public: PublicKey = k.public().to_string().parse().unwrap();
        assert_eq!(public, k.public());
        assert!("ed25519:zz".parse::<PublicKey>().is_err());
        assert!(SecretKey::from_text(&k.public().to_string()).is_err());
    }
}
