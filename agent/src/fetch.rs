//! Downloading and staging a version: the artifact's compressed bytes stream from a fetch
//! stream through a zstd decoder with a capped window, a size cap and a hasher into the
//! staging directory, beside the signed envelope. Only bytes that hash to the signed value and
//! have the signed size are fsynced and promoted into the installed versions; anything else
//! leaves the device exactly as it was.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use ferry_shared::digest::Hasher;
use ferry_shared::wire::io::{read_frame, read_preamble, write_frame, write_preamble};
use ferry_shared::wire::{ErrorKind, FetchRequest, FetchResponse, InstallError};
use ferry_shared::{Digest, ModelName};
use quinn::Connection;

use crate::fsutil::{fsync_dir, remove_tree};
use crate::slots::Layout;
use crate::updater::Target;

/// Largest zstd window accepted (2^27 = 128 MiB would be the format's default cap; Ferry's
/// coordinator compresses with at most 2^23).
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// Bytes read from the network per step.
const READ_CHUNK: usize = 64 * 1024;

/// The name of the signed envelope kept beside each installed artifact.
pub const ENVELOPE_FILE: &str = "release.envelope";

/// What staging did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    /// Compressed bytes received.
    pub bytes_on_wire: u64,
    /// True when the version was already on disk (e.g. returning to `previous`).
    pub already_installed: bool,
}

/// A staging failure and whether trying again may help.
#[derive(Debug)]
pub struct StageFailure {
    /// What to report.
    pub error: InstallError,
    /// Whether to retry.
    pub retryable: bool,
}

fn failure(
    target: &Target,
    kind: ErrorKind,
    message: String,
    retryable: bool,
    now: u64,
) -> StageFailure {
    StageFailure {
        error: InstallError {
            version: target.version.clone(),
            kind,
            message,
            at: now,
        },
        retryable,
    }
}

/// Stages `target` for `model`: a no-op when installed, else downloads over `conn`.
pub async fn stage(
    conn: Option<Connection>,
    layout: &Layout,
    model: &ModelName,
    target: &Target,
    now: u64,
) -> Result<Staged, StageFailure> {
    let disk = |e: String| failure(target, ErrorKind::Disk, e, true, now);
    if layout.is_installed(model, &target.version) {
        let file = layout.artifact_path(model, &target.version, target.variant.file_name.as_str());
        match fs::metadata(&file) {
            Ok(m) if m.len() == target.variant.size => {
                return Ok(Staged {
                    bytes_on_wire: 0,
                    already_installed: true,
                });
            }
            // An installed copy that no longer matches is replaced by a fresh download.
            _ => {
                let dir = layout.version_dir(model, &target.version);
                remove_tree(&dir).map_err(|e| disk(format!("{}: {e}", dir.display())))?;
            }
        }
    }
    let conn = conn.ok_or_else(|| {
        failure(
            target,
            ErrorKind::Download,
            "not connected to the coordinator".into(),
            true,
            now,
        )
    })?;
    let staging = layout.staging_dir(model, &target.version);
    remove_tree(&staging).map_err(|e| disk(format!("{}: {e}", staging.display())))?;
    fs::create_dir_all(&staging).map_err(|e| disk(format!("{}: {e}", staging.display())))?;
    let result = download(&conn, model, target, &staging, now).await;
    let bytes_on_wire = match result {
        Ok(n) => n,
        Err(f) => {
            let _ = remove_tree(&staging);
            return Err(f);
        }
    };
    layout
        .promote(model, &target.version)
        .map_err(|e| disk(e.to_string()))?;
    Ok(Staged {
        bytes_on_wire,
        already_installed: false,
    })
}

async fn download(
    conn: &Connection,
    model: &ModelName,
    target: &Target,
    staging: &Path,
    now: u64,
) -> Result<u64, StageFailure> {
    let fail = |kind, message: String, retryable| failure(target, kind, message, retryable, now);
    let net = |e: String| fail(ErrorKind::Download, e, true);
    let envelope_path = staging.join(ENVELOPE_FILE);
    fs::write(&envelope_path, &target.envelope).map_err(|e| {
        fail(
            ErrorKind::Disk,
            format!("{}: {e}", envelope_path.display()),
            true,
        )
    })?;

    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| net(e.to_string()))?;
    write_preamble(&mut send)
        .await
        .map_err(|e| net(e.to_string()))?;
    let request = FetchRequest {
        model: model.clone(),
        version: target.version.clone(),
        blob: target.variant.hash,
    };
    write_frame(&mut send, &request)
        .await
        .map_err(|e| net(e.to_string()))?;
    let _ = send.finish();
    read_preamble(&mut recv)
        .await
        .map_err(|e| net(e.to_string()))?;
    let response: FetchResponse = read_frame(&mut recv, "fetch response")
        .await
        .map_err(|e| net(e.to_string()))?
        .ok_or_else(|| net("the coordinator closed the download".into()))?;
    match response {
        FetchResponse::Error { permanent, message } => {
            return Err(fail(
                ErrorKind::Download,
                format!("the coordinator refused the download: {message}"),
                !permanent,
            ));
        }
        FetchResponse::Zstd { size } if size != target.variant.size => {
            return Err(fail(
                ErrorKind::Integrity,
                format!(
                    "the coordinator announced {size} bytes; the signed manifest says {}",
                    target.variant.size
                ),
                true,
            ));
        }
        FetchResponse::Zstd { .. } => {}
    }

    // Decompression, hashing and disk writes run on a blocking thread fed chunk by chunk.
    let file_path = staging.join(target.variant.file_name.as_str());
    let expected_size = target.variant.size;
    let (tx, rx) = std_mpsc::sync_channel::<Vec<u8>>(4);
    let writer = tokio::task::spawn_blocking(move || write_decoded(rx, &file_path, expected_size));
    let mut on_wire = 0u64;
    let mut read_error = None;
    loop {
        let mut chunk = vec![0u8; READ_CHUNK];
        match recv.read(&mut chunk).await {
            Ok(None) => break,
            Ok(Some(n)) => {
                on_wire += n as u64;
                chunk.truncate(n);
                if tx.send(chunk).is_err() {
                    break; // the writer stopped; its error says why
                }
            }
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| fail(ErrorKind::Disk, format!("writer task failed: {e}"), true))?;
    let (size, hash) = match written {
        Ok(done) => done,
        Err(WriteError::Disk(e)) => return Err(fail(ErrorKind::Disk, e, true)),
        Err(WriteError::Content(e)) => return Err(fail(ErrorKind::Integrity, e, true)),
    };
    if let Some(e) = read_error {
        return Err(net(format!(
            "download interrupted after {on_wire} bytes: {e}"
        )));
    }
    if size != expected_size || hash != target.variant.hash {
        return Err(fail(
            ErrorKind::Integrity,
            format!(
                "downloaded artifact does not match the signed manifest: {size} bytes with hash {} (signed: {} bytes, {})",
                hash.short(),
                expected_size,
                target.variant.hash.short()
            ),
            true,
        ));
    }
    fsync_dir(staging)
        .map_err(|e| fail(ErrorKind::Disk, format!("{}: {e}", staging.display()), true))?;
    Ok(on_wire)
}

enum WriteError {
    Disk(String),
    Content(String),
}

/// Decodes zstd chunks into `path`, refusing to write more than `limit` bytes; returns the
/// size and hash of what was written, fsynced.
fn write_decoded(
    chunks: std_mpsc::Receiver<Vec<u8>>,
    path: &Path,
    limit: u64,
) -> Result<(u64, Digest), WriteError> {
    let disk = |e: io::Error| WriteError::Disk(format!("{}: {e}", path.display()));
    let file = File::create(path).map_err(disk)?;
    let sink = CappedSink {
        file,
        path: path.to_owned(),
        hasher: Hasher::new(),
        written: 0,
        limit,
        over: false,
    };
    let mut decoder = zstd::stream::write::Decoder::new(sink).map_err(disk)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(disk)?;
    for chunk in chunks {
        if let Err(e) = decoder.write_all(&chunk) {
            return Err(classify(decoder.get_ref(), e));
        }
    }
    if let Err(e) = decoder.flush() {
        return Err(classify(decoder.get_ref(), e));
    }
    let sink = decoder.into_inner();
    sink.file.sync_all().map_err(disk)?;
    Ok((sink.written, sink.hasher.finish()))
}

fn classify(sink: &CappedSink, e: io::Error) -> WriteError {
    if sink.over {
        WriteError::Content(format!(
            "the artifact is longer than the signed {} bytes",
            sink.limit
        ))
    } else if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::InvalidData {
        WriteError::Content(format!("the compressed stream is corrupt: {e}"))
    } else {
        WriteError::Disk(format!("{}: {e}", sink.path.display()))
    }
}

/// The decoder's output: hashed, counted, and never allowed past the signed size.
struct CappedSink {
    file: File,
    path: PathBuf,
    hasher: Hasher,
    written: u64,
    limit: u64,
    over: bool,
}

impl Write for CappedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.over = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes than signed",
            ));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(data: &[u8], limit: u64) -> (tempfile::TempDir, Result<(u64, Digest), WriteError>) {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std_mpsc::sync_channel(64);
        for chunk in data.chunks(1000) {
            tx.send(chunk.to_vec()).unwrap();
        }
        drop(tx);
        let path = dir.path().join("out");
        let result = write_decoded(rx, &path, limit);
        (dir, result)
    }

    #[test]
    fn decodes_and_hashes_what_it_writes() {
        let original = b"weights ".repeat(10_000);
        let compressed = zstd::encode_all(original.as_slice(), 3).unwrap();
        let (_dir, result) = feed(&compressed, original.len() as u64);
        let Ok((size, hash)) = result else {
            panic!("decode failed")
        };
        assert_eq!(size, original.len() as u64);
        assert_eq!(hash, Digest::of(&original));
    }

    #[test]
    fn refuses_more_bytes_than_signed() {
        let original = vec![7u8; 100_000];
        let compressed = zstd::encode_all(original.as_slice(), 3).unwrap();
        let (_dir, result) = feed(&compressed, 50_000);
        assert!(matches!(result, Err(WriteError::Content(m)) if m.contains("longer than")));
    }

    #[test]
    fn refuses_a_corrupt_stream() {
        let original = b"model".repeat(20_000);
        let mut compressed = zstd::encode_all(original.as_slice(), 3).unwrap();
        let mid = compressed.len() / 2;
        compressed[mid] ^= 0xff;
        compressed[mid + 1] ^= 0xff;
        let (_dir, result) = feed(&compressed, original.len() as u64);
        // Either the decoder notices, or the bytes will not hash to the signed value; both are
        // caught before anything is promoted. Here the frame checksum makes the decoder notice.
        match result {
            Err(WriteError::Content(_)) => {}
            Ok((_, hash)) => assert_ne!(hash, Digest::of(&original)),
            Err(WriteError::Disk(m)) => panic!("misclassified as disk: {m}"),
        }
    }
}
