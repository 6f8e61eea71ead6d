//! The embedded chunk engine: a directory, `<2 hex>/<64 hex>.zst` per frame (the layout a
//! mirror serves: [`ferry_shared::mirror::frame_path`]).
//!
//! Writes go to `tmp/`, their writeback started at once, and are fsynced and renamed into
//! place when their batch finishes; the directories a batch touched are fsynced before it
//! reports success, so a frame the database mentions is durable. A frame file is never in
//! place before its bytes are durable, so a crash cannot leave a torn frame that later
//! uploads would take as stored; and no upload waits on an fsync per chunk (858 of them took
//! a second of a 1 GiB publish).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ferry_shared::Digest;

use super::backend::{ChunkBackend, ChunkFile, FrameBatch};
use super::{ChunkStoreError, io_at, temp_path_in};

/// Frames in a local directory.
#[derive(Debug)]
pub struct LocalDir {
    root: PathBuf,
    /// Where this process writes frames before they are put in place (on the same file
    /// system as `root`, so the rename is atomic).
    tmp: PathBuf,
}

impl LocalDir {
    /// The frames under `root`, this process alone writing there; clears leftovers of
    /// interrupted writes from its `tmp/`.
    pub fn new(root: PathBuf) -> Result<Self, ChunkStoreError> {
        let tmp = root.join("tmp");
        Self::with_tmp(root, tmp)
    }

    /// The frames under `root`, a directory several coordinators share (a network file
    /// system): `node`'s unfinished writes go to a `tmp/` of its own, which it alone clears.
    pub fn shared(root: PathBuf, node: &str) -> Result<Self, ChunkStoreError> {
        let own: String = node
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let tmp = root.join("tmp").join(own);
        Self::with_tmp(root, tmp)
    }

    fn with_tmp(root: PathBuf, tmp: PathBuf) -> Result<Self, ChunkStoreError> {
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(Self { root, tmp })
    }

    /// Where chunk `hash`'s frame lives.
    pub(super) fn path(&self, hash: &Digest) -> PathBuf {
        chunk_path(&self.root, hash)
    }
}

/// Where chunk `hash`'s frame lives in a directory under `root`.
pub(super) fn chunk_path(root: &Path, hash: &Digest) -> PathBuf {
    root.join(ferry_shared::mirror::frame_path(hash))
}

impl ChunkBackend for LocalDir {
    fn read_into(&self, hash: &Digest, into: &mut Vec<u8>) -> Result<(), ChunkStoreError> {
        let path = self.path(hash);
        let read = File::open(&path).and_then(|mut file| {
            let len = file.metadata()?.len();
            into.reserve_exact(usize::try_from(len).unwrap_or_default());
            file.read_to_end(into)
        });
        match read {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ChunkStoreError::Missing(*hash)),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn frame_len(&self, hash: &Digest) -> Result<u64, ChunkStoreError> {
        let path = self.path(hash);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ChunkStoreError::Missing(*hash)),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn contains(&self, hash: &Digest) -> Result<bool, ChunkStoreError> {
        let path = self.path(hash);
        path.try_exists().map_err(io_at(&path))
    }

    fn batch(&self) -> Box<dyn FrameBatch + '_> {
        Box::new(LocalBatch {
            dir: self,
            pending: Mutex::default(),
        })
    }

    fn list(&self) -> Result<Vec<ChunkFile>, ChunkStoreError> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)
            .map_err(io_at(&self.root))?
            .flatten()
        {
            let name = dir.file_name();
            if name == "tmp" || name.len() != 2 || !dir.path().is_dir() {
                continue;
            }
            let path = dir.path();
            let entries = fs::read_dir(&path).map_err(io_at(&path))?;
            out.extend(
                named_by_hash(entries, ".zst")?
                    .into_iter()
                    .map(|(hash, meta)| ChunkFile {
                        hash,
                        size: meta.len(),
                        modified: modified_secs(&meta),
                    }),
            );
        }
        Ok(out)
    }

    fn remove(&self, hashes: &mut dyn Iterator<Item = &Digest>) -> Result<usize, ChunkStoreError> {
        let mut dirs = BTreeSet::new();
        let mut removed = 0;
        for hash in hashes {
            let path = self.path(hash);
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    if let Some(dir) = path.parent() {
                        dirs.insert(dir.to_owned());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        for dir in &dirs {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(dir))?;
        }
        Ok(removed)
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}

/// A batch of frame files under `tmp/`, by hash, with their final path: renamed into place
/// once their bytes are durable.
struct LocalBatch<'a> {
    dir: &'a LocalDir,
    pending: Mutex<HashMap<Digest, (PathBuf, PathBuf)>>,
}

impl LocalBatch<'_> {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, (PathBuf, PathBuf)>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FrameBatch for LocalBatch<'_> {
    fn put(&self, hash: &Digest, frame: &[u8]) -> Result<bool, ChunkStoreError> {
        let tmp = temp_path_in(&self.dir.tmp, &hash.short())?;
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
            file.write_all(frame).map_err(io_at(&tmp))?;
            ferry_shared::writeback::start_writeback(&file, 0, frame.len() as u64);
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        let mut pending = self.lock_pending();
        match pending.insert(*hash, (tmp, self.dir.path(hash))) {
            // Two threads stored the same chunk at once: one file is enough.
            Some((twin, _)) => {
                let _ = fs::remove_file(twin);
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// Each file's bytes made durable (their writeback started when written), then renamed,
    /// then the renames made durable. A batch that fails here leaves no temporary files
    /// behind: those not yet renamed are removed (by [`Drop`]).
    fn finish(self: Box<Self>) -> Result<(), ChunkStoreError> {
        let mut pending = self.lock_pending();
        let mut dirs = BTreeSet::new();
        for (tmp, _) in pending.values() {
            File::open(tmp)
                .and_then(|f| f.sync_data())
                .map_err(io_at(tmp))?;
        }
        let hashes: Vec<Digest> = pending.keys().copied().collect();
        for hash in hashes {
            let Some((tmp, path)) = pending.get(&hash).cloned() else {
                continue;
            };
            let dir = path.parent().map(Path::to_owned).unwrap_or_default();
            if dirs.insert(dir.clone()) {
                fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            }
            // Another batch may have put the same chunk in place meanwhile: same bytes.
            fs::rename(&tmp, &path).map_err(io_at(&path))?;
            pending.remove(&hash);
        }
        drop(pending);
        for dir in &dirs {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(dir))?;
        }
        if !dirs.is_empty() {
            let root = &self.dir.root;
            File::open(root)
                .and_then(|d| d.sync_all())
                .map_err(io_at(root))?;
        }
        Ok(())
    }
}

impl Drop for LocalBatch<'_> {
    /// A batch given up on (a failed upload) leaves no temporary files behind.
    fn drop(&mut self) {
        for (tmp, _) in self.lock_pending().values() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// The files among `entries` named `<hash><suffix>`, with their metadata; others are left be.
pub(super) fn named_by_hash(
    entries: fs::ReadDir,
    suffix: &str,
) -> Result<Vec<(Digest, fs::Metadata)>, ChunkStoreError> {
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(hash) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .and_then(|h| h.parse::<Digest>().ok())
        else {
            continue;
        };
        out.push((hash, entry.metadata().map_err(io_at(&entry.path()))?));
    }
    Ok(out)
}

/// When a file was last written (Unix seconds; 0 when unknown).
pub(super) fn modified_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}
