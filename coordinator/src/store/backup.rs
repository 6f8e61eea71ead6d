//! Online backups of a coordinator's stores, and their restore. A backup is a directory
//! holding a consistent copy of the records as an embedded database ([`Store::copy_to`]: one
//! read transaction, while writers go on; from PostgreSQL as from redb), every chunk frame
//! (from whichever chunk engine holds them), the TLS identity, the snapshot key and the token
//! hashes, and `manifest.json` naming each file with its size and BLAKE3 hash: the same
//! format whatever the stores were. The caller holds the GC fence (shared) meanwhile, so no
//! chunk the copy refers to is removed before it is copied; chunks are immutable and
//! content-addressed, so a copy of one is never torn. Cached deltas are left out: they are
//! made again on demand.
//!
//! Restore checks every file against the manifest before it writes anything. Into a data
//! directory ([`restore`]): only one without a database. Into shared stores
//! ([`restore_into`]): only an empty database, the records moved in one transaction and
//! checked by walking the audit chain, the frames put into the chunk engine.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::api::BackupSummary;
use crate::store::chunks::{ChunkStore, ChunkStoreError};
use crate::store::{Store, StoreError};

/// The manifest's file name in a backup.
pub const MANIFEST: &str = "manifest.json";
/// The database's file name, in a data directory and in a backup.
pub const DATABASE: &str = "ferry.redb";
/// The directory of chunk frames, in a data directory and in a backup.
const CHUNKS: &str = "chunks";
/// The format of backups this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;

/// Files of the data directory carried besides the database and the chunks (when present).
const KEYS: &[&str] = &[
    "tls/cert.der",
    "tls/key.der",
    "tls/reset.key",
    "snapshot.key",
    "admin.token.blake3",
    "viewer.token.blake3",
    "enrollment.token.blake3",
];

/// What a backup holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`BACKUP_FORMAT`] of the build that wrote it.
    pub format: u32,
    /// When it was taken (unix seconds).
    pub created_at: u64,
    /// The store format of its database.
    pub store_format: u64,
    /// Every file, by path relative to the backup, with its size and hash.
    pub files: BTreeMap<String, FileEntry>,
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE3, hex.
    pub blake3: String,
}

/// A backup or restore that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The database could not be copied.
    #[error("cannot copy the database: {0}")]
    Store(#[from] StoreError),
    /// The chunks could not be read or stored.
    #[error("cannot copy the chunks: {0}")]
    Chunks(#[from] ChunkStoreError),
    /// The destination already holds something.
    #[error("{0}")]
    NotEmpty(String),
    /// The backup is damaged, incomplete or of another format.
    #[error("the backup in {dir} cannot be used: {why}")]
    Damaged {
        /// The backup.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a backup of `store`, `chunks` and the key files of `data_dir` into `to`, a
/// directory that does not exist yet or is empty. The caller holds the GC fence (shared)
/// throughout.
pub fn write(
    store: &Store,
    chunks: &ChunkStore,
    data_dir: &Path,
    to: &Path,
    now: u64,
) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    make_empty_dir(to)?;
    let records = store.copy_to(&to.join(DATABASE))?;
    let mut files = BTreeMap::new();
    files.insert(DATABASE.to_owned(), hash_file(&to.join(DATABASE))?);
    let mut frames = chunks.list()?;
    frames.sort_by_key(|f| f.hash);
    let mut frame = Vec::new();
    for stored in frames {
        let name = format!(
            "{CHUNKS}/{}",
            ferry_shared::mirror::frame_path(&stored.hash)
        );
        frame.clear();
        chunks.stored_frame_into(&stored.hash, &mut frame)?;
        files.insert(name.clone(), write_hashed(&to.join(&name), &frame)?);
    }
    for name in KEYS {
        let source = data_dir.join(name);
        if source.exists() {
            files.insert((*name).to_owned(), copy_hashed(&source, &to.join(name))?);
        }
    }
    let manifest = BackupManifest {
        format: BACKUP_FORMAT,
        created_at: now,
        store_format: crate::store::migrate::STORE_FORMAT,
        files,
    };
    let bytes = manifest.files.values().map(|f| f.size).sum();
    let count = manifest.files.len() as u64;
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Damaged {
        dir: to.to_owned(),
        why: e.to_string(),
    })?;
    let path = to.join(MANIFEST);
    write_synced(&path, &text)?;
    sync_dir(to)?;
    Ok(BackupSummary {
        dir: to.to_owned(),
        files: count,
        bytes,
        records,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Reads and checks the manifest of the backup in `from`: every file present with its size
/// and hash.
pub fn check(from: &Path) -> Result<BackupManifest, BackupError> {
    let damaged = |why: String| BackupError::Damaged {
        dir: from.to_owned(),
        why,
    };
    let path = from.join(MANIFEST);
    let text = fs::read(&path).map_err(|e| damaged(format!("no readable {MANIFEST}: {e}")))?;
    let manifest: BackupManifest = serde_json::from_slice(&text)
        .map_err(|e| damaged(format!("{MANIFEST} is not a backup manifest: {e}")))?;
    if manifest.format > BACKUP_FORMAT {
        return Err(damaged(format!(
            "written by a newer Ferry (backup format {}; this build reads up to {BACKUP_FORMAT})",
            manifest.format
        )));
    }
    if !manifest.files.contains_key(DATABASE) {
        return Err(damaged(format!("it holds no {DATABASE}")));
    }
    for (name, expected) in &manifest.files {
        let relative =
            safe_relative(name).ok_or_else(|| damaged(format!("unsafe path {name:?}")))?;
        let found = hash_file(&from.join(relative)).map_err(|e| damaged(format!("{name}: {e}")))?;
        if &found != expected {
            return Err(damaged(format!(
                "{name} is {} bytes with hash {}, the manifest says {} bytes with hash {}",
                found.size, found.blake3, expected.size, expected.blake3
            )));
        }
    }
    Ok(manifest)
}

/// Brings the backup in `from` back into `data_dir`, which holds no database yet. Every
/// file is checked against the manifest first.
pub fn restore(from: &Path, data_dir: &Path) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    let manifest = check(from)?;
    if data_dir.join(DATABASE).exists() {
        return Err(BackupError::NotEmpty(format!(
            "{} already holds a database: restore into a new data directory",
            data_dir.display()
        )));
    }
    fs::create_dir_all(data_dir).map_err(io_at(data_dir))?;
    let mut bytes = 0;
    // The database last: a data directory with a database is a complete one.
    let names = manifest
        .files
        .keys()
        .map(String::as_str)
        .filter(|n| *n != DATABASE)
        .chain(std::iter::once(DATABASE));
    for name in names {
        let relative = safe_relative(name).ok_or_else(|| BackupError::Damaged {
            dir: from.to_owned(),
            why: format!("unsafe path {name:?}"),
        })?;
        let entry = copy_hashed(&from.join(relative), &data_dir.join(relative))?;
        if manifest.files.get(name) != Some(&entry) {
            return Err(BackupError::Damaged {
                dir: from.to_owned(),
                why: format!("{name} changed while it was restored"),
            });
        }
        bytes += entry.size;
    }
    sync_dir(data_dir)?;
    Ok(BackupSummary {
        dir: from.to_owned(),
        files: manifest.files.len() as u64,
        bytes,
        records: 0,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Brings the backup in `from` back into shared stores: its records into `records` (an
/// empty database: refused otherwise), in one transaction checked by walking the audit
/// chain on both sides, last; its frames into `chunks`; its key files into `data_dir`, which
/// must hold no others (the identity every node of the fleet then shares). Every file is
/// checked against the manifest first. A restore that stopped midway is run again as it was.
pub fn restore_into(
    from: &Path,
    records: &Store,
    chunks: &ChunkStore,
    data_dir: &Path,
) -> Result<BackupSummary, BackupError> {
    let started = Instant::now();
    let manifest = check(from)?;
    for name in KEYS {
        let (Some(expected), path) = (manifest.files.get(*name), data_dir.join(name)) else {
            continue;
        };
        // The backup's own copy (a restore run again after it stopped) may stay.
        if path.exists() && hash_file(&path).ok().as_ref() != Some(expected) {
            return Err(BackupError::NotEmpty(format!(
                "{} already holds another {name}: restore into a data directory without keys",
                data_dir.display()
            )));
        }
    }
    if let Some(table) = records.first_filled()? {
        return Err(BackupError::NotEmpty(format!(
            "{} already holds records ({table}): restore into an empty database",
            records.describe()
        )));
    }
    fs::create_dir_all(data_dir).map_err(io_at(data_dir))?;
    // Frames and keys first, the records last: a database with records is a restored one
    // (a restore stopped before then is run again into the same stores).
    let mut bytes = 0;
    let batch = chunks.frame_batch();
    for (name, entry) in &manifest.files {
        let Some(hash) = frame_hash(name) else {
            continue;
        };
        let path = from.join(name);
        let frame = fs::read(&path).map_err(io_at(&path))?;
        if blake3::hash(&frame).to_hex().as_str() != entry.blake3 {
            return Err(BackupError::Damaged {
                dir: from.to_owned(),
                why: format!("{name} changed while it was restored"),
            });
        }
        batch.put(&hash, &frame)?;
        bytes += entry.size;
    }
    batch.finish()?;
    for name in KEYS {
        if let Some(expected) = manifest.files.get(*name) {
            let entry = copy_hashed(&from.join(name), &data_dir.join(name))?;
            if &entry != expected {
                return Err(BackupError::Damaged {
                    dir: from.to_owned(),
                    why: format!("{name} changed while it was restored"),
                });
            }
            bytes += entry.size;
        }
    }
    // The backup's database is opened from a copy: opening migrates an older format, and the
    // backup stays as it was.
    let scratch = Scratch::new(data_dir.join(".restore"))?;
    let copy = scratch.0.join(DATABASE);
    bytes += copy_hashed(&from.join(DATABASE), &copy)?.size;
    let moved = Store::open(&copy)?.move_into(records)?;
    drop(scratch);
    sync_dir(data_dir)?;
    Ok(BackupSummary {
        dir: from.to_owned(),
        files: manifest.files.len() as u64,
        bytes,
        records: moved.records,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// A directory of this process's own, removed when dropped (and first, should an
/// interrupted restore have left it).
struct Scratch(PathBuf);

impl Scratch {
    fn new(dir: PathBuf) -> Result<Self, BackupError> {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The chunk a backup's file name holds the frame of (`chunks/ab/ab….zst`), if it is one.
fn frame_hash(name: &str) -> Option<ferry_shared::Digest> {
    let rest = name.strip_prefix(CHUNKS)?.strip_prefix('/')?;
    let (dir, file) = rest.split_once('/')?;
    let hex = file.strip_suffix(".zst")?;
    let hash: ferry_shared::Digest = hex.parse().ok()?;
    (ferry_shared::mirror::frame_path(&hash) == format!("{dir}/{file}")).then_some(hash)
}

/// `name` as a relative path that stays inside the directory it is joined to.
fn safe_relative(name: &str) -> Option<&Path> {
    let path = Path::new(name);
    path.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then_some(path)
}

/// Creates `dir` (private), or accepts it when it exists and is empty.
fn make_empty_dir(dir: &Path) -> Result<(), BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(format!(
                    "{} is not empty: a backup goes into a new or empty directory",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_at(dir))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_at(dir))?;
            }
            Ok(())
        }
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// Writes `bytes` to `to` (creating its directory) and fsyncs it; returns its entry.
fn write_hashed(to: &Path, bytes: &[u8]) -> Result<FileEntry, BackupError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    write_synced(to, bytes)?;
    Ok(FileEntry {
        size: bytes.len() as u64,
        blake3: blake3::hash(bytes).to_hex().to_string(),
    })
}

/// Copies `from` to `to` (creating its directory), hashing the bytes on the way; fsyncs it.
fn copy_hashed(from: &Path, to: &Path) -> Result<FileEntry, BackupError> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    let mut source = File::open(from).map_err(io_at(from))?;
    let mut target = File::create(to).map_err(io_at(to))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = source.read(&mut buf).map_err(io_at(from))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        target.write_all(&buf[..n]).map_err(io_at(to))?;
        size += n as u64;
    }
    target.sync_all().map_err(io_at(to))?;
    Ok(FileEntry {
        size,
        blake3: hasher.finalize().to_hex().to_string(),
    })
}

fn hash_file(path: &Path) -> Result<FileEntry, BackupError> {
    let file = File::open(path).map_err(io_at(path))?;
    let size = file.metadata().map_err(io_at(path))?.len();
    let digest = ferry_shared::Digest::of_file(&file, size).map_err(io_at(path))?;
    Ok(FileEntry {
        size,
        blake3: digest.to_hex(),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = File::create(path).map_err(io_at(path))?;
    file.write_all(bytes).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_frame_names_in_the_chunk_layout_name_chunks() {
        let hash = ferry_shared::Digest::of(b"frame");
        let name = format!("chunks/{}", ferry_shared::mirror::frame_path(&hash));
        assert_eq!(frame_hash(&name), Some(hash));
        let hex = hash.to_hex();
        assert_eq!(frame_hash(&format!("chunks/zz/{hex}.zst")), None);
        assert_eq!(frame_hash(&format!("chunks/{}/{hex}", &hex[..2])), None);
        assert_eq!(frame_hash("snapshot.key"), None);
        assert_eq!(frame_hash("chunks/ab/not-hex.zst"), None);
    }

    #[test]
    fn paths_that_leave_the_directory_are_not_safe() {
        assert!(safe_relative("chunks/ab/abcd.zst").is_some());
        assert!(safe_relative("../etc/passwd").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("chunks/../../x").is_none());
    }
}
