//! Directory artifacts on the device: after the archive's signed hash has been checked in
//! staging, its tree is unpacked beside it (`model.tar` → `model/`), so the version appears in
//! `versions/` only whole, by the same rename as a file artifact. The archive stays too: it is
//! what later updates copy chunks from and compute deltas against.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use ferry_shared::Variant;
use ferry_shared::archive::{self, ArchiveError};
use ferry_shared::manifest::ArtifactKind;

use crate::fsutil::remove_tree;

/// Why a verified archive could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The disk: may work later.
    #[error("unpacking {path}: {source}")]
    Disk {
        /// The archive or the file being written.
        path: PathBuf,
        /// What went wrong.
        source: ArchiveError,
    },
    /// The archive holds what a device never unpacks, or is named so that its tree would
    /// cover the agent's own files: trying again cannot help.
    #[error("{0}")]
    Refused(String),
}

/// The directory `variant` unpacks into under `version_dir`, or `None` for a file artifact.
pub fn unpacked_dir(version_dir: &Path, variant: &Variant) -> Option<PathBuf> {
    match variant.kind {
        ArtifactKind::File => None,
        ArtifactKind::Directory => variant
            .file_name
            .unpacked_dir()
            .map(|dir| version_dir.join(dir)),
    }
}

/// Unpacks a directory artifact's verified archive in `staging` (a no-op for a file
/// artifact). What an interrupted earlier attempt left is removed first. `reserved` names the
/// agent's own files in a version directory, which the tree must not cover.
pub fn unpack_staged(
    staging: &Path,
    variant: &Variant,
    reserved: &[&str],
) -> Result<(), UnpackError> {
    if variant.kind == ArtifactKind::File {
        return Ok(());
    }
    let Some(dir) = variant.file_name.unpacked_dir() else {
        return Err(UnpackError::Refused(format!(
            "directory artifact {} is not named NAME.tar",
            variant.file_name
        )));
    };
    if reserved.contains(&dir) {
        return Err(UnpackError::Refused(format!(
            "directory artifact {} would unpack over the agent's own {dir}",
            variant.file_name
        )));
    }
    let into = staging.join(dir);
    let disk = |path: &Path, source: ArchiveError| UnpackError::Disk {
        path: path.to_owned(),
        source,
    };
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| UnpackError::Disk {
            path: path.clone(),
            source: ArchiveError::Io { path, source },
        }
    };
    match fs::symlink_metadata(&into) {
        Ok(meta) if meta.is_dir() => remove_tree(&into).map_err(io(&into))?,
        Ok(_) => fs::remove_file(&into).map_err(io(&into))?,
        Err(_) => {}
    }
    let archive_path = staging.join(variant.file_name.as_str());
    let file = fs::File::open(&archive_path).map_err(io(&archive_path))?;
    match archive::unpack(BufReader::new(file), &into) {
        Ok(tally) => {
            tracing::info!(
                files = tally.files,
                dirs = tally.dirs,
                bytes = tally.bytes,
                "unpacked {}",
                into.display()
            );
            crate::fsutil::fsync_dir(staging).map_err(io(staging))
        }
        Err(e) => {
            let _ = remove_tree(&into);
            match e {
                ArchiveError::Io { .. } => Err(disk(&archive_path, e)),
                other => Err(UnpackError::Refused(format!(
                    "{}: {other}",
                    variant.file_name
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_shared::Digest;

    use super::*;

    fn directory_variant(name: &str) -> Variant {
        Variant {
            target: ferry_shared::Target::Any,
            accelerator: ferry_shared::Accelerator::Any,
            file_name: name.parse().unwrap(),
            size: 0,
            hash: Digest::of(b""),
            chunks: Digest::of(b""),
            kind: ArtifactKind::Directory,
            requires: Vec::new(),
        }
    }

    fn stage_archive(staging: &Path, name: &str) {
        let tree = tempfile::tempdir().unwrap();
        fs::write(tree.path().join("MLmodel"), b"flavors: {}").unwrap();
        let out = fs::File::create(staging.join(name)).unwrap();
        ferry_shared::archive::pack(tree.path(), out).unwrap();
    }

    #[test]
    fn a_retry_unpacks_over_what_an_interrupted_attempt_left() {
        let staging = tempfile::tempdir().unwrap();
        stage_archive(staging.path(), "model.tar");
        // An earlier attempt died halfway through unpacking.
        fs::create_dir_all(staging.path().join("model/half")).unwrap();
        fs::write(staging.path().join("model/half/written"), b"partial").unwrap();
        unpack_staged(staging.path(), &directory_variant("model.tar"), &[]).unwrap();
        assert_eq!(
            fs::read(staging.path().join("model/MLmodel")).unwrap(),
            b"flavors: {}"
        );
        assert!(!staging.path().join("model/half").exists());
    }

    #[test]
    fn a_tree_that_would_cover_the_agents_own_files_is_refused() {
        let staging = tempfile::tempdir().unwrap();
        stage_archive(staging.path(), "chunks.idx.tar");
        let err = unpack_staged(
            staging.path(),
            &directory_variant("chunks.idx.tar"),
            &["chunks.idx"],
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Refused(_)), "{err}");
    }

    #[test]
    fn a_hostile_archive_is_refused_and_leaves_no_tree() {
        let staging = tempfile::tempdir().unwrap();
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..9].copy_from_slice(b"../escape");
        header.set_size(0);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.resize(2048, 0);
        fs::write(staging.path().join("model.tar"), bytes).unwrap();
        let err = unpack_staged(staging.path(), &directory_variant("model.tar"), &[]).unwrap_err();
        assert!(matches!(err, UnpackError::Refused(_)), "{err}");
        assert!(!staging.path().join("model").exists());
        assert!(!staging.path().parent().unwrap().join("escape").exists());
    }
}
