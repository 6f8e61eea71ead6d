//! Artifacts: an upload spools to a temporary file while it is hashed and counted; once the
//! bytes hash to the name they were uploaded under, they are cut into content-defined chunks
//! that go to the shared [`ChunkStore`], and the artifact's record and chunk index are
//! committed to the database in one transaction, with the artifact's tensor layout when it is
//! a model (safetensors or ONNX), which the tensor delta needs. A failed or abandoned upload
//! leaves no file and no record behind (chunks it already stored are content-addressed and
//! harmless), except a resumable one: its bytes so far stay in `uploads/<hash>.part` under
//! the chunk store, and the next attempt continues at their end instead of starting over.

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
    /// A resumed upload does not continue where the stored part ends.
    #[error(
        "the upload continues at byte {asked}, but {received} bytes of it are stored: resume at {received}"
    )]
    Offset {
        /// Where the upload said it continues.
        asked: u64,
        /// Bytes stored so far.
        received: u64,
    },
}

/// An upload in progress; dropping it unfinished removes the spool file, unless it is
/// resumable ([`Spool::resume`]), whose bytes so far stay for the next attempt.
pub struct Spool {
    tmp: PathBuf,
    file: File,
    hasher: Hasher,
    expected: Digest,
    size: u64,
    limit: u64,
    /// Kept when dropped unfinished.
    resumable: bool,
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
            resumable: false,
        })
    }

    /// Continues the resumable upload of `expected` at byte `offset`: the bytes stored by
    /// earlier attempts must end exactly there ([`BlobError::Offset`] says where they end
    /// otherwise); they are hashed again, from disk. At `offset` 0 a new upload starts,
    /// replacing any stored part.
    pub fn resume(
        chunks: &ChunkStore,
        expected: Digest,
        limit: u64,
        offset: u64,
    ) -> Result<Self, BlobError> {
        let path = chunks.upload_path(&expected);
        let io_err = |source| BlobError::Io {
            path: path.clone(),
            source,
        };
        if offset > limit {
            return Err(BlobError::TooLarge { limit });
        }
        if offset == 0 {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_err)?;
            }
            let file = File::create(&path).map_err(io_err)?;
            return Ok(Self {
                tmp: path,
                file,
                hasher: Hasher::new(),
                expected,
                size: 0,
                limit,
                resumable: true,
            });
        }
        let received = uploaded_part(chunks, &expected)
            .map_err(io_err)?
            .unwrap_or(0);
        if received != offset {
            return Err(BlobError::Offset {
                asked: offset,
                received,
            });
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let mut hasher = Hasher::new();
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut buf = vec![0u8; 1 << 20];
        let mut hashed = 0u64;
        while hashed < offset {
            let n = io::Read::read(&mut reader, &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            hashed += n as u64;
        }
        if hashed != offset {
            return Err(BlobError::Offset {
                asked: offset,
                received: hashed,
            });
        }
        drop(reader);
        Ok(Self {
            tmp: path,
            file,
            hasher,
            expected,
            size: offset,
            limit,
            resumable: true,
        })
    }

    /// Gives up on the upload: its bytes so far go, resumable or not.
    pub fn discard(mut self) {
        self.resumable = false;
    }

    /// Bytes received so far, by this attempt and the ones it resumed.
    pub fn received(&self) -> u64 {
        self.size
    }

    /// Makes the bytes received so far durable, for the next attempt of an interrupted
    /// resumable upload to continue from.
    pub fn keep(&self) -> Result<(), BlobError> {
        self.file.sync_data().map_err(|source| BlobError::Io {
            path: self.tmp.clone(),
            source,
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
        mut self,
        chunks: &ChunkStore,
        params: ChunkParams,
        now: u64,
    ) -> Result<Ingested, BlobError> {
        // Whole now: whatever happens next, another attempt starts over.
        self.resumable = false;
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
        if !self.resumable {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The bytes stored so far of a resumable upload of `hash`, if one is stored.
pub fn uploaded_part(chunks: &ChunkStore, hash: &Digest) -> io::Result<Option<u64>> {
    match fs::metadata(chunks.upload_path(hash)) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
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
    fn a_cut_resumable_upload_continues_where_its_stored_bytes_end() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let hash = Digest::of(&data);

        // The first attempt is cut after 20,000 bytes: they stay.
        let mut spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        spool.write(&data[..20_000]).unwrap();
        spool.keep().unwrap();
        drop(spool);
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), Some(20_000));
        // The chunk store's restart clean-up leaves them be.
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), Some(20_000));

        // Continuing anywhere else is refused, saying where to continue.
        for wrong in [1, 19_999, 20_001] {
            assert!(matches!(
                Spool::resume(&chunks, hash, 1 << 20, wrong),
                Err(BlobError::Offset {
                    received: 20_000,
                    ..
                })
            ));
        }
        let mut spool = Spool::resume(&chunks, hash, 1 << 20, 20_000).unwrap();
        assert_eq!(spool.received(), 20_000);
        spool.write(&data[20_000..]).unwrap();
        let ingested = spool.finish(&chunks, params(), 1).unwrap();
        assert_eq!((ingested.hash, ingested.record.size), (hash, 50_000));
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None, "done: gone");

        // Starting again at 0 replaces a stored part; bytes that hash wrong are not kept.
        let mut spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        spool.write(&data[..10]).unwrap();
        drop(spool);
        let mut spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), Some(0));
        spool.write(&data[1..]).unwrap();
        assert!(matches!(
            spool.finish(&chunks, params(), 1),
            Err(BlobError::HashMismatch { .. })
        ));
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None);
        // A part given up on goes.
        let mut spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        spool.write(&data[..10]).unwrap();
        spool.discard();
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None);
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
