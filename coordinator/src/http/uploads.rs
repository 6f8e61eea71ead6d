//! Artifact uploads, `/blobs/{hash}`: a `PUT` streams the bytes to a spool while they are
//! hashed, then cuts them into the chunk store (see [`crate::store::blobs`]); a `GET` says
//! whether the artifact is stored.
//!
//! Uploads resume. A `PUT` that names its total size in `Upload-Length` is resumable: when it
//! is cut (a dropped link, a killed client, a restarted coordinator) its bytes so far stay on
//! disk, `GET /blobs/{hash}/upload` says how many, and a `PUT` with `Upload-Offset: N` sends
//! the rest from byte N; a 10 GiB upload cut at 9 GiB sends 1 GiB more, not 10. A `PUT`
//! without `Upload-Length` (older clients) is taken whole, as before. One attempt per
//! artifact runs at a time: a second is refused while the first is under way (409).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use ferry_shared::Digest;
use ferry_shared::chunk::ChunkParams;
use futures_util::StreamExt;

use crate::api::{BlobStored, UPLOAD_LENGTH, UPLOAD_OFFSET, UploadProgress};
use crate::app::Coordinator;
use crate::http::replies::{Failure, parse};
use crate::http::route::Route;
use crate::rules::access::Action;
use crate::store::blobs::{Arrival, BlobError, Spool, uploaded_part};
use crate::store::chunks::ChunkStore;
use crate::store::records::BlobRecord;
use crate::unix_now;

/// The routes, declared with what each requires.
pub(crate) fn routes() -> Vec<Route> {
    vec![
        // Artifacts stream to the spool under `max_artifact_bytes`; every other body is small.
        Route::put("/blobs/{hash}", Action::Upload, upload).body_unlimited(),
        Route::get("/blobs/{hash}", Action::Read, stored).body_unlimited(),
        Route::get("/blobs/{hash}/upload", Action::Read, progress),
    ]
}

/// What the API says of a stored artifact (`resumed_from`: bytes earlier attempts sent).
pub(crate) fn view(
    hash: &Digest,
    record: &BlobRecord,
    created: bool,
    resumed_from: u64,
) -> BlobStored {
    BlobStored {
        hash: hash.to_hex(),
        size: record.size,
        chunks: record.chunks.to_hex(),
        chunk_count: record.chunk_count,
        new_chunks: if created { record.new_chunks } else { 0 },
        new_bytes: if created { record.new_bytes } else { 0 },
        created,
        resumed_from,
    }
}

async fn stored(
    State(app): State<Arc<Coordinator>>,
    Path(hash): Path<String>,
) -> Result<Json<BlobStored>, Failure> {
    let hash: Digest = parse(&hash)?;
    let record = app.store.blob(&hash)?.ok_or_else(|| {
        Failure(
            StatusCode::NOT_FOUND,
            format!("artifact {hash} is not stored"),
        )
    })?;
    Ok(Json(view(&hash, &record, false, 0)))
}

/// How much of an interrupted upload is stored; 404 when none is.
async fn progress(
    State(app): State<Arc<Coordinator>>,
    Path(hash): Path<String>,
) -> Result<Json<UploadProgress>, Failure> {
    let hash: Digest = parse(&hash)?;
    let chunks = app.transfer.chunks.clone();
    let part = tokio::task::spawn_blocking(move || uploaded_part(&chunks, &hash))
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match part {
        Some(received) => Ok(Json(UploadProgress {
            hash: hash.to_hex(),
            received,
        })),
        None => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no upload of {hash} is stored"),
        )),
    }
}

/// A header's value as a byte count (`None` when absent).
fn byte_count(headers: &HeaderMap, name: &str) -> Result<Option<u64>, Failure> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Failure(
                StatusCode::BAD_REQUEST,
                format!("{name} must be a byte count"),
            )
        })
}

async fn upload(
    State(app): State<Arc<Coordinator>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BlobStored>), Failure> {
    let hash: Digest = parse(&hash)?;
    let offset = byte_count(&headers, UPLOAD_OFFSET)?.unwrap_or(0);
    let length = byte_count(&headers, UPLOAD_LENGTH)?;
    let limit = app.config.max_artifact_bytes;
    if let Some(length) = length
        && (length > limit || offset > length)
    {
        return Err(Failure(
            if length > limit {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            },
            format!("an upload of {length} bytes from byte {offset} (the limit is {limit} bytes)"),
        ));
    }
    if length.is_none() && offset > 0 {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("{UPLOAD_OFFSET} needs {UPLOAD_LENGTH}"),
        ));
    }
    // No collection deletes a chunk while this upload may be reusing it.
    let _gc = app.gc_lock.read().await;
    let _fleet_gc =
        crate::registry::gc_fence::hold(&app, false, format!("an upload of {}", hash.short()))
            .await?;
    if let Some(record) = app.store.blob(&hash)? {
        return Ok((StatusCode::OK, Json(view(&hash, &record, false, 0))));
    }
    let _attempt = app.uploads.begin(hash)?;
    let chunks = app.transfer.chunks.clone();
    let spool = tokio::task::spawn_blocking(move || match length {
        Some(_) => Spool::resume(&chunks, hash, limit, offset),
        None => Spool::new(&chunks, hash, limit),
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(failure)?;
    let chunks = app.transfer.chunks.clone();
    let ingested = match receive(chunks, spool, body, length).await? {
        Arrival::Whole(ingested) => ingested,
        Arrival::Partial(spool, why) => {
            let received = spool.received();
            // A resumable upload keeps what came, made durable; another goes with the spool.
            let kept = tokio::task::spawn_blocking(move || spool.keep())
                .await
                .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if let Err(e) = kept {
                tracing::warn!("cannot keep an interrupted upload: {e}");
            }
            let resume = match length {
                Some(_) => format!(": resume with {UPLOAD_OFFSET}: {received}"),
                None => String::new(),
            };
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("upload interrupted at byte {received} ({why}){resume}"),
            ));
        }
    };
    app.store.record_blob(&ingested)?;
    Ok((
        StatusCode::CREATED,
        Json(view(&ingested.hash, &ingested.record, true, offset)),
    ))
}

/// Feeds `body` to [`Spool::receive`] on a blocking thread, which writes, cuts and stores it
/// as it arrives.
async fn receive(
    chunks: ChunkStore,
    spool: Spool,
    body: Body,
    length: Option<u64>,
) -> Result<Arrival, Failure> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Bytes, String>>(16);
    let worker = tokio::task::spawn_blocking(move || {
        spool.receive(
            &chunks,
            ChunkParams::DEFAULT,
            rx.into_iter(),
            length,
            unix_now(),
        )
    });
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| e.to_string());
        let cut = piece.is_err();
        if tx.send(piece).is_err() || cut {
            break; // the receiver stopped (its error is reported below), or the body did
        }
    }
    drop(tx);
    worker
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(failure)
}

fn failure(e: BlobError) -> Failure {
    let status = match e {
        BlobError::HashMismatch { .. } => StatusCode::BAD_REQUEST,
        BlobError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BlobError::Offset { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Failure(status, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_headers_must_be_byte_counts() {
        let mut headers = HeaderMap::new();
        assert_eq!(byte_count(&headers, UPLOAD_OFFSET).ok().unwrap(), None);
        headers.insert(UPLOAD_OFFSET, "42".parse().unwrap());
        assert_eq!(byte_count(&headers, UPLOAD_OFFSET).ok().unwrap(), Some(42));
        for bad in ["-1", "1e3", "lots", "18446744073709551616"] {
            headers.insert(UPLOAD_OFFSET, bad.parse().unwrap());
            let refused = byte_count(&headers, UPLOAD_OFFSET).err().unwrap();
            assert_eq!(refused.0, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
