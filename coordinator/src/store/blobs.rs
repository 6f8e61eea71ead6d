//! The content-addressed artifact store: `blobs/<2 hex>/<64 hex>.zst`, each file the zstd
//! compression of an artifact whose BLAKE3 is its name.
//!
//! Uploads stream through a hasher and a compressor into a temporary file; only when the
//! bytes hash to the name they were uploaded under is the file fsynced and renamed into place
//! (then its directory fsynced). A failed or abandoned upload leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ferry_shared::Digest;
use ferry_shared::digest::Hasher;
use redb::ReadableDatabase;

use super::codec::{decode, encode};
use super::records::BlobRecord;
use super::tables::BLOBS;
use super::{Store, StoreError};

/// Artifact bytes on disk.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    level: i32,
}

/// Failures while storing an upload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The bytes do not hash to the name they were uploaded under.
    #[error("uploaded bytes hash to {actual}, not {expected}")]
    HashMismatch {
        /// The name it was uploaded under.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The upload exceeded the size limit.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Disk I/O failed.
    #[error("blob store I/O at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl BlobStore {
    /// A store under `root` compressing at zstd `level`.
    pub fn new(root: PathBuf, level: i32) -> Result<Self, BlobError> {
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|source| BlobError::Io {
            path: tmp.clone(),
            source,
        })?;
        // Leftovers of uploads interrupted by a crash.
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { root, level })
    }

    /// Where the blob named `hash` lives.
    pub fn path(&self, hash: &Digest) -> PathBuf {
        let hex = hash.to_hex();
        self.root.join(&hex[..2]).join(format!("{hex}.zst"))
    }

    /// Starts an upload that must hash to `expected`, at most `limit` bytes.
    pub fn writer(&self, expected: Digest, limit: u64) -> Result<BlobWriter, BlobError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| BlobError::Io {
            path: self.root.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        let tmp =
            self.root
                .join("tmp")
                .join(format!("{}.{}", expected.short(), hex::encode(nonce)));
        let io_err = |source| BlobError::Io {
            path: tmp.clone(),
            source,
        };
        let file = File::create(&tmp).map_err(io_err)?;
        let mut encoder = zstd::Encoder::new(file, self.level).map_err(io_err)?;
        // A frame checksum lets agents notice a damaged copy while decoding.
        encoder.include_checksum(true).map_err(io_err)?;
        Ok(BlobWriter {
            tmp,
            final_path: self.path(&expected),
            encoder: Some(encoder),
            hasher: Hasher::new(),
            expected,
            size: 0,
            limit,
        })
    }
}

/// An upload in progress; dropping it unfinished removes the temporary file.
pub struct BlobWriter {
    tmp: PathBuf,
    final_path: PathBuf,
    encoder: Option<zstd::Encoder<'static, File>>,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    limit: u64,
}

impl BlobWriter {
    /// Feeds more uploaded bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        self.hasher.update(bytes);
        let encoder = self.encoder.as_mut().ok_or_else(|| BlobError::Io {
            path: self.tmp.clone(),
            source: io::Error::other("writer already finished"),
        })?;
        encoder.write_all(bytes).map_err(|source| BlobError::Io {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Checks the hash, makes the file durable and moves it into place.
    pub fn finish(mut self, now: u64) -> Result<(Digest, BlobRecord), BlobError> {
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(BlobError::HashMismatch {
                expected: self.expected,
                actual,
            });
        }
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| BlobError::Io { path, source }
        };
        let encoder = self.encoder.take().ok_or_else(|| BlobError::Io {
            path: self.tmp.clone(),
            source: io::Error::other("writer already finished"),
        })?;
        let file = encoder.finish().map_err(io_err(&self.tmp))?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        let stored_size = file.metadata().map_err(io_err(&self.tmp))?.len();
        let dir = self
            .final_path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fs::rename(&self.tmp, &self.final_path).map_err(io_err(&self.final_path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok((
            actual,
            BlobRecord {
                size: self.size,
                stored_size,
                added_at: now,
            },
        ))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.encoder.is_some() || self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Store {
    /// Records that a blob is stored.
    pub fn record_blob(&self, hash: &Digest, record: &BlobRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(BLOBS)?
            .insert(hash.to_hex().as_str(), encode(record).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The record of a stored blob.
    pub fn blob(&self, hash: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        let hex = hash.to_hex();
        match table.get(hex.as_str())? {
            Some(v) => Ok(Some(decode("blobs", &hex, v.value())?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_only_under_its_own_hash() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path().to_owned(), 3).unwrap();
        let data = b"model weights".repeat(1000);
        let hash = Digest::of(&data);

        let mut w = blobs
            .writer(Digest::of(b"something else"), 1 << 20)
            .unwrap();
        w.write(&data).unwrap();
        assert!(matches!(w.finish(1), Err(BlobError::HashMismatch { .. })));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no leftovers"
        );

        let mut w = blobs.writer(hash, 1 << 20).unwrap();
        w.write(&data[..100]).unwrap();
        w.write(&data[100..]).unwrap();
        let (got, record) = w.finish(1).unwrap();
        assert_eq!(got, hash);
        assert_eq!(record.size, data.len() as u64);
        let stored = fs::read(blobs.path(&hash)).unwrap();
        assert_eq!(zstd::decode_all(stored.as_slice()).unwrap(), data);
    }

    #[test]
    fn uploads_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path().to_owned(), 3).unwrap();
        let mut w = blobs.writer(Digest::of(b"x"), 10).unwrap();
        assert!(matches!(
            w.write(&[0; 11]),
            Err(BlobError::TooLarge { limit: 10 })
        ));
    }
}
