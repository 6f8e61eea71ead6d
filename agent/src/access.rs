//! Who may read what in the state directory.
//!
//! The agent runs as its own user; the model server runs as another user in the agent's group
//! (`ferry-models` in the packaged unit, where it is the service's `Group=`). Installed
//! versions, the links to them and the directories on the way are readable by that group, the
//! metrics socket is writable by it, and everything else (the identity key, the agent and trust
//! state, downloads in progress, journals) stays the agent's own. Modes are set explicitly
//! rather than left to the umask, so an agent started with `umask 077` still serves a model
//! server of its group, and an agent upgraded from a build that installed everything 0600 opens
//! its versions up at start ([`share_tree`] in reconciliation).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Directories the model server walks through or reads: the state directory, `models/`,
/// `versions/` and what is under them.
pub const SHARED_DIR: u32 = 0o750;
/// Installed artifact files (the executable bits of a file that had them are kept).
pub const SHARED_FILE: u32 = 0o640;
/// The metrics socket: the model server sends to it, which takes write permission.
pub const SOCKET: u32 = 0o660;
/// Everything the agent alone reads: state, trust, journals, keys.
pub const PRIVATE_FILE: u32 = 0o600;

/// Sets `path`'s mode.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Makes `dir` and every directory between `root` and it (both included) exist with
/// [`SHARED_DIR`]. The root may belong to someone else (an administrator's directory the
/// agent's group may write): its mode is then left as it is.
pub fn create_shared_dir(root: &Path, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut at = Some(dir);
    while let Some(path) = at {
        let set = ensure_mode(path, SHARED_DIR);
        if path == root || !path.starts_with(root) {
            match set {
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                other => other?,
            }
            break;
        }
        set?;
        at = path.parent();
    }
    Ok(())
}

/// Sets `path`'s mode unless it already has it (which needs no ownership).
fn ensure_mode(path: &Path, mode: u32) -> io::Result<()> {
    if fs::symlink_metadata(path)?.permissions().mode() & 0o7777 == mode {
        return Ok(());
    }
    set_mode(path, mode)
}

/// Gives a directory tree the shared modes: directories [`SHARED_DIR`], files [`SHARED_FILE`]
/// (plus the group's execute bit where the owner has one). Symbolic links are not followed.
pub fn share_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Ok(());
    }
    if kind.is_dir() {
        ensure_mode(path, SHARED_DIR)?;
        for entry in fs::read_dir(path)? {
            share_tree(&entry?.path())?;
        }
        return Ok(());
    }
    let executable = meta.permissions().mode() & 0o100 != 0;
    ensure_mode(
        path,
        if executable {
            SHARED_FILE | 0o110
        } else {
            SHARED_FILE
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn share_tree_opens_files_and_dirs_to_the_group_and_keeps_execute_bits() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("v1");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("model.onnx"), b"m").unwrap();
        fs::write(tree.join("sub/run"), b"#!/bin/sh").unwrap();
        set_mode(&tree.join("model.onnx"), 0o600).unwrap();
        set_mode(&tree.join("sub/run"), 0o700).unwrap();
        set_mode(&tree.join("sub"), 0o700).unwrap();
        set_mode(&tree, 0o700).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
        share_tree(&tree).unwrap();
        assert_eq!(mode(&tree), 0o750);
        assert_eq!(mode(&tree.join("sub")), 0o750);
        assert_eq!(mode(&tree.join("model.onnx")), 0o640);
        assert_eq!(mode(&tree.join("sub/run")), 0o750);
        assert_eq!(
            mode(Path::new("/etc/passwd")),
            0o644,
            "links are not followed"
        );
    }

    #[test]
    fn create_shared_dir_sets_every_level_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        fs::create_dir(&root).unwrap();
        set_mode(&root, 0o700).unwrap();
        let leaf = root.join("versions").join("m");
        create_shared_dir(&root, &leaf).unwrap();
        for path in [&root, &root.join("versions"), &leaf] {
            assert_eq!(mode(path), 0o750, "{}", path.display());
        }
        assert_ne!(mode(dir.path()), 0o750, "nothing above the root is touched");
    }
}
