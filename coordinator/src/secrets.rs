//! First-start material: the TLS certificate, the snapshot key and the bootstrap tokens
//! (admin, viewer, enrollment), created once in the data directory with owner-only
//! permissions and reused afterwards. Of the tokens the coordinator keeps only hashes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Failures while preparing secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// File I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Certificate generation.
    #[error("cannot create the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A token file holds something unusable.
    #[error("{path} does not hold a token (expected 64 hex characters)")]
    BadToken {
        /// The file concerned.
        path: PathBuf,
    },
    /// A bootstrap token's file and its hash disagree.
    #[error(
        "{token} does not match {hash}: remove both to make a new token, or put back the token the hash was made of"
    )]
    Mismatch {
        /// The token's file.
        token: PathBuf,
        /// The hash's file.
        hash: PathBuf,
    },
    /// A key file holds something unusable.
    #[error("{path} does not hold an ed25519 private key: {reason}")]
    BadKey {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong, in words.
        reason: String,
    },
}

/// Loads the online snapshot signing key at `path`, creating it (mode 0600) the first time.
/// Returns the key and whether it was created now. Its public half goes into the root
/// metadata as the snapshot role's key.
pub fn snapshot_key(path: &Path) -> Result<(ferry_shared::SecretKey, bool), SecretsError> {
    if path.exists() {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let key =
            ferry_shared::SecretKey::from_text(text.trim()).map_err(|e| SecretsError::BadKey {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        return Ok((key, false));
    }
    let key = ferry_shared::SecretKey::generate().map_err(|e| SecretsError::Io {
        path: path.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    write_private(path, format!("{}\n", key.to_text()).as_bytes())?;
    Ok((key, true))
}

/// The coordinator's TLS identity.
pub struct TlsIdentity {
    /// Certificate (DER).
    pub cert: CertificateDer<'static>,
    /// Private key (PKCS#8 DER).
    pub key: PrivateKeyDer<'static>,
    /// `sha256:<hex>` of the certificate, for agents to pin.
    pub fingerprint: String,
    /// Where the certificate is.
    pub cert_path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to a new file readable by the owner only; fails if it exists.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Loads `DIR/tls/{cert,key}.der`, creating a self-signed pair for `names` the first time.
/// Returns the identity and whether it was created now.
pub fn tls_identity(dir: &Path, names: &[String]) -> Result<(TlsIdentity, bool), SecretsError> {
    let tls = dir.join("tls");
    let cert_path = tls.join("cert.der");
    let key_path = tls.join("key.der");
    let created = !cert_path.exists();
    if created {
        fs::create_dir_all(&tls).map_err(io_err(&tls))?;
        let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
        write_private(&key_path, &generated.signing_key.serialize_der())?;
        fs::write(&cert_path, generated.cert.der()).map_err(io_err(&cert_path))?;
    }
    let cert = fs::read(&cert_path).map_err(io_err(&cert_path))?;
    let key = fs::read(&key_path).map_err(io_err(&key_path))?;
    let fingerprint = ferry_shared::fingerprint::fingerprint(&cert);
    Ok((
        TlsIdentity {
            cert: CertificateDer::from(cert),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            fingerprint,
            cert_path,
        },
        created,
    ))
}

/// QUIC keys that must survive coordinator restarts.
pub struct RestartKeys {
    /// HMAC key for stateless-reset tokens.
    pub reset: ring::hmac::Key,
    /// Key with which connection ids are generated and recognised.
    pub cid: u64,
}

/// Loads the QUIC restart secret (`DIR/tls/reset.key`), creating it the first time.
///
/// With it, a restarted coordinator recognises the connection ids of the process before it
/// and answers their packets with stateless resets the agents accept, so agents reconnect at
/// once instead of waiting out their idle timeout.
pub fn restart_keys(dir: &Path) -> Result<RestartKeys, SecretsError> {
    let path = dir.join("tls").join("reset.key");
    if !path.exists() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretsError::Io {
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let parent = path.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        write_private(&path, &bytes)?;
    }
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    let cid = blake3::derive_key("ferry/quic-cid-key/v1", &bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&cid[..8]);
    Ok(RestartKeys {
        reset: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
        cid: u64::from_le_bytes(first),
    })
}

/// A bootstrap bearer token, of which the coordinator keeps only a hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapToken(blake3::Hash);

impl BootstrapToken {
    fn of(token: &str) -> Self {
        Self(blake3::derive_key(TOKEN_HASH_CONTEXT, token.as_bytes()).into())
    }

    /// Whether `presented` is this token (in constant time: BLAKE3 hashes compare so).
    pub fn matches(&self, presented: &str) -> bool {
        Self::of(presented) == *self
    }
}

const TOKEN_HASH_CONTEXT: &str = "ferry bootstrap token 2026-11 v1";

/// What became of a bootstrap token's plaintext file at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFile {
    /// Created now, with its hash beside it.
    Created,
    /// There, as before.
    Kept,
    /// Removed by the operator; the hash alone admits the token.
    Removed,
}

/// The bootstrap token of `path` (e.g. `admin.token`): the first time, a random one written
/// to `path` (mode 0600) for the operator to collect, and its hash to `path.blake3`. Later
/// starts need only the hash, so the operator may delete the plaintext file once it is
/// stored elsewhere; a plaintext file without a hash (from an older coordinator) gets one.
pub fn token(path: &Path) -> Result<(BootstrapToken, TokenFile), SecretsError> {
    let hash_path = PathBuf::from(format!("{}.blake3", path.display()));
    let bad = |path: &Path| SecretsError::BadToken {
        path: path.to_owned(),
    };
    let plaintext = if path.exists() {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let token = text.trim().to_owned();
        if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(path));
        }
        Some(token)
    } else {
        None
    };
    if hash_path.exists() {
        let text = fs::read_to_string(&hash_path).map_err(io_err(&hash_path))?;
        let hash = blake3::Hash::from_hex(text.trim()).map_err(|_| bad(&hash_path))?;
        let stored = BootstrapToken(hash);
        return match plaintext {
            Some(token) if !stored.matches(&token) => Err(SecretsError::Mismatch {
                token: path.to_owned(),
                hash: hash_path,
            }),
            Some(_) => Ok((stored, TokenFile::Kept)),
            None => Ok((stored, TokenFile::Removed)),
        };
    }
    let (token, file) = match plaintext {
        Some(token) => (token, TokenFile::Kept),
        None => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| SecretsError::Io {
                path: path.to_owned(),
                source: io::Error::other(e.to_string()),
            })?;
            let token = hex::encode(bytes);
            write_private(path, format!("{token}\n").as_bytes())?;
            (token, TokenFile::Created)
        }
    };
    let stored = BootstrapToken::of(&token);
    write_private(&hash_path, format!("{}\n", stored.0.to_hex()).as_bytes())?;
    Ok((stored, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_created_private_then_kept_as_a_hash_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let hash_path = dir.path().join("admin.token.blake3");
        let (first, file) = token(&path).unwrap();
        assert_eq!(file, TokenFile::Created);
        for p in [&path, &hash_path] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let plaintext = fs::read_to_string(&path).unwrap();
        assert!(first.matches(plaintext.trim()));
        assert!(!first.matches("nope"));
        assert!(
            !fs::read_to_string(&hash_path)
                .unwrap()
                .contains(plaintext.trim()),
            "the hash file does not hold the token"
        );
        let (again, file) = token(&path).unwrap();
        assert_eq!((again.clone(), file), (first.clone(), TokenFile::Kept));
        // The operator took the token away: the hash alone admits it, and no new one appears.
        fs::remove_file(&path).unwrap();
        let (kept, file) = token(&path).unwrap();
        assert_eq!((kept.clone(), file), (first, TokenFile::Removed));
        assert!(kept.matches(plaintext.trim()));
        assert!(!path.exists());
        // Another token put in its place is refused, not silently trusted or ignored.
        fs::write(&path, "ab".repeat(32)).unwrap();
        assert!(matches!(token(&path), Err(SecretsError::Mismatch { .. })));
        // A token from before hashes existed gets its hash.
        fs::remove_file(&hash_path).unwrap();
        let (migrated, file) = token(&path).unwrap();
        assert_eq!(file, TokenFile::Kept);
        assert!(migrated.matches(&"ab".repeat(32)));
        assert!(hash_path.exists());
    }

    #[test]
    fn the_certificate_is_stable_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let (a, created) = tls_identity(dir.path(), &names).unwrap();
        assert!(created);
        let (b, created) = tls_identity(dir.path(), &names).unwrap();
        assert!(!created);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert!(a.fingerprint.starts_with("sha256:"));
    }
}
