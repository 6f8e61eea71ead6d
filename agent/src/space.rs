//! Disk space in the state directory. A download that cannot fit is not started
//! ([`ferry_shared::disk_need`]), what the agent holds is measured for its reports
//! ([`disk_space`]), and a small reserve file is kept so that a switch or a rollback can
//! still write its journal and links when something else filled the disk: it is freed just
//! before they run on a nearly full disk, and made again once there is room.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Bytes the reserve file holds: far more than a switch journal, a few links and the state
/// file need.
pub const RESERVE_BYTES: u64 = 1024 * 1024;

/// The reserve file's name in the state directory.
pub const RESERVE_FILE: &str = "space.reserve";

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The file system holding `state_dir`: free and total bytes, and what the agent's own files
/// there take: `held` when the caller knows it, else walked (at most [`MAX_WALKED`] entries:
/// an unpacked model may be a tree of many small files).
pub fn disk_space(state_dir: &Path, held: Option<u64>) -> Option<ferry_shared::wire::DiskSpace> {
    let stat = rustix::fs::statvfs(state_dir).ok()?;
    Some(ferry_shared::wire::DiskSpace {
        free: stat.f_bavail.saturating_mul(stat.f_frsize),
        total: stat.f_blocks.saturating_mul(stat.f_frsize),
        held: held.unwrap_or_else(|| held_bytes(state_dir)),
    })
}

/// Most directory entries [`disk_space`] walks.
pub const MAX_WALKED: usize = 200_000;

/// Allocated bytes under `dir`, not following symbolic links.
fn held_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut walked = 0usize;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            walked += 1;
            if walked > MAX_WALKED {
                return total;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            }
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
    }
    total
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
    fn disk_space_counts_what_the_agent_holds() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("versions/m/1.0.0")).unwrap();
        fs::write(
            dir.path().join("versions/m/1.0.0/model.bin"),
            vec![7u8; 64 * 1024],
        )
        .unwrap();
        let space = disk_space(dir.path(), None).unwrap();
        assert!(space.held >= 64 * 1024, "{space:?}");
        assert!(space.total >= space.free && space.free > 0, "{space:?}");
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
