//! Small file systems for tests of full disks: a tmpfs of a given size, mounted where the
//! test says (root only; elsewhere the tests that need one report a skip).

use anyhow::Result;

/// A tmpfs of `mib` MiB mounted at a path until dropped.
pub struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// Mounts it at `path` (created); `None` where mounting is not permitted (not root),
    /// which the caller reports as a skip.
    pub fn mount(path: &std::path::Path, mib: u32) -> Result<Option<SmallDisk>> {
        std::fs::create_dir_all(path)?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()?;
        Ok(status.success().then(|| SmallDisk(path.to_owned())))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
