//! First-start material: the TLS certificate and the admin and enrollment tokens, created once
//! in the data directory with owner-only permissions and reused afterwards.

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
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Certificate generation.
    #[error("cannot create the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A token file holds something unusable.
    #[error("{path} does not hold a token (expected 64 hex characters)")]
    BadToken {
        /// File.
        path: PathBuf,
    },
    /// A key file holds something unusable.
    #[error("{path} does not hold an ed25519 private key: {reason}")]
    BadKey {
        /// File.
        path: PathBuf,
        /// Why.
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
    let fingerprint = ferry_shared::pin::fingerprint(&cert);
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

/// Loads the token in `path`, creating a random one (mode 0600) the first time. Returns the
/// token and whether it was created now.
pub fn token(path: &Path) -> Result<(String, bool), SecretsError> {
    if path.exists() {
        let text = fs::read_to_string(path).map_err(io_err(path))?;
        let token = text.trim().to_owned();
        if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SecretsError::BadToken {
                path: path.to_owned(),
            });
        }
        return Ok((token, false));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SecretsError::Io {
        path: path.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    let token = hex::encode(bytes);
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok((token, true))
}

/// Compares a presented secret with the expected one in constant time (BLAKE3 hashes compare
/// in constant time).
pub fn same_secret(presented: &str, expected: &str) -> bool {
    blake3::hash(presented.as_bytes()) == blake3::hash(expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tokens_are_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let (first, created) = token(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = token(&path).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        assert!(same_secret(&first, &again));
        assert!(!same_secret("nope", &again));
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
