//! Artifact uploads that survive a cut: the file streams to `PUT /blobs/{hash}` with its
//! size in `Upload-Length`; when the link drops, the coordinator restarts or answers that the
//! upload is elsewhere than assumed, ferryctl asks how much the coordinator holds (`GET
//! /blobs/{hash}/upload`) and sends the rest from there. An upload a previous ferryctl run
//! left unfinished is continued the same way. It gives up after [`STALLED_ATTEMPTS`] attempts
//! in a row that moved nothing.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_coordinator::api::{BlobStored, UploadProgress};
use ferry_coordinator::api::{UPLOAD_LENGTH, UPLOAD_OFFSET};
use ferry_shared::Digest;
use futures_util::StreamExt;
use tokio::io::AsyncSeekExt;

use crate::client::Client;
use crate::exit::{ApiFailure, Unreachable};

/// Attempts in a row that may end without the coordinator holding more than before.
const STALLED_ATTEMPTS: u32 = 5;

/// Uploads `file` (whose bytes hash to `hash`) as the artifact `hash`, resuming where the
/// coordinator's copy ends.
/// Its progress goes to stderr as JSON lines when `lines`, else to a bar.
/// `shown` names the upload in messages and progress (the directory a temporary archive was
/// packed from, say).
pub(crate) async fn upload(
    client: &Client,
    hash: &Digest,
    file: &Path,
    shown: &Path,
    lines: bool,
) -> Result<BlobStored> {
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let mut stalled = 0;
    let mut held = held(client, hash, size).await;
    loop {
        if held > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "ferryctl: continuing the upload of {} at byte {held} of {size}",
                shown.display()
            );
        }
        let meter = crate::progress::Meter::upload(size, shown, lines);
        let error = match put_from(client, hash, file, held, size, &meter).await {
            Ok(stored) => return Ok(stored),
            Err(e) if retryable(client, &e) => e,
            Err(e) => return Err(e),
        };
        let before = held;
        held = self::held(client, hash, size).await;
        stalled = if held > before { 0 } else { stalled + 1 };
        if stalled >= STALLED_ATTEMPTS {
            return Err(error.context(format!(
                "the upload made no progress in {STALLED_ATTEMPTS} attempts"
            )));
        }
        let _ = writeln!(
            std::io::stderr(),
            "ferryctl: the upload of {} stopped ({error:#}); trying again",
            shown.display()
        );
        tokio::time::sleep(backoff(stalled)).await;
    }
}

/// The bytes of the upload of `hash` the coordinator holds (0 when none, or when it holds
/// more than the file has: that is another file's start).
async fn held(client: &Client, hash: &Digest, size: u64) -> u64 {
    match client
        .get_optional::<UploadProgress>(&format!("/blobs/{hash}/upload"))
        .await
    {
        Ok(Some(progress)) if progress.received <= size => progress.received,
        _ => 0,
    }
}

/// Sends `file` from byte `offset` on.
async fn put_from(
    client: &Client,
    hash: &Digest,
    file: &Path,
    offset: u64,
    size: u64,
    meter: &crate::progress::Meter,
) -> Result<BlobStored> {
    let mut handle = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    handle
        .seek(std::io::SeekFrom::Start(offset))
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    meter.set_position(offset);
    let counted = meter.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(handle, 256 * 1024).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                counted.inc(bytes.len() as u64);
            }
            chunk
        });
    let result = client
        .send(
            client
                .request(reqwest::Method::PUT, &format!("/blobs/{hash}"))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size - offset)
                .header(UPLOAD_OFFSET, offset)
                .header(UPLOAD_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
    meter.finish();
    result
}

/// True for failures another attempt may get past: the link (not a refused certificate),
/// a coordinator that restarted or was busy, an upload elsewhere than this one assumed.
fn retryable(client: &Client, e: &anyhow::Error) -> bool {
    if let Some(failure) = e.downcast_ref::<ApiFailure>() {
        return matches!(failure.status.as_u16(), 409 | 500 | 502 | 503 | 504);
    }
    e.downcast_ref::<Unreachable>().is_some() && !client.certificate_refused()
}

/// The wait before attempt `n` of a stalled upload: 0.5 s, doubling, at most 8 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(500u64 << n.min(4))
}
