//! Durable file-system steps the agent builds its crash-safety from: write-then-rename with
//! fsyncs, directory fsync, and symlink replacement by rename.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::access;

/// Fsyncs a directory, making renames and new entries in it durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically: temp file, fsync, rename, directory fsync. A
/// failed write (a full disk, say) removes its temp file rather than leave it behind. The file
/// is the agent's alone ([`access::PRIVATE_FILE`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path)?;
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(access::PRIVATE_FILE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fsync_dir(dir)
}

/// Points the symlink `link` at `target` atomically (new link + rename), or removes it when
/// `target` is `None`. The caller fsyncs the directory once after its last change.
pub fn set_link(link: &Path, target: Option<&Path>) -> io::Result<()> {
    match target {
        None => match fs::remove_file(link) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Some(target) => {
            let tmp = link.with_extension("new");
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::os::unix::fs::symlink(target, &tmp)?;
            fs::rename(&tmp, link)
        }
    }
}

/// Removes a directory tree if it exists.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The parent directory of a path.
pub fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))
}
