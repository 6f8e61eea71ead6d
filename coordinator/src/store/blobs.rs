//! Artifacts: an upload spools to a file and is cut into content-defined chunks as it
//! arrives; the chunks go to the shared [`ChunkStore`], compressed on every core. Once all its
//! bytes are in and hash to the name they were uploaded under, the artifact's record and chunk
//! index are committed to the database in one transaction, with the artifact's tensor layout
//! when it is a model (safetensors or ONNX), which the tensor delta needs. A failed or
//! abandoned upload leaves no spool and no record behind (chunks it already stored are
//! content-addressed and harmless), except a resumable one: its bytes so far stay in
//! `uploads/<hash>.part` under the chunk store, and the next attempt continues at their end
//! instead of starting over.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;

use ferry_shared::Digest;
use ferry_shared::chunk::{ChunkError, ChunkIndex, ChunkParams};
use ferry_shared::tensors::{Layout, ReadAt};

use super::chunks::{ChunkStore, ChunkStoreError};
use super::engine::Rows;
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
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
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

/// How an upload's bytes ended ([`Spool::receive`]).
pub enum Arrival {
    /// All of them arrived and are stored under their hash.
    Whole(Ingested),
    /// They stopped short (why): the spool holds what came, for a resumable upload to continue.
    Partial(Spool, String),
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
            expected,
            size: 0,
            limit,
            resumable: false,
        })
    }

    /// Continues the resumable upload of `expected` at byte `offset`: the bytes stored by
    /// earlier attempts must end exactly there ([`BlobError::Offset`] says where they end
    /// otherwise). At `offset` 0 a new upload starts, replacing any stored part.
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
        let file = if offset == 0 {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io_err)?;
            }
            File::create(&path).map_err(io_err)?
        } else {
            let received = uploaded_part(chunks, &expected)
                .map_err(io_err)?
                .unwrap_or(0);
            if received != offset {
                return Err(BlobError::Offset {
                    asked: offset,
                    received,
                });
            }
            fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_err)?
        };
        Ok(Self {
            tmp: path,
            file,
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
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        self.file.write_all(bytes).map_err(|source| BlobError::Io {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Takes the rest of the upload from `pieces` (an `Err` is a cut: why) and cuts it into
    /// `chunks` with `params` as it arrives: the cutting and hashing of each piece (and of the
    /// bytes earlier attempts stored, read back) run beside the network and the compression
    /// of the chunks before it on every core, instead of after the last byte. Once all of
    /// `length` bytes (when given) have arrived and hash to the upload's name, the artifact
    /// is stored. Memory stays bounded by a few chunks. Chunks an upload that fails stored
    /// are content-addressed and harmless.
    pub fn receive<B: AsRef<[u8]>>(
        mut self,
        chunks: &ChunkStore,
        params: ChunkParams,
        pieces: impl Iterator<Item = Result<B, String>>,
        length: Option<u64>,
        now: u64,
    ) -> Result<Arrival, BlobError> {
        let earlier = self.size;
        let stored = File::open(&self.tmp).map_err(|source| BlobError::Io {
            path: self.tmp.clone(),
            source,
        })?;
        let ingest = chunks.ingest();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut incoming = Incoming {
            stored: BufReader::with_capacity(1 << 20, stored).take(earlier),
            pieces,
            spool: &mut self,
            piece: None,
            at: 0,
            stopped: None,
        };
        let cut = ingest.pipelined(workers, |store| {
            ChunkIndex::build_visiting(&mut incoming, params, |c, bytes| store(&c.hash, bytes))
        })?;
        match incoming.stopped.take() {
            Some(Stop::Cut(why)) => return Ok(Arrival::Partial(self, why)),
            Some(Stop::Failed(e)) => {
                // Disk trouble may pass: what arrived stays for the next attempt.
                if !matches!(e, BlobError::Io { .. }) {
                    self.resumable = false;
                }
                return Err(e);
            }
            None => {}
        }
        let cut = cut?;
        if let Some(length) = length.filter(|&l| l != self.size) {
            let why = format!("the upload ended at byte {} of {length}", self.size);
            return Ok(Arrival::Partial(self, why));
        }
        // Whole now: whatever happens next, another attempt starts over.
        self.resumable = false;
        if cut.hash != self.expected || cut.size != self.size {
            return Err(BlobError::HashMismatch {
                expected: self.expected,
                actual: cut.hash,
            });
        }
        let (new_chunks, new_bytes) = ingest.finish()?;
        let layout = File::open(&self.tmp)
            .map(|file| Layout::detect(&FileAt(&file, self.size)))
            .map_err(|source| BlobError::Io {
                path: self.tmp.clone(),
                source,
            })?;
        let record = BlobRecord {
            size: cut.size,
            chunks: cut.index.digest(),
            chunk_count: u32::try_from(cut.index.chunks.len()).unwrap_or(u32::MAX),
            new_chunks,
            new_bytes,
            added_at: now,
        };
        Ok(Arrival::Whole(Ingested {
            hash: cut.hash,
            record,
            index: cut.index,
            layout,
        }))
    }
}

/// Why [`Incoming`] stopped before the end.
enum Stop {
    /// The upload was cut (why).
    Cut(String),
    /// Spooling failed.
    Failed(BlobError),
}

/// The bytes of an upload as the chunker reads them: first those earlier attempts stored,
/// read back, then each arriving piece, written to the spool as it passes.
struct Incoming<'a, I, B> {
    stored: io::Take<BufReader<File>>,
    pieces: I,
    spool: &'a mut Spool,
    /// The piece being read, and how far.
    piece: Option<B>,
    at: usize,
    stopped: Option<Stop>,
}

impl<I: Iterator<Item = Result<B, String>>, B: AsRef<[u8]>> Read for Incoming<'_, I, B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stored.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        loop {
            if let Some(piece) = &self.piece {
                let rest = &piece.as_ref()[self.at..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.at += n;
                    return Ok(n);
                }
            }
            let stopped = match self.pieces.next() {
                None => return Ok(0),
                Some(Ok(piece)) => match self.spool.write(piece.as_ref()) {
                    Ok(()) => {
                        self.piece = Some(piece);
                        self.at = 0;
                        continue;
                    }
                    Err(e) => Stop::Failed(e),
                },
                Some(Err(why)) => Stop::Cut(why),
            };
            let message = match &stopped {
                Stop::Cut(why) => format!("upload cut: {why}"),
                Stop::Failed(e) => e.to_string(),
            };
            self.stopped = Some(stopped);
            return Err(io::Error::other(message));
        }
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
        let txn = self.write()?;
        txn.insert(BLOBS, hex.as_str(), &ingested.record)?;
        let index = ingested.index.to_canonical_bytes();
        txn.insert_raw(CHUNK_INDEXES, hex.as_str(), &index)?;
        if let Some(layout) = &ingested.layout {
            txn.insert(TENSOR_LAYOUTS, hex.as_str(), layout)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The tensor layout recorded for a stored artifact (none for files that are not models,
    /// and for artifacts stored before layouts were recorded).
    pub fn blob_layout(&self, hash: &Digest) -> Result<Option<Layout>, StoreError> {
        self.read()?.get(TENSOR_LAYOUTS, hash.to_hex().as_str())
    }

    /// The chunk index of a stored artifact, checked against its record.
    pub fn blob_index(&self, hash: &Digest) -> Result<Option<ChunkIndex>, StoreError> {
        let Some(record) = self.blob(hash)? else {
            return Ok(None);
        };
        let hex = hash.to_hex();
        let corrupt = |reason: String| StoreError::Corrupt {
            table: "chunk_indexes",
            key: hex.clone(),
            reason,
        };
        let Some(bytes) = self.read()?.get_raw(CHUNK_INDEXES, hex.as_str())? else {
            return Err(corrupt("missing for a stored artifact".into()));
        };
        let index = ChunkIndex::from_canonical_bytes(&bytes, record.size)
            .map_err(|e| corrupt(e.to_string()))?;
        if index.digest() != record.chunks {
            return Err(corrupt("does not match the artifact record".into()));
        }
        Ok(Some(index))
    }

    /// The record of a stored blob.
    pub fn blob(&self, hash: &Digest) -> Result<Option<BlobRecord>, StoreError> {
        self.read()?.get(BLOBS, hash.to_hex().as_str())
    }
}

super::codec::first_format!(Layout);

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

    /// What `spool` stores given `pieces` (each `None` a cut), of `length` bytes when given.
    fn upload(
        spool: Spool,
        chunks: &ChunkStore,
        pieces: &[Option<&[u8]>],
        length: Option<u64>,
    ) -> Result<Arrival, BlobError> {
        let pieces = pieces
            .iter()
            .map(|p| p.map(<[u8]>::to_vec).ok_or_else(|| "cut".to_string()));
        spool.receive(chunks, params(), pieces, length, 1)
    }

    fn whole(arrival: Result<Arrival, BlobError>) -> Ingested {
        match arrival {
            Ok(Arrival::Whole(ingested)) => ingested,
            Ok(Arrival::Partial(spool, why)) => {
                panic!("stopped at {} bytes: {why}", spool.received())
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn an_upload_is_ingested_only_under_its_own_hash() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let hash = Digest::of(&data);

        // Bytes that do not hash to the name are refused (the chunks cut on the way are
        // content-addressed: harmless, and collected as orphans).
        let other: Vec<u8> = data.iter().map(|b| b ^ 1).collect();
        let spool = Spool::new(&chunks, Digest::of(b"something else"), 1 << 20).unwrap();
        assert!(matches!(
            upload(spool, &chunks, &[Some(&other)], None),
            Err(BlobError::HashMismatch { .. })
        ));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no leftovers"
        );

        let spool = Spool::new(&chunks, hash, 1 << 20).unwrap();
        let first = whole(upload(
            spool,
            &chunks,
            &[Some(&data[..100]), Some(&data[100..])],
            None,
        ));
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
        let spool = Spool::new(&chunks, hash, 1 << 20).unwrap();
        let again = whole(upload(spool, &chunks, &[Some(&data)], None));
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
            let spool = Spool::new(&chunks, hash, 1 << 20).unwrap();
            let ingested = whole(upload(spool, &chunks, &[Some(bytes)], None));
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
        let length = Some(data.len() as u64);

        // The first attempt is cut after 20,000 bytes: they stay.
        let spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        let Ok(Arrival::Partial(spool, _)) =
            upload(spool, &chunks, &[Some(&data[..20_000]), None], length)
        else {
            panic!("a cut upload is partial");
        };
        assert_eq!(spool.received(), 20_000);
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
        // A body that ends early is partial too.
        let spool = Spool::resume(&chunks, hash, 1 << 20, 20_000).unwrap();
        let Ok(Arrival::Partial(spool, _)) =
            upload(spool, &chunks, &[Some(&data[20_000..30_000])], length)
        else {
            panic!("a short upload is partial");
        };
        assert_eq!(spool.received(), 30_000);
        drop(spool);
        let spool = Spool::resume(&chunks, hash, 1 << 20, 30_000).unwrap();
        assert_eq!(spool.received(), 30_000);
        let ingested = whole(upload(spool, &chunks, &[Some(&data[30_000..])], length));
        assert_eq!((ingested.hash, ingested.record.size), (hash, 50_000));
        let mut rebuilt = Vec::new();
        for c in &ingested.index.chunks {
            rebuilt.extend(chunks.read(&c.hash, c.len).unwrap().bytes);
        }
        assert_eq!(rebuilt, data);
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None, "done: gone");

        // Starting again at 0 replaces a stored part; bytes that hash wrong are not kept.
        let spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        drop(upload(spool, &chunks, &[Some(&data[..10]), None], length));
        let spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), Some(0));
        let wrong = [&data[1..], &[0u8][..]].concat();
        assert!(matches!(
            upload(spool, &chunks, &[Some(&wrong)], length),
            Err(BlobError::HashMismatch { .. })
        ));
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None);
        // A part given up on goes.
        let spool = Spool::resume(&chunks, hash, 1 << 20, 0).unwrap();
        spool.discard();
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None);
    }

    #[test]
    fn uploads_over_the_limit_are_refused_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = ChunkStore::new(dir.path().to_owned(), 3).unwrap();
        let spool = Spool::new(&chunks, Digest::of(b"x"), 10).unwrap();
        assert!(matches!(
            upload(spool, &chunks, &[Some(&[0; 11])], None),
            Err(BlobError::TooLarge { limit: 10 })
        ));
        let hash = Digest::of(b"y");
        let spool = Spool::resume(&chunks, hash, 10, 0).unwrap();
        assert!(matches!(
            upload(spool, &chunks, &[Some(&[0; 6]), Some(&[0; 6])], Some(10)),
            Err(BlobError::TooLarge { limit: 10 })
        ));
        assert_eq!(uploaded_part(&chunks, &hash).unwrap(), None);
        assert!(matches!(
            Spool::resume(&chunks, hash, 10, 11),
            Err(BlobError::TooLarge { limit: 10 })
        ));
    }
}
