//! Fetch streams: an agent opens one per request, for an artifact's chunk index or for a
//! batch of chunks it lacks. Chunks are answered in order, a few encoded ahead of the one
//! being sent; a chunk that cannot be served is answered `Unavailable` without ending the
//! stream, and a request for an artifact this coordinator does not hold is refused as
//! permanent so the agent stops asking. A device reads only what is in its [`Reach`]: other
//! artifacts are refused, a delta against one it does not hold goes as the stored chunk, and
//! fresh encodes come out of its [`crate::agents::encode_budget`].

use std::collections::VecDeque;
use std::sync::Arc;

use ferry_shared::Digest;
use ferry_shared::chunk::ChunkIndex;
use ferry_shared::wire::io::{
    FrameIoError, read_frame, read_preamble, write_frame, write_preamble,
};
use ferry_shared::wire::{
    ChunkReply, ChunkWant, DeviceId, FetchRequest, FetchResponse, MAX_CHUNKS_PER_REQUEST, serves,
};
use quinn::{RecvStream, SendStream};
use tracing::{debug, warn};

use crate::agents::reach::{Reach, reach_of};
use crate::agents::session_error::SessionError;
use crate::agents::transfer::ServeError;
use crate::app::{Coordinator, Counters};

/// Serves one fetch stream of `device`'s session on a task of its own.
pub(crate) fn serve_fetch(
    app: Arc<Coordinator>,
    device: DeviceId,
    send: SendStream,
    recv: RecvStream,
) {
    tokio::spawn(async move {
        if let Err(e) = fetch(app, device, send, recv).await {
            debug!("fetch stream ended: {e}");
        }
    });
}

fn io_error(e: quinn::WriteError) -> FrameIoError {
    FrameIoError::Io(e.into())
}

/// How long a fetch stream may take to say what it wants.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Chunks encoded ahead of the one being sent, per stream.
const ENCODE_AHEAD: usize = 4;

async fn fetch(
    app: Arc<Coordinator>,
    device: DeviceId,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), SessionError> {
    // A peer that opens a stream and says nothing does not keep a task waiting: it has
    // REQUEST_TIMEOUT to send its preamble and request (the connection itself stays up).
    let opening = async {
        let preamble = read_preamble(&mut recv).await?;
        write_preamble(&mut send).await?;
        if !serves(preamble.version) {
            return Err(SessionError::Protocol(format!(
                "fetch with protocol {}",
                preamble.version
            )));
        }
        let request = read_frame::<_, FetchRequest>(&mut recv, "fetch request")
            .await?
            .ok_or_else(|| SessionError::Protocol("fetch stream without a request".into()))?;
        Ok::<_, SessionError>((preamble.version, request))
    };
    let (protocol, request) = tokio::time::timeout(REQUEST_TIMEOUT, opening)
        .await
        .map_err(|_| SessionError::Protocol("no fetch request within 10 s".into()))??;
    let file = match &request {
        FetchRequest::Index { file }
        | FetchRequest::Chunks { file, .. }
        | FetchRequest::Locations { file, .. } => *file,
    };
    let app2 = app.clone();
    let id = device.clone();
    let reach = match tokio::task::spawn_blocking(move || reach_of(&app2, &id)).await {
        Ok(Ok(reach)) => reach,
        Ok(Err(e)) => {
            warn!(device = %device, "cannot tell what the device may fetch: {e}");
            return refuse(
                &mut send,
                false,
                format!("cannot check access to {file}: {e}"),
            )
            .await;
        }
        Err(e) => return Err(SessionError::Protocol(format!("access check failed: {e}"))),
    };
    if !reach.may_fetch(&file) {
        warn!(device = %device, file = %file, "refused a fetch outside the device's releases");
        Counters::add(&app.counters.fetches_refused, 1);
        // Not permanent: the device's desired state may come to name it (an alias moving).
        return refuse(
            &mut send,
            false,
            format!("artifact {file} is not part of a release this device may run"),
        )
        .await;
    }
    match request {
        FetchRequest::Index { file } => serve_index(&app, &mut send, file).await,
        FetchRequest::Chunks { file, wants } => {
            serve_chunks(&app, &device, &reach, &mut send, file, wants, protocol).await
        }
        FetchRequest::Locations { file, ordinals } => {
            let elsewhere = !reach.is_confidential(&file);
            serve_locations(&app, &mut send, file, &ordinals, elsewhere).await
        }
    }
}

/// Where else the chunks may be fetched; nowhere when `elsewhere` is false (a confidential
/// model's artifact).
async fn serve_locations(
    app: &Coordinator,
    send: &mut SendStream,
    file: Digest,
    ordinals: &[u32],
    elsewhere: bool,
) -> Result<(), SessionError> {
    if ordinals.len() > MAX_CHUNKS_PER_REQUEST {
        let message = format!(
            "locations of {} chunks asked at once; at most {MAX_CHUNKS_PER_REQUEST}",
            ordinals.len()
        );
        return refuse(send, true, message).await;
    }
    let answer = if elsewhere && app.config.mirrors.any() {
        match stored_index(app, &file) {
            Ok(index) => crate::agents::locations::locations(app, &index, ordinals),
            Err((permanent, message)) => return refuse(send, permanent, message).await,
        }
    } else {
        FetchResponse::Locations {
            mirrors: Vec::new(),
            signed: Vec::new(),
        }
    };
    write_frame(send, &answer).await?;
    let _ = send.finish();
    Ok(())
}

async fn refuse(
    send: &mut SendStream,
    permanent: bool,
    message: String,
) -> Result<(), SessionError> {
    write_frame(send, &FetchResponse::Error { permanent, message }).await?;
    let _ = send.finish();
    Ok(())
}

/// The artifact's chunk index, or a refusal: permanent when it is not stored here.
fn stored_index(app: &Coordinator, file: &Digest) -> Result<ChunkIndex, (bool, String)> {
    match app.store.blob_index(file) {
        Ok(Some(index)) => Ok(index),
        Ok(None) => Err((
            true,
            format!("artifact {file} is not stored on this coordinator"),
        )),
        Err(e) => {
            warn!("chunk index of {file}: {e}");
            Err((false, format!("chunk index of {file} unreadable: {e}")))
        }
    }
}

async fn serve_index(
    app: &Coordinator,
    send: &mut SendStream,
    file: Digest,
) -> Result<(), SessionError> {
    let index = match stored_index(app, &file) {
        Ok(index) => index,
        Err((permanent, message)) => return refuse(send, permanent, message).await,
    };
    let bytes = index.to_canonical_bytes();
    write_frame(
        send,
        &FetchResponse::Index {
            len: bytes.len() as u64,
        },
    )
    .await?;
    send.write_all(&bytes).await.map_err(io_error)?;
    let _ = send.finish();
    Ok(())
}

async fn serve_chunks(
    app: &Arc<Coordinator>,
    device: &DeviceId,
    reach: &Reach,
    send: &mut SendStream,
    file: Digest,
    wants: Vec<ChunkWant>,
    protocol: u16,
) -> Result<(), SessionError> {
    if wants.len() > MAX_CHUNKS_PER_REQUEST {
        return refuse(
            send,
            true,
            format!(
                "{} chunks asked at once; at most {MAX_CHUNKS_PER_REQUEST}",
                wants.len()
            ),
        )
        .await;
    }
    let index = match stored_index(app, &file) {
        Ok(index) => Arc::new(index),
        Err((permanent, message)) => return refuse(send, permanent, message).await,
    };
    write_frame(send, &FetchResponse::Chunks).await?;
    // Encode a few chunks ahead of the one being sent, in order.
    let mut pending = VecDeque::new();
    let mut wants = wants.into_iter();
    loop {
        while pending.len() < ENCODE_AHEAD
            && let Some(mut want) = wants.next()
        {
            // A delta against what the device does not hold is of no use to it: the
            // stored chunk goes instead, and nothing is encoded on its behalf. A window of
            // the file being fetched is the device's own staged bytes (a first install).
            if want
                .reference
                .is_some_and(|w| w.file != file && !reach.holds(&w.file))
            {
                want.reference = None;
            }
            let (app, index, device) = (app.clone(), index.clone(), device.clone());
            pending.push_back((
                want,
                tokio::spawn(async move {
                    let chunks = index.chunks.len();
                    let budget_app = app.clone();
                    let may_encode = move || {
                        let granted =
                            budget_app
                                .encode_budget
                                .take(&device, file, chunks, crate::unix_now());
                        if !granted {
                            Counters::add(&budget_app.counters.encodes_refused, 1);
                        }
                        granted
                    };
                    app.transfer
                        .chunk(&app.store, file, &index, want, protocol, may_encode)
                        .await
                }),
            ));
        }
        let Some((want, task)) = pending.pop_front() else {
            break;
        };
        let encoded = task
            .await
            .map_err(|e| ServeError::Task(e.to_string()))
            .and_then(|r| r);
        match encoded {
            Ok(encoded) => {
                let reply = ChunkReply::Chunk {
                    ordinal: want.ordinal,
                    encoding: encoded.encoding,
                    len: u32::try_from(encoded.payload.len()).map_err(|_| {
                        SessionError::Protocol("an encoded chunk over 4 GiB".into())
                    })?,
                };
                app.serve_cap.pace(encoded.payload.len()).await;
                write_frame(send, &reply).await?;
                let len = encoded.payload.len() as u64;
                // Handed to QUIC as it is, not copied into its send buffer; its buffer
                // serves a later read once sent.
                send.write_chunk(app.transfer.chunks.recycle(encoded.payload))
                    .await
                    .map_err(io_error)?;
                Counters::add(&app.counters.bytes_served, len);
                Counters::add(&app.counters.chunks_served, 1);
                app.transfers_by_device.record(
                    device,
                    file,
                    len,
                    encoded.encoding,
                    crate::unix_now(),
                );
                if encoded.encoding.needs_reference() {
                    Counters::add(&app.counters.deltas_served, 1);
                }
            }
            Err(e) => {
                if !matches!(e, ServeError::BadRequest(_)) {
                    warn!(file = %file, ordinal = want.ordinal, "cannot serve a chunk: {e}");
                }
                let reply = ChunkReply::Unavailable {
                    ordinal: want.ordinal,
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                };
                write_frame(send, &reply).await?;
            }
        }
    }
    let _ = send.finish();
    Ok(())
}
