//! Artifacts: an upload spools to a temporary file while it is hashed and counted; once the
//! bytes hash to the name they were uploaded under, they are cut into content-defined chunks
//! that go to the shared [`ChunkStore`], and the artifact's record and chunk index are
//! committed to the database in one transaction, with the artifact's tensor layout when it is
//! a model (safetensors or ONNX), which the tensor delta needs. A failed or abandoned upload
//! leaves no file and no record behind (chunks it already stored are content-addressed and
//! harmless).

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::PathBuf;

use ferry_shared::Digest;
use ferry_shared::chunk::{ChunkError, ChunkIndex, ChunkParams};
use ferry_shared::digest::Hasher;
use ferry_shared::tensors::{Layout, ReadAt};

use super::chunks::{ChunkStore, ChunkStoreError};
use super::codec::{decode, encode};
use super::records::BlobRecord;
use super::tables::{BLOBS, CHUNK_INDEXES, TENSOR_LAYOUTS};
use super::{Store, StoreError};

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
    /// Spool I/O failed.
    #[error("upload spool I/O at {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Storing a chunk failed.
    #[error(transparent)]
    Chunks(#[from] ChunkStoreError),
    /// Cutting the artifact failed.
    #[error(transparent)]
    Chunking(#[from] ChunkError),
}

/// An upload in progress; dropping it unfinished removes the spool file.
pub struct Spool {
    tmp: PathBuf,
    file: File,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    limit: u64,
}

/// An artifact cut into the chunk store.
#[derive(Debug)]
pub struct Ingested {
    /// Its hash.
    pub hash: Digest,
    /// Its record.
    pub record: BlobRecord,
    /// Its chunks.
    pub index: ChunkIndex,
    /// Where its tensors are, if it is a model file.
    pub layout: Option<Layout>,
}

/// A file read by offset, for the tensor layout parser.
struct FileAt<'a>(&'a File, u64);

impl ReadAt for FileAt<'_> {
    fn len(&self) -> u64 {
        self.1
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self.0, buf, offset)
    }
}

impl Spool {
    /// Starts an upload that must hash to `expected`, at most `limit` bytes.
    pub fn new(chunks: &ChunkStore, expected: Digest, limit: u64) -> Result<Self, BlobError> {
        let tmp = chunks.temp_path(&format!("upload-{}", expected.short()))?;
        let file = File::create(&tmp).map_err(|source| BlobError::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok(Self {
            tmp,
            file,
            hasher: Hasher::new(),
            expected,
            size: 0,
            limit,
        })
    }

    /// Feeds more uploaded bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        self.hasher.update(bytes);
        self.file.write_all(bytes).map_err(|source| BlobError::Io {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Checks the hash, then cuts the artifact into `chunks` with `params`. Memory stays
    /// bounded by the largest chunk.
    pub fn finish(
        self,
        chunks: &ChunkStore,
        params: ChunkParams,
        now: u64,
    ) -> Result<Ingested, BlobError> {
        let actual = self.hasher.finish();
        if actual != self.expected {
            return Err(BlobError::HashMismatch {
                expected: self.expected,
                actual,
            });
        }
        let io_err = |source| BlobError::Io {
            path: self.tmp.clone(),
            source,
        };
        let file = File::open(&self.tmp).map_err(io_err)?;
        let ingest = chunks.ingest();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let cut = ingest.pipelined(workers, |store| {
            ChunkIndex::build_visiting(BufReader::new(file), params, |c, bytes| {
                store(&c.hash, bytes)
            })
        })??;
        if cut.hash != actual || cut.size != self.size {
            // The spool changed under us: treat it like a damaged upload.
            return Err(BlobError::HashMismatch {
                expected: self.expected,
                actual: cut.hash,
            });
        }
        let (new_chunks, new_bytes) = ingest.finish()?;
        let layout = File::open(&self.tmp)
            .map(|file| Layout::detect(&FileAt(&file, self.size)))
            .map_err(io_err)?;
        let record = BlobRecord {
            size: cut.size,
            chunks: cut.index.digest(),
            chunk_count: u32::try_from(cut.index.chunks.len()).unwrap_or(u32::MAX),
            new_chunks,
            new_bytes,
            added_at: now,
        };
        Ok(Ingested {
            hash: actual,
            record,
            index: cut.index,
            layout,
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Store {
    /// Records an ingested artifact and its chunk index.
    pub fn record_blob(&self, ingested: &Ingested) -> Result<(), StoreError> {
        let hex = ingested.hash.to_hex();
        let txn = self.db.begin_write()?;
        txn.open_table(BLOBS)?
            .insert(hex.as_str(), encode(&ingested.record).as_slice())?;
        txn.open_table(CHUNK_INDEXES)?
            .insert(hex.as_str(), ingested.index.to_canonical_bytes().as_slice())?;
        if let Some(layout) = &ingested.layout {
            txn.open_table(TENSOR_LAYOUTS)?
                .insert(hex.as_str(), encode(layout).as_slice())?;
        }
        self.db.commit(txn)?;
        Ok(())
    }

    /// The tensor layout recorded for a stored artifact (none for files that are not models,
    /// and for artifacts stored before layouts were recorded).
    pub fn blob_layout(&self, hash: &Digest) -> Result<Option<Layout>, StoreError> {
        self.by_blob(TENSOR_LAYOUTS, "tensor_layouts", hash)
    }

    /// The chunk index of a stored artifact, checked against its record.
    pub fn blob_index(&self, hash: &Digest) -> Result<Option<ChunkIndex>, StoreError> {
        let Some(record) = self.blob(hash)? else {
            return Ok(None);
        };
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHUNK_INDEXES)?;
        let hex = hash.to_hex();
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "chunk_indexes",
            key: hex.clone(),
            reason,
        };
        let Some(bytes) = table.get(hex.as_str())? else {
            return Err(corrupt("missing for a stored artifact".into()));
        };
        let index = ChunkIndex::from_canonical_bytes(bytes.value(), record.size)
            .map_err(|e| corrupt(e.to_string()))?;
        if index.digest() != record.chunks {
            return Err(corrupt("does not match the artifact record".into()));
        }
        Ok(Some(index))
    }

    /// The record of a stored blob.
    pub fn blob(&self, hash: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        self.by_blob(BLOBS, "blobs", hash)
    }

    /// The record `table` keeps for the blob `hash`.
    fn by_blob<T: super::codec::Record>(
        &self,
        table: redb::TableDefinition<'static, &'static str, &'static [u8]>,
        name: &'static str,
        hash: &Digest,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table)?;
        let hex = hash.to_hex();
        match table.get(hex.as_str())? {
            Some(v) => Ok(Some(decode(name, &hex, v.value())?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChunkParams {
        ChunkParams {
            min: 64,
            avg: 256,
            max: 1024,
        }
    }

    #[test]
    fn an_upload_is_ingested_only_under_its_own_hash() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let hash = Digest::of(&data);

        let mut spool = Spool::new(&chunks, Digest::of(b"something else"), 1 << 20).unwrap();
        spool.write(&data).unwrap();
        assert!(matches!(
            spool.finish(&chunks, params(), 1),
            Err(BlobError::HashMismatch { .. })
        ));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no leftovers"
        );

        let mut spool = Spool::new(&chunks, hash, 1 << 20).unwrap();
        spool.write(&data[..100]).unwrap();
        spool.write(&data[100..]).unwrap();
        let first = spool.finish(&chunks, params(), 1).unwrap();
        assert_eq!(first.hash, hash);
        assert_eq!(first.record.size, data.len() as u64);
        let distinct: std::collections::HashSet<_> =
            first.index.chunks.iter().map(|c| c.hash).collect();
        assert_eq!(
            first.record.new_chunks as usize,
            distinct.len(),
            "repeats stored once"
        );
        let mut rebuilt = Vec::new();
        for c in &first.index.chunks {
            rebuilt.extend(chunks.read(&c.hash, c.len).unwrap().bytes);
        }
        assert_eq!(rebuilt, data);

        // The same bytes again store nothing new.
        let mut spool = Spool::new(&chunks, hash, 1 << 20).unwrap();
        spool.write(&data).unwrap();
        let again = spool.finish(&chunks, params(), 2).unwrap();
        assert_eq!((again.record.new_chunks, again.record.new_bytes), (0, 0));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_model_upload_records_its_tensor_layout() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let db = Store::open(&dir.path().join("db.redb")).unwrap();
        let weights = ferry_shared::testutil::noise(1, 4096);
        let model = ferry_shared::testutil::safetensors(&[], &[("w", "F32", &weights)]);
        let other = ferry_shared::testutil::noise(2, 4096);
        for (bytes, tensors) in [(&model, 1), (&other, 0)] {
            let hash = Digest::of(bytes);
            let mut spool = Spool::new(&chunks, hash, 1 << 20).unwrap();
            spool.write(bytes).unwrap();
            let ingested = spool.finish(&chunks, params(), 1).unwrap();
            db.record_blob(&ingested).unwrap();
            let layout = db.blob_layout(&hash).unwrap();
            assert_eq!(layout.map_or(0, |l| l.spans.len()), tensors);
        }
        let layout = db.blob_layout(&Digest::of(&model)).unwrap().unwrap();
        assert_eq!(layout.spans[0].len, 4096);
        assert_eq!(layout.spans[0].offset, (model.len() - 4096) as u64);
    }

    #[test]
    fn uploads_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let mut spool = Spool::new(&chunks, Digest::of(b"x"), 10).unwrap();
        assert!(matches!(
            spool.write(&[0; 11]),
            Err(BlobError::TooLarge { limit: 10 })
        ));
    }
}
