//! What the agent remembers besides the slots: events not yet acknowledged by the
//! coordinator, versions it holds back and why, the last error and the last update per model,
//! and how its connection fares. One JSON file, replaced atomically, changed only under the
//! state-directory lock so the daemon and `ferry-agent rollback` never lose each other's writes.

use crate::updater::Hold;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferry_shared::wire::{DeviceEvent, EventKind, InstallError};
use ferry_shared::{ModelName, Version};
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

/// Unacknowledged events kept at most (oldest dropped first) while offline.
const MAX_PENDING_EVENTS: usize = 1000;

/// The last update attempt of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecord {
    /// Version before.
    pub from: Option<Version>,
    /// Version attempted.
    pub to: Version,
    /// When it ended (Unix seconds).
    pub at: u64,
    /// How long it took, in milliseconds (download to confirmation or rollback).
    pub duration_ms: u64,
    /// `installed`, `rolled back: …`, `rolled back locally`.
    pub outcome: String,
    /// What the download moved (absent when nothing was downloaded).
    #[serde(default)]
    pub transfer: Option<TransferStats>,
}

/// What staging a version moved, summed over its attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferStats {
    /// Chunk payload bytes received from the coordinator (plus the chunk index).
    pub bytes_on_wire: u64,
    /// Bytes copied from versions already on the device.
    pub bytes_reused_locally: u64,
    /// Chunks in the new version.
    pub chunks_total: u32,
    /// Chunks received (deltas and whole), including re-fetches.
    pub chunks_fetched: u32,
    /// Chunks fetched whole again after a delta or copy failed verification.
    pub chunks_refetched: u32,
    /// Chunks an attempt found already staged by an earlier, interrupted one (0: nothing was
    /// resumed).
    pub resumed: u32,
    /// Download attempts.
    pub attempts: u32,
    /// Chunks received per encoding.
    pub encodings: BTreeMap<String, u32>,
    /// Time spent staging, over all attempts, in milliseconds.
    pub duration_ms: u64,
    /// Where that time went (absent from states written before it was kept: all zero).
    #[serde(default)]
    pub stages: StageTimes,
    /// What came from mirrors instead of the coordinator (absent from states written before
    /// mirrors: all zero).
    #[serde(default)]
    pub mirrored: MirrorStats,
}

/// Chunks taken from mirrors and pre-signed addresses, summed over attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorStats {
    /// Chunks that arrived from a mirror and checked out.
    pub chunks: u32,
    /// Their frames' bytes.
    pub bytes: u64,
    /// Chunks a mirror failed to deliver intact (missing, refused, too large, too slow,
    /// wrong bytes): each then came from elsewhere.
    pub failures: u32,
}

/// Where staging time went, in microseconds, summed over attempts; what is left of
/// [`TransferStats::duration_ms`] went to bookkeeping between the stages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Getting the chunk index (read back from staging, or fetched).
    pub index_us: u64,
    /// Opening the staging file (checking what an interrupted attempt left there) and copying
    /// the chunks the installed versions hold; the copying runs beside the network.
    pub copy_us: u64,
    /// Waiting for the coordinator: opening requests and reading chunk bytes off the
    /// connection.
    pub network_us: u64,
    /// Decoding received chunks (with their windows read back) and checking their hashes.
    pub decode_us: u64,
    /// Writing decoded chunks into place.
    pub write_us: u64,
    /// Making the assembled file durable.
    pub fsync_us: u64,
    /// Reading the whole file back and checking it against the signed hash.
    pub verify_us: u64,
}

/// Per-model memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelState {
    /// Versions held back.
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Last failure, until an install succeeds.
    pub last_error: Option<InstallError>,
    /// Last update attempt.
    pub last_update: Option<UpdateRecord>,
    /// The switch held back now (outside the update windows, locked by the application,
    /// waiting for its update set), for `status`; the daemon keeps it current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<ferry_shared::wire::Deferral>,
}

/// The coordinator connection as last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Whether a session is open (as of the last write).
    pub connected: bool,
    /// When the last session opened.
    pub last_connected_at: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// Everything in `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Next event sequence number.
    pub next_seq: u64,
    /// Events the coordinator has not acknowledged, oldest first.
    pub pending_events: Vec<DeviceEvent>,
    /// Per model.
    pub models: BTreeMap<ModelName, ModelState>,
    /// The session to the coordinator: up, or since when and why down.
    pub connection: Connection,
}

/// State-file failures.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Unreadable content.
    #[error("{path} is not a valid agent state file: {reason}")]
    Corrupt {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was wrong, in words.
        reason: String,
    },
}

impl AgentState {
    /// Appends an event with the next sequence number.
    pub fn push_event(&mut self, model: &ModelName, kind: EventKind, at: u64) {
        self.next_seq = self.next_seq.max(1);
        self.pending_events.push(DeviceEvent {
            seq: self.next_seq,
            at,
            model: model.clone(),
            kind,
        });
        self.next_seq += 1;
        let excess = self.pending_events.len().saturating_sub(MAX_PENDING_EVENTS);
        self.pending_events.drain(..excess);
    }

    /// Drops events the coordinator has stored.
    pub fn acknowledge(&mut self, through: u64) {
        self.pending_events.retain(|e| e.seq > through);
        // A coordinator that already holds later events (e.g. state restored from a backup)
        // must not see new events under old numbers.
        self.next_seq = self.next_seq.max(through + 1);
    }

    /// The entry of a model, created on first use.
    pub fn model(&mut self, model: &ModelName) -> &mut ModelState {
        self.models.entry(model.clone()).or_default()
    }
}

/// The state file and its lock.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
    lock_path: PathBuf,
    /// A state this process could not write (a full disk, say): newer than the file, it is
    /// what this process reads and changes until a write succeeds, so no event is lost.
    unsaved: Arc<Mutex<Option<AgentState>>>,
}

/// Opens (creating) the lock file at `path`, with the error its later failures map to.
fn open_lock(path: &Path) -> Result<(File, impl Fn(io::Error) -> StateError + use<>), StateError> {
    let owned = path.to_owned();
    let io_err = move |source| StateError::Io {
        path: owned.clone(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(&io_err)?;
    Ok((file, io_err))
}

/// Holds the state-directory lock until dropped.
pub struct Locked {
    _file: File,
}

impl StateFile {
    /// The state file in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("state.json"),
            lock_path: dir.join("lock"),
            unsaved: Arc::default(),
        }
    }

    /// Takes the exclusive lock shared by the daemon and the local CLI commands.
    pub fn lock(&self) -> Result<Locked, StateError> {
        let (file, io_err) = open_lock(&self.lock_path)?;
        file.lock().map_err(io_err)?;
        Ok(Locked { _file: file })
    }

    /// Takes the lock a running daemon holds for its whole life, so that no two daemons share
    /// a state directory and `status` can tell whether one runs; `None` when another holds it.
    pub fn daemon_lock(&self) -> Result<Option<Locked>, StateError> {
        let (file, io_err) = open_lock(&self.lock_path.with_file_name("daemon.lock"))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Locked { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
        }
    }

    /// Reads the state (default when the file does not exist yet); in a process holding an
    /// unsaved state, that one.
    pub fn load(&self) -> Result<AgentState, StateError> {
        if let Some(state) = self.pending().clone() {
            return Ok(state);
        }
        self.load_file()
    }

    /// True while this process holds a state it could not write.
    pub fn is_unsaved(&self) -> bool {
        self.pending().is_some()
    }

    /// Writes the unsaved state, if any; true when there was one and it is now durable.
    pub fn flush(&self) -> Result<bool, StateError> {
        if !self.is_unsaved() {
            return Ok(false);
        }
        self.update(|_| {})?;
        Ok(true)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<AgentState>> {
        self.unsaved.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_file(&self) -> Result<AgentState, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => crate::stored::decode(&bytes, crate::stored::STATE_FORMAT).map_err(|e| {
                StateError::Corrupt {
                    path: self.path.clone(),
                    reason: e.to_string(),
                }
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(source) => Err(StateError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Read-modify-write under the lock; returns the new state.
    pub fn update(&self, change: impl FnOnce(&mut AgentState)) -> Result<AgentState, StateError> {
        let _lock = self.lock()?;
        self.update_locked(change)
    }

    /// Read-modify-write when the caller already holds the lock. When the write fails, the
    /// changed state is kept in memory (and returned by [`StateFile::load`]) until a later
    /// write succeeds; the error is returned all the same.
    pub fn update_locked(
        &self,
        change: impl FnOnce(&mut AgentState),
    ) -> Result<AgentState, StateError> {
        let unsaved = self.pending().take();
        let dirty = unsaved.is_some();
        let mut state = match unsaved {
            Some(state) => state,
            None => self.load_file()?,
        };
        let before = state.clone();
        change(&mut state);
        if dirty || state != before {
            let bytes =
                crate::stored::encode(&state, crate::stored::STATE_FORMAT).map_err(|e| {
                    StateError::Corrupt {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    }
                })?;
            if let Err(source) = write_atomic(&self.path, &bytes) {
                *self.pending() = Some(state);
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transfer figures as builds before the stage times wrote them still read, with the
    /// stages at zero.
    #[test]
    fn transfer_figures_without_stage_times_still_read() {
        let written = r#"{"bytes_on_wire":10,"bytes_reused_locally":0,"chunks_total":1,
            "chunks_fetched":1,"chunks_refetched":0,"resumed":0,"attempts":1,
            "encodings":{"zstd":1},"duration_ms":7}"#;
        let stats: TransferStats = serde_json::from_str(written).unwrap();
        assert_eq!(stats.duration_ms, 7);
        assert_eq!(stats.stages, StageTimes::default());
    }

    #[test]
    fn events_are_numbered_and_dropped_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path());
        let model: ModelName = "m".parse().unwrap();
        let kind = EventKind::LocalRollback {
            from: "2.0.0".parse().unwrap(),
            to: "1.0.0".parse().unwrap(),
        };
        file.update(|s| {
            s.push_event(&model, kind.clone(), 1);
            s.push_event(&model, kind.clone(), 2);
        })
        .unwrap();
        let state = file.load().unwrap();
        let seqs: Vec<u64> = state.pending_events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        let state = file.update(|s| s.acknowledge(1)).unwrap();
        assert_eq!(state.pending_events.len(), 1);
        assert_eq!(state.pending_events[0].seq, 2);
        let state = file.update(|s| s.push_event(&model, kind, 3)).unwrap();
        assert_eq!(state.pending_events.last().unwrap().seq, 3);
    }

    #[test]
    fn a_state_that_cannot_be_written_is_kept_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path());
        let model: ModelName = "m".parse().unwrap();
        let kind = EventKind::LocalRollback {
            from: "2.0.0".parse().unwrap(),
            to: "1.0.0".parse().unwrap(),
        };
        file.update(|s| s.push_event(&model, kind.clone(), 1))
            .unwrap();
        // A directory where the temp file would go makes every write fail.
        std::fs::create_dir(dir.path().join("state.tmp")).unwrap();
        assert!(
            file.update(|s| s.push_event(&model, kind.clone(), 2))
                .is_err()
        );
        assert!(file.is_unsaved());
        assert_eq!(
            file.load().unwrap().pending_events.len(),
            2,
            "kept in memory"
        );
        assert!(
            file.update(|s| s.push_event(&model, kind.clone(), 3))
                .is_err()
        );
        assert_eq!(
            StateFile::new(dir.path())
                .load()
                .unwrap()
                .pending_events
                .len(),
            1
        );
        std::fs::remove_dir(dir.path().join("state.tmp")).unwrap();
        assert!(file.flush().unwrap());
        assert!(!file.is_unsaved());
        let on_disk = StateFile::new(dir.path()).load().unwrap();
        let seqs: Vec<u64> = on_disk.pending_events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3], "nothing lost");
    }

    #[test]
    fn a_corrupt_state_file_is_reported_not_silently_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{ not json").unwrap();
        let err = StateFile::new(dir.path()).load().unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
