//! Assembling a new version's file in the staging directory from the chunk plan: chunks the
//! device already holds are copied from its installed versions, the rest arrive from the
//! coordinator (plain, or as deltas against a window of an installed version read from disk)
//! and are decoded here. Every chunk is checked against its signed hash before it is written,
//! and the whole file is hashed again at the end.
//!
//! A chunk fetched without a window of an installed version (on a first install, every
//! chunk) is asked for against the bytes just before it in the staging file
//! ([`install_window`]): chunks are asked for and applied in file order, so those bytes are
//! written and checked by the time it arrives. The coordinator answers with its precomputed
//! encoding against them, or with the stored chunk when it has none.
//!
//! The staging file is written in place at each chunk's offset, so it doubles as the resume
//! record: on open, every chunk whose bytes already hash right counts as done, and a download
//! cut by a dropped link or a restart continues at the next missing chunk. Synchronous (disk
//! and CPU work); the caller runs it on a blocking thread. Memory is bounded by one chunk, its
//! payload and one window.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_shared::Digest;
use ferry_shared::chunk::ChunkIndex;
use ferry_shared::delta::window::{WINDOW, install_window};
use ferry_shared::delta::{Encoding, Limits, decode_in_window_reusing};
use ferry_shared::plan::{ChunkPlan, Step, plan};
use ferry_shared::wire::{ChunkWant, WindowRef};

/// An installed version the plan may copy from or name as a delta reference.
#[derive(Clone, Debug)]
pub struct LocalSource {
    /// Whole-file hash (how the coordinator knows it).
    pub file: Digest,
    /// Where it is.
    pub path: PathBuf,
    /// Its chunks.
    pub index: ChunkIndex,
}

/// Why assembling stopped, or why one chunk was refused.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// Reading or writing local files failed.
    #[error("{path}: {source}")]
    Disk {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A received chunk does not decode to its signed bytes.
    #[error("chunk {ordinal} rejected: {reason}")]
    Rejected {
        /// Which chunk.
        ordinal: u32,
        /// What was wrong, in words.
        reason: String,
    },
    /// The assembled file is not the signed artifact.
    #[error("assembled file does not match the signed manifest: {0}")]
    Whole(String),
    /// A chunk encoded against bytes of the staging file that are not in place (a chunk
    /// before it failed, or is still being copied): nothing is wrong with it, but it cannot
    /// be decoded; it is asked for again whole (see [`Assembly::fetch_whole`]).
    #[error("chunk {ordinal} refers to bytes of the new version not yet in place")]
    WindowNotReady {
        /// Which chunk.
        ordinal: u32,
    },
}

fn disk(path: &Path) -> impl FnOnce(io::Error) -> AssembleError + '_ {
    move |source| AssembleError::Disk {
        path: path.to_owned(),
        source,
    }
}

/// What opening found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Chunks already in the staging file from an earlier attempt.
    pub resumed: u32,
}

/// The staging file of one version under construction.
pub struct Assembly {
    path: PathBuf,
    file: File,
    /// The whole-file hash of the version being assembled: a window naming it is in `file`.
    own: Digest,
    target: ChunkIndex,
    offsets: Vec<u64>,
    sources: Vec<LocalSource>,
    plan: ChunkPlan,
    done: Vec<bool>,
    /// Chunks to fetch without a reference (a delta or a local copy went wrong).
    full: HashSet<u32>,
    /// Chunks handed to a [`Copies`] whose outcome is not recorded yet.
    copying: HashSet<u32>,
    /// Chunks that already failed once after arriving: their one second chance is spent.
    retried: HashSet<u32>,
    /// Target ordinals by chunk hash, to fill duplicates from one fetch.
    same: HashMap<Digest, Vec<u32>>,
    limits: Limits,
    /// The last window read, its allocation reused by the next: a first install reads an
    /// 8 MiB window for every chunk, and a fresh one is 2,048 pages faulted in and zeroed.
    window: Vec<u8>,
}

impl Assembly {
    /// Opens the staging file at `path` for the artifact `own` (its whole-file hash) of
    /// `size` bytes cut as `target`, keeping every chunk an earlier attempt already wrote.
    pub fn open(
        path: &Path,
        own: Digest,
        target: ChunkIndex,
        size: u64,
        sources: Vec<LocalSource>,
    ) -> Result<(Self, Opened), AssembleError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(disk(path))?;
        let existing = file.metadata().map_err(disk(path))?.len();
        if existing != size {
            // Not ours to resume: start over at the right length.
            file.set_len(0).map_err(disk(path))?;
            file.set_len(size).map_err(disk(path))?;
        }
        let offsets: Vec<u64> = target.spans().map(|(o, _)| o).collect();
        let mut same: HashMap<Digest, Vec<u32>> = HashMap::new();
        for (i, c) in target.chunks.iter().enumerate() {
            same.entry(c.hash)
                .or_default()
                .push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        let indexes: Vec<ChunkIndex> = sources.iter().map(|s| s.index.clone()).collect();
        let plan = plan(&target, &indexes, WINDOW);
        let limits = Limits {
            max_chunk: target.params.max as usize,
            max_reference: WINDOW as usize,
        };
        let mut assembly = Self {
            path: path.to_owned(),
            file,
            own,
            done: vec![false; target.chunks.len()],
            target,
            offsets,
            sources,
            plan,
            full: HashSet::new(),
            copying: HashSet::new(),
            retried: HashSet::new(),
            same,
            limits,
            window: Vec::new(),
        };
        let mut opened = Opened::default();
        if existing == size {
            let mut buf = Vec::new();
            for i in 0..assembly.target.chunks.len() {
                let c = assembly.target.chunks[i];
                buf.resize(c.len as usize, 0);
                assembly
                    .file
                    .read_exact_at(&mut buf, assembly.offsets[i])
                    .map_err(disk(path))?;
                if Digest::of(&buf) == c.hash {
                    assembly.done[i] = true;
                    opened.resumed += 1;
                }
            }
        }
        Ok((assembly, opened))
    }

    /// The signed hash of chunk `ordinal` of the target.
    pub fn chunk_hash(&self, ordinal: u32) -> Option<Digest> {
        self.target.chunks.get(ordinal as usize).map(|c| c.hash)
    }

    /// Number of chunks in the target.
    pub fn chunks_total(&self) -> u32 {
        u32::try_from(self.target.chunks.len()).unwrap_or(u32::MAX)
    }

    /// Copies every chunk the device holds from its installed versions; a local copy that no
    /// longer hashes right is left to be fetched whole. Returns the bytes copied. (The download
    /// runs the copies beside its fetches instead: [`Assembly::take_copies`].)
    #[cfg(test)]
    pub fn copy_local(&mut self) -> Result<u64, AssembleError> {
        let copies = self.take_copies()?;
        let copied = copies.run()?;
        self.record_copies(&copied);
        Ok(copied.bytes)
    }

    /// The planned local copies not yet done, to run on a thread of their own (see
    /// [`Copies::run`]) while the missing chunks are fetched; [`Assembly::wants`] leaves them
    /// out until [`Assembly::record_copies`] says how they went.
    pub fn take_copies(&mut self) -> Result<Copies, AssembleError> {
        let mut jobs = Vec::new();
        for (i, step) in self.plan.steps.iter().enumerate() {
            let Step::Copy {
                source,
                offset,
                len,
            } = *step
            else {
                continue;
            };
            if self.done[i] {
                continue;
            }
            let ordinal = u32::try_from(i).unwrap_or(u32::MAX);
            self.copying.insert(ordinal);
            jobs.push(CopyJob {
                ordinal,
                source,
                from: offset,
                len,
                hash: self.target.chunks[i].hash,
                to: self.offsets[i],
            });
        }
        Ok(Copies {
            file: self.file.try_clone().map_err(disk(&self.path))?,
            path: self.path.clone(),
            sources: self.sources.iter().map(|s| s.path.clone()).collect(),
            jobs,
        })
    }

    /// Records what [`Copies::run`] did: copied chunks are in place, the others are to be
    /// fetched whole.
    pub fn record_copies(&mut self, copied: &Copied) {
        for &ordinal in &copied.done {
            self.done[ordinal as usize] = true;
        }
        self.full.extend(copied.failed.iter().copied());
        self.copying.clear();
    }

    /// The chunks still missing, each distinct chunk once, in file order.
    pub fn wants(&self) -> Vec<ChunkWant> {
        let files: Vec<Digest> = self.sources.iter().map(|s| s.file).collect();
        let planned: HashMap<u32, Option<WindowRef>> = self
            .plan
            .wants(&files)
            .into_iter()
            .map(|w| (w.ordinal, w.reference))
            .collect();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, c) in self.target.chunks.iter().enumerate() {
            let ordinal = u32::try_from(i).unwrap_or(u32::MAX);
            if self.done[i] || self.copying.contains(&ordinal) || !seen.insert(c.hash) {
                continue;
            }
            let reference = if self.full.contains(&ordinal) {
                None
            } else {
                planned
                    .get(&ordinal)
                    .copied()
                    .flatten()
                    .or_else(|| self.own_window(i))
            };
            out.push(ChunkWant { ordinal, reference });
        }
        out
    }

    /// The window of the staging file chunk `i` is asked for against when the plan has none
    /// ([`install_window`]); `None` for the first chunk, or while a chunk in that window is
    /// being copied (a copy runs beside the fetches and may land after the chunk arrives).
    fn own_window(&self, i: usize) -> Option<WindowRef> {
        let window = install_window(self.own, self.offsets[i], WINDOW)?;
        let copying = self
            .overlapping(window.offset, window.len)
            .any(|j| self.copying.contains(&u32::try_from(j).unwrap_or(u32::MAX)));
        (!copying).then_some(window)
    }

    /// The target chunks that overlap `[offset, offset + len)`.
    fn overlapping(&self, offset: u64, len: u64) -> impl Iterator<Item = usize> + '_ {
        let end = offset.saturating_add(len);
        // The last chunk starting at or before `offset`, then every one starting before `end`.
        let first = self
            .offsets
            .partition_point(|&o| o <= offset)
            .saturating_sub(1);
        (first..self.offsets.len()).take_while(move |&j| self.offsets[j] < end)
    }

    /// Records that chunk `ordinal` is to be asked for again whole, through no fault of its
    /// own ([`AssembleError::WindowNotReady`]): its second chance is not spent.
    pub fn fetch_whole(&mut self, ordinal: u32) {
        self.full.insert(ordinal);
    }

    /// Records that a received chunk failed (did not verify, was unavailable or oversized):
    /// the first time, it is to be fetched again, whole, and this returns true; the second
    /// time it returns false and the version cannot be assembled.
    pub fn retry_whole(&mut self, ordinal: u32) -> bool {
        self.full.insert(ordinal);
        self.retried.insert(ordinal)
    }

    /// Largest payload accepted for one chunk: the worst case of an incompressible chunk in
    /// any encoding, with room for the encodings' framing.
    pub fn max_payload(&self) -> usize {
        self.limits.max_chunk + self.limits.max_chunk / 8 + 64 * 1024
    }

    /// Decodes a received chunk against `reference` (the window it was asked with), checks it
    /// against the signed hash and writes it (and its duplicates) into place. (The download
    /// times the two halves apart: [`Assembly::decode`], [`Assembly::place`].)
    #[cfg(test)]
    pub fn accept(
        &mut self,
        want: &ChunkWant,
        encoding: Encoding,
        payload: &[u8],
    ) -> Result<(), AssembleError> {
        let bytes = self.decode(want, encoding, payload, Vec::new())?;
        self.place(want.ordinal, &bytes)
    }

    /// The first half of `Assembly::accept`: the chunk's bytes, decoded (into `buffer`'s
    /// allocation where the encoding allows: hand back the last chunk's) and checked against
    /// the signed hash.
    pub fn decode(
        &mut self,
        want: &ChunkWant,
        encoding: Encoding,
        payload: &[u8],
        buffer: Vec<u8>,
    ) -> Result<Vec<u8>, AssembleError> {
        let ordinal = want.ordinal;
        let reject = |reason: String| AssembleError::Rejected { ordinal, reason };
        let i = ordinal as usize;
        let c = *self
            .target
            .chunks
            .get(i)
            .ok_or_else(|| reject("no such chunk".into()))?;
        let mut window = std::mem::take(&mut self.window);
        let at = match (&want.reference, encoding.needs_reference()) {
            (Some(w), true) => {
                self.read_window(ordinal, w, &mut window)?;
                Some(usize::try_from(w.at).unwrap_or(usize::MAX))
            }
            (None, true) => return Err(reject(format!("{encoding:?} needs a window"))),
            (_, false) => None,
        };
        let decoded = decode_in_window_reusing(
            encoding,
            payload,
            at.map(|at| (window.as_slice(), at)),
            c.len as usize,
            &self.limits,
            buffer,
        );
        self.window = window;
        let bytes = decoded.map_err(|e| reject(e.to_string()))?;
        if Digest::of(&bytes) != c.hash {
            return Err(reject("decoded bytes do not match the signed hash".into()));
        }
        Ok(bytes)
    }

    /// The second half of `Assembly::accept`: writes the checked bytes of chunk `ordinal`
    /// into place, and into every other place the same chunk occupies.
    pub fn place(&mut self, ordinal: u32, bytes: &[u8]) -> Result<(), AssembleError> {
        let Some(hash) = self.target.chunks.get(ordinal as usize).map(|c| c.hash) else {
            return Err(AssembleError::Rejected {
                ordinal,
                reason: "no such chunk".into(),
            });
        };
        let ordinals = self.same.get(&hash).cloned().unwrap_or_default();
        for j in ordinals {
            if !self.done[j as usize] {
                self.write(j as usize, bytes)?;
            }
        }
        Ok(())
    }

    /// Reads window `w` into `buf` (resized to it; bytes past what it had are zeroed first).
    fn read_window(
        &self,
        ordinal: u32,
        w: &WindowRef,
        buf: &mut Vec<u8>,
    ) -> Result<(), AssembleError> {
        if w.file == self.own {
            return self.read_own_window(ordinal, w, buf);
        }
        let source = self
            .sources
            .iter()
            .find(|s| s.file == w.file)
            .ok_or_else(|| AssembleError::Rejected {
                ordinal,
                reason: "window of a version this device does not hold".into(),
            })?;
        buf.resize(usize::try_from(w.len.min(WINDOW)).unwrap_or(0), 0);
        File::open(&source.path)
            .and_then(|f| f.read_exact_at(buf, w.offset))
            .map_err(disk(&source.path))
    }

    /// A window of the staging file itself: only bytes before the chunk, all of them
    /// already written and checked.
    fn read_own_window(
        &self,
        ordinal: u32,
        w: &WindowRef,
        buf: &mut Vec<u8>,
    ) -> Result<(), AssembleError> {
        let before_chunk = w
            .offset
            .checked_add(w.len)
            .is_some_and(|end| end <= self.offsets[ordinal as usize] && w.len <= WINDOW);
        if !before_chunk {
            return Err(AssembleError::Rejected {
                ordinal,
                reason: "window of the new version that is not before the chunk".into(),
            });
        }
        if self.overlapping(w.offset, w.len).any(|j| !self.done[j]) {
            return Err(AssembleError::WindowNotReady { ordinal });
        }
        buf.resize(usize::try_from(w.len).unwrap_or(0), 0);
        self.file
            .read_exact_at(buf, w.offset)
            .map_err(disk(&self.path))
    }

    fn write(&mut self, i: usize, bytes: &[u8]) -> Result<(), AssembleError> {
        write_at(&self.file, &self.path, self.offsets[i], bytes)?;
        self.done[i] = true;
        Ok(())
    }

    /// Makes the file durable and checks it whole against the signed size and hash. (The
    /// download times the two halves apart: [`Assembly::sync`], [`Assembly::verify`].)
    #[cfg(test)]
    pub fn finish(self, size: u64, hash: &Digest) -> Result<(), AssembleError> {
        self.sync()?;
        self.verify(size, hash)
    }

    /// The first half of `Assembly::finish`: every chunk in place, on disk.
    pub fn sync(&self) -> Result<(), AssembleError> {
        if let Some(i) = self.done.iter().position(|d| !d) {
            return Err(AssembleError::Whole(format!("chunk {i} is missing")));
        }
        self.file.sync_all().map_err(disk(&self.path))
    }

    /// The second half of `Assembly::finish`: the file as read back hashes to the signed
    /// size and hash.
    pub fn verify(self, size: u64, hash: &Digest) -> Result<(), AssembleError> {
        let reader = File::open(&self.path).map_err(disk(&self.path))?;
        let total = reader.metadata().map_err(disk(&self.path))?.len();
        if total != size {
            return Err(AssembleError::Whole(format!(
                "{total} bytes (signed: {size} bytes, {})",
                hash.short()
            )));
        }
        let actual = Digest::of_file(&reader, total).map_err(disk(&self.path))?;
        if actual != *hash {
            return Err(AssembleError::Whole(format!(
                "{total} bytes hashing to {} (signed: {size} bytes, {})",
                actual.short(),
                hash.short()
            )));
        }
        Ok(())
    }
}

/// Local copies taken out of an [`Assembly`] ([`Assembly::take_copies`]).
pub struct Copies {
    /// The staging file (its own handle).
    file: File,
    path: PathBuf,
    /// The source files, by source index.
    sources: Vec<PathBuf>,
    jobs: Vec<CopyJob>,
}

/// One chunk to copy from an installed version.
struct CopyJob {
    ordinal: u32,
    source: usize,
    from: u64,
    len: u32,
    hash: Digest,
    /// Where it goes in the staging file.
    to: u64,
}

/// What [`Copies::run`] did.
#[derive(Debug, Default)]
pub struct Copied {
    /// Chunks copied and checked.
    pub done: Vec<u32>,
    /// Chunks whose local bytes were unreadable or no longer hash right.
    pub failed: Vec<u32>,
    /// Bytes copied.
    pub bytes: u64,
}

impl Copies {
    /// Copies each chunk whose local bytes still hash right; others are reported failed. Only
    /// a write to the staging file is an error.
    pub fn run(self) -> Result<Copied, AssembleError> {
        let mut copied = Copied::default();
        let mut opened: HashMap<usize, Option<File>> = HashMap::new();
        let mut buf = Vec::new();
        for job in &self.jobs {
            let source = opened.entry(job.source).or_insert_with(|| {
                self.sources
                    .get(job.source)
                    .and_then(|p| File::open(p).ok())
            });
            buf.resize(job.len as usize, 0);
            let read = source
                .as_ref()
                .is_some_and(|f| f.read_exact_at(&mut buf, job.from).is_ok());
            if !read || Digest::of(&buf) != job.hash {
                copied.failed.push(job.ordinal);
                continue;
            }
            write_at(&self.file, &self.path, job.to, &buf)?;
            copied.done.push(job.ordinal);
            copied.bytes += u64::from(job.len);
        }
        Ok(copied)
    }
}

/// Writes `bytes` at `offset` of the staging file (`path`, for the error) and starts their
/// writeback, so that the final fsync has little left to wait for.
fn write_at(file: &File, path: &Path, offset: u64, bytes: &[u8]) -> Result<(), AssembleError> {
    file.write_all_at(bytes, offset).map_err(disk(path))?;
    ferry_shared::writeback::start_writeback(file, offset, bytes.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests;
