//! The device's identity: an ed25519 key created on first start in the state directory
//! (mode 0600). The device id derives from its public half, so it survives reinstalls of the
//! agent but not a wiped state directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use ferry_shared::SecretKey;
use ferry_shared::wire::DeviceId;

/// Loads `identity.key` from the state directory, creating it the first time.
pub fn load_or_create(state_dir: &Path) -> Result<(SecretKey, DeviceId, bool)> {
    let path = state_dir.join("identity.key");
    let created = !path.exists();
    if created {
        let key = SecretKey::generate()?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writeln!(file, "{}", key.to_text())?;
        file.sync_all()?;
    }
    let key = load(state_dir)?;
    let id = DeviceId::of(&key.public());
    Ok((key, id, created))
}

/// Loads an existing identity key.
pub fn load(state_dir: &Path) -> Result<SecretKey> {
    let path = state_dir.join("identity.key");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the device identity {}", path.display()))?;
    SecretKey::from_text(&text).with_context(|| format!("{}", path.display()))
}
