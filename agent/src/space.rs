//! Disk space in the state directory. A download that cannot fit is not started
//! ([`shortfall`], pure), and a small reserve file is kept so that a switch or a rollback can
//! still write its journal and links when something else filled the disk: it is freed just
//! before they run on a nearly full disk, and made again once there is room.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Bytes the reserve file holds: far more than a switch journal, a few links and the state
/// file need.
pub const RESERVE_BYTES: u64 = 1024 * 1024;

/// What a download needs on top of its artifact: the chunk index, the envelope and the
/// state file's growth, with a margin.
pub const DOWNLOAD_MARGIN: u64 = 256 * 1024;

/// The reserve file's name in the state directory.
pub const RESERVE_FILE: &str = "space.reserve";

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// How many bytes are missing to stage an artifact of `size` bytes when `staged` of them are
/// already on disk and `free` bytes are free; `None` when it fits.
pub fn shortfall(size: u64, staged: u64, free: u64) -> Option<u64> {
    let needed = size
        .saturating_sub(staged)
        .saturating_add(size / 1024)
        .saturating_add(DOWNLOAD_MARGIN);
    (needed > free).then(|| needed - free)
}

/// Bytes of `path` really on disk (its allocated blocks, not its length: staging files are
/// sparse until their chunks arrive), or 0.
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map_or(0, |m| m.blocks().saturating_mul(512).min(m.len()))
}

/// Frees the reserve in `state_dir` when the disk is nearly full, so the step about to run
/// (a switch, a rollback) has room; true when it was freed.
pub fn make_room(state_dir: &Path) -> bool {
    let low = free_bytes(state_dir).map_or(true, |free| free < RESERVE_BYTES);
    let path = state_dir.join(RESERVE_FILE);
    if low && fs::remove_file(&path).is_ok() {
        tracing::warn!("the disk is nearly full: freed the reserve kept for switching");
        return true;
    }
    false
}

/// Makes the reserve in `state_dir` when it is missing and the disk has room for it and as
/// much again; a no-op otherwise.
pub fn keep_reserve(state_dir: &Path) -> io::Result<()> {
    let path = state_dir.join(RESERVE_FILE);
    if allocated(&path) >= RESERVE_BYTES {
        return Ok(());
    }
    if free_bytes(state_dir)? < 2 * RESERVE_BYTES + RESERVE_BYTES / 2 {
        return Ok(());
    }
    // Written, not just sized: a sparse file would reserve nothing.
    let written = (|| {
        let mut file = File::create(&path)?;
        let block = vec![0u8; 64 * 1024];
        let mut left = RESERVE_BYTES;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&path);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_that_cannot_fit_is_short_by_what_it_lacks() {
        let mib = 1024 * 1024;
        assert_eq!(shortfall(10 * mib, 0, 100 * mib), None);
        let short = shortfall(30 * mib, 0, 12 * mib).unwrap();
        assert!(short > 18 * mib && short < 19 * mib, "{short}");
        // What is already staged needs no room again.
        assert_eq!(shortfall(30 * mib, 25 * mib, 12 * mib), None);
        assert!(shortfall(u64::MAX, 0, u64::MAX / 2).is_some());
    }

    #[test]
    fn the_reserve_is_made_once_and_freed_only_when_the_disk_is_low() {
        let dir = tempfile::tempdir().unwrap();
        keep_reserve(dir.path()).unwrap();
        let path = dir.path().join(RESERVE_FILE);
        assert_eq!(fs::metadata(&path).unwrap().len(), RESERVE_BYTES);
        keep_reserve(dir.path()).unwrap();
        // A temp dir has room: nothing to free.
        assert!(!make_room(dir.path()));
        assert!(path.exists());
    }
}
