//! The device's identity: an ed25519 key created on first start in the state directory
//! (mode 0600). The device id derives from its public half, so it survives reinstalls of the
//! agent but not a wiped state directory.
//!
//! The key file appears whole or not at all (written beside, fsynced, renamed, directory
//! fsynced): a power cut during the first start must not leave a device that can never start
//! again.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use ferry_shared::SecretKey;
use ferry_shared::wire::DeviceId;
use tracing::warn;

use crate::fsutil::fsync_dir;

const FILE: &str = "identity.key";
const TEMP: &str = "identity.key.tmp";

/// Loads `identity.key` from the state directory, creating it the first time. Returns the
/// key, the device id, and whether it was created now.
pub fn load_or_create(state_dir: &Path) -> Result<(SecretKey, DeviceId, bool)> {
    let path = state_dir.join(FILE);
    // An agent before the key file was written atomically could leave it empty when stopped
    // mid-creation; a key file is never legitimately empty, so that one is created again.
    let unfinished = fs::metadata(&path).is_ok_and(|m| m.len() == 0);
    let created = !path.exists() || unfinished;
    if created {
        if unfinished {
            warn!(
                path = %path.display(),
                "the identity key was left empty by an interrupted first start; creating it again"
            );
        }
        create(state_dir).with_context(|| format!("cannot create {}", path.display()))?;
    }
    let key = load(state_dir)?;
    let id = DeviceId::of(&key.public());
    Ok((key, id, created))
}

fn create(state_dir: &Path) -> Result<()> {
    let key = SecretKey::generate()?;
    let temp = state_dir.join(TEMP);
    // A leftover of an interrupted attempt: start afresh, so the mode below applies.
    let _ = fs::remove_file(&temp);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        writeln!(file, "{}", key.to_text())?;
        file.sync_all()?;
    }
    fs::rename(&temp, state_dir.join(FILE))?;
    fsync_dir(state_dir)?;
    Ok(())
}

/// Loads an existing identity key.
pub fn load(state_dir: &Path) -> Result<SecretKey> {
    let path = state_dir.join(FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the device identity {}", path.display()))?;
    SecretKey::from_text(&text).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_identity_is_created_private_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (key, id, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        let mode = fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join(TEMP).exists());
        let (again, same_id, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!((again.public(), same_id), (key.public(), id));
    }

    /// Regression: an agent killed during its first start left `identity.key` empty, and
    /// every later start failed on it ("not a secret key") until someone deleted the file.
    #[test]
    fn an_identity_left_empty_or_half_written_by_a_crash_does_not_stop_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"").unwrap();
        fs::write(dir.path().join(TEMP), b"ferry-ed25519-sec").unwrap();
        let (key, _, created) = load_or_create(dir.path()).unwrap();
        assert!(created);
        assert_eq!(load(dir.path()).unwrap().public(), key.public());
        assert!(!dir.path().join(TEMP).exists());
    }

    #[test]
    fn a_damaged_identity_is_an_error_not_a_new_device() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"not a key\n").unwrap();
        let err = load_or_create(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not a secret key"), "{err:#}");
        assert_eq!(
            fs::read(dir.path().join(FILE)).unwrap(),
            b"not a key\n",
            "left as found"
        );
    }
}
