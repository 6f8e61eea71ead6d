//! The first-install table: what a device holding no version of an artifact is sent for the
//! new file of each pair, beside whole-file zstd -19 (the anchor) in the same run.
//!
//! Rows: the stored chunks as the coordinator serves them before anything is precomputed
//! (each chunk alone at the store level), and the precomputed first install (each chunk
//! against the bytes of the file just before it, [`window::install_window`], at level 19, or
//! its stored frame where that is smaller). Both count the chunk index and two bytes of
//! framing per chunk, as the delta rows do. Apply decodes every chunk in file order, each
//! against the output so far, and checks its hash.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferry_shared::Digest;
use ferry_shared::chunk::{ChunkIndex, ChunkParams};
use ferry_shared::delta::window::{self, WINDOW};
use ferry_shared::delta::{self, Encoded, Encoding, Limits};
use ferry_tests::procfs::own_cpu_time;

use super::{LEVEL, Row};

/// The coordinator's default store level (`compression_level`).
const STORE_LEVEL: i32 = 9;

/// The rows for a first install of `new`, chunked with `params`; with the whole-file zstd
/// anchor when `anchor`.
pub(crate) fn rows(new: &[u8], params: ChunkParams, anchor: bool) -> Result<Vec<Row>> {
    let cut = ChunkIndex::build(new, params)?;
    let (index, file) = (cut.index, cut.hash);
    let overhead = index.to_canonical_bytes().len() as u64 + 2 * index.chunks.len() as u64;
    let spans: Vec<(usize, usize)> = index
        .spans()
        .map(|(offset, c)| (offset as usize, c.len as usize))
        .collect();
    let chunk = |i: usize| &new[spans[i].0..spans[i].0 + spans[i].1];

    let (start, cpu) = (Instant::now(), own_cpu_time()?);
    let stored = on_two_workers(spans.len(), |i| {
        Ok(Encoded {
            encoding: Encoding::Zstd,
            payload: zstd::bulk::compress(chunk(i), STORE_LEVEL)?,
        })
    })?;
    let stored_row = applied(
        format!("stored chunks (zstd -{STORE_LEVEL} each: before the precompute)"),
        new,
        (&index, file),
        &stored,
        overhead,
        (start.elapsed(), own_cpu_time()? - cpu),
    )?;

    let (start, cpu) = (Instant::now(), own_cpu_time()?);
    let precomputed = on_two_workers(spans.len(), |i| {
        let prefix = match window::install_window(file, spans[i].0 as u64, WINDOW) {
            Some(w) => &new[w.offset as usize..(w.offset + w.len) as usize],
            None => &[][..],
        };
        let encoded = delta::encode_after_own_prefix(chunk(i), prefix, LEVEL)?;
        // As the coordinator serves it: the stored frame where that is smaller.
        Ok(if encoded.payload.len() < stored[i].payload.len() {
            encoded
        } else {
            stored[i].clone()
        })
    })?;
    let precomputed_row = applied(
        format!(
            "**Ferry** first install, precomputed (each chunk after the {} MiB before it, zstd -{LEVEL})",
            WINDOW >> 20
        ),
        new,
        (&index, file),
        &precomputed,
        overhead,
        (start.elapsed(), own_cpu_time()? - cpu),
    )?;
    let mut rows = vec![stored_row, precomputed_row];
    if anchor {
        let (start, cpu) = (Instant::now(), own_cpu_time()?);
        let whole = zstd::bulk::compress(new, LEVEL)?;
        let (encode, encode_cpu) = (start.elapsed(), own_cpu_time()? - cpu);
        let start = Instant::now();
        if zstd::bulk::decompress(&whole, new.len())? != new {
            bail!("zstd did not reproduce the file");
        }
        rows.push(Row {
            tool: format!("zstd -{LEVEL} (whole file)"),
            bytes: whole.len() as u64,
            encode,
            encode_cpu,
            apply: start.elapsed(),
        });
    }
    Ok(rows)
}

/// Decodes `encoded` chunk by chunk as an agent would, each against the output before it,
/// checks every hash and the whole file, and makes the row.
fn applied(
    tool: String,
    new: &[u8],
    (index, file): (&ChunkIndex, Digest),
    encoded: &[Encoded],
    overhead: u64,
    (encode, encode_cpu): (Duration, Duration),
) -> Result<Row> {
    let start = Instant::now();
    let mut out: Vec<u8> = Vec::with_capacity(new.len());
    for ((offset, c), enc) in index.spans().zip(encoded) {
        let window = window::install_window(file, offset, WINDOW)
            .filter(|_| enc.encoding.needs_reference())
            .map(|w| {
                let from = w.offset as usize;
                (&out[from..from + w.len as usize], w.len as usize)
            });
        let bytes = delta::decode_in_window(
            enc.encoding,
            &enc.payload,
            window,
            c.len as usize,
            &Limits::DEFAULT,
        )?;
        if Digest::of(&bytes) != c.hash {
            bail!("{tool}: the chunk at {offset} does not verify");
        }
        out.extend_from_slice(&bytes);
    }
    if out != new {
        bail!("{tool} did not reproduce the file");
    }
    Ok(Row {
        tool,
        bytes: encoded.iter().map(|e| e.payload.len() as u64).sum::<u64>() + overhead,
        encode,
        encode_cpu,
        apply: start.elapsed(),
    })
}

/// `f(0..n)` on two threads (the coordinator's encode workers on this machine), in order.
fn on_two_workers(n: usize, f: impl Fn(usize) -> Result<Encoded> + Sync) -> Result<Vec<Encoded>> {
    const WORKERS: usize = 2;
    let f = &f;
    let mut done: Vec<(usize, Encoded)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|k| {
                scope.spawn(move || {
                    (k..n)
                        .step_by(WORKERS)
                        .map(|i| f(i).map(|e| (i, e)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n);
        for handle in handles {
            let part = handle
                .join()
                .map_err(|_| anyhow::anyhow!("an encode worker panicked"))??;
            all.extend(part);
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    done.sort_by_key(|(i, _)| *i);
    if done.len() != n {
        bail!("{} of {n} chunks encoded", done.len());
    }
    Ok(done.into_iter().map(|(_, e)| e).collect())
}
