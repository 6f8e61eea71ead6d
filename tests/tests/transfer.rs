//! Chunked, delta-compressed, resumable transfer, end to end on real processes: only changed
//! chunks travel, model weights travel as tensor deltas, cut downloads resume, bad deltas
//! are caught and fetched whole, and a device with nothing on disk still installs.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::store::deltas::{CachedDelta, DeltaCache, read_entry, write_entry};
use ferry_shared::Digest;
use ferry_shared::delta::Encoding;
use ferry_shared::delta::window::WINDOW;
use ferry_shared::plan::plan;
use ferry_tests::{Agent, AgentSpec, Fleet, chunks_of, model_bytes, nudged, wait_until, weights};

const T: Duration = Duration::from_secs(120);
const MIB: usize = 1024 * 1024;

/// Distinct chunks of `new` a device holding `old` lacks, and their bytes.
fn missing(old: &[u8], new: &[u8]) -> (usize, u64) {
    let have: HashSet<Digest> = chunks_of(old).chunks.iter().map(|c| c.hash).collect();
    let missing = chunks_of(new).missing_from(&have);
    (missing.chunks, missing.bytes)
}

fn is_delta(encoding: &str) -> bool {
    encoding != "zstd" && encoding != "raw"
}

#[test]
fn an_update_fetches_only_changed_chunks_and_a_new_device_fetches_them_all() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    let v1 = model_bytes(1, 12 * MIB, true);
    let mut v2 = v1.clone();
    for b in &mut v2[3 * MIB..3 * MIB + 2000] {
        *b = b.wrapping_add(3) % 16;
    }
    v2.splice(9 * MIB..9 * MIB, model_bytes(7, 5000, false));
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "start")?;
    fleet.wait_all_on("1.0.0", T)?;
    // As a version installed before chunk indexes were kept would be: the agent cuts the file
    // again, keeps the index, and plans with it all the same.
    let v1_index = fleet.agents[0]
        .state_dir
        .join("versions/detector/1.0.0/chunks.idx");
    std::fs::remove_file(&v1_index)?;
    fleet.publish("2.0.0", &v2)?;
    fleet.set_prod("2.0.0", "two small edits")?;
    fleet.wait_all_on("2.0.0", T)?;
    assert_eq!(
        std::fs::read(&v1_index)?,
        chunks_of(&v1).to_canonical_bytes(),
        "the recomputed index is kept"
    );

    let agent = &fleet.agents[0];
    assert_eq!(
        agent.current_bytes("model.bin")?,
        v2,
        "installed bytes are v2"
    );
    let t = agent.transfer_for("2.0.0")?;
    let (missing_chunks, missing_bytes) = missing(&v1, &v2);
    assert!((1..=6).contains(&missing_chunks), "{missing_chunks}");
    assert_eq!(t.chunks_fetched as usize, missing_chunks, "{t:?}");
    assert_eq!(t.chunks_total as usize, chunks_of(&v2).chunks.len());
    assert_eq!(
        t.bytes_reused_locally + missing_bytes,
        v2.len() as u64,
        "{t:?}"
    );
    assert!(
        t.bytes_on_wire < missing_bytes / 20,
        "deltas of small edits are small: {t:?}"
    );
    assert!(t.encodings.keys().any(|e| is_delta(e)), "{t:?}");
    assert!(
        t.resumed == 0 && t.chunks_refetched == 0 && t.attempts == 1,
        "{t:?}"
    );
    let served = fleet.coordinator.fleet_status()?;
    assert!(served.deltas_served >= 1, "{served:?}");
    assert!(served.bytes_served > 0 && served.chunks_served >= missing_chunks as u64);

    // A device with no version on disk has nothing to copy or diff against a version it
    // holds: every distinct chunk comes over the network, stored or against the bytes before
    // it (the first install the coordinator may have precomputed by then).
    let fresh = fleet.add_agent(AgentSpec::named("fresh"))?;
    fleet.wait_all_on("2.0.0", T)?;
    let fresh = &fleet.agents[fresh];
    assert_eq!(fresh.current_bytes("model.bin")?, v2);
    let t = fresh.transfer_for("2.0.0")?;
    let distinct: HashSet<Digest> = chunks_of(&v2).chunks.iter().map(|c| c.hash).collect();
    assert_eq!(t.chunks_fetched as usize, distinct.len(), "{t:?}");
    assert_eq!(t.bytes_reused_locally, 0);
    assert!(
        t.encodings.keys().all(|e| e == "zstd" || e == "zstd-ref"),
        "{t:?}"
    );
    Ok(())
}

/// A file whose second half repeats its first with a byte changed every 50 KB: chunks
/// compressed alone cannot see the repeat; against the bytes before them they can.
fn repeating(len: usize) -> Vec<u8> {
    let half = model_bytes(21, len / 2, true);
    let mut out = half.clone();
    let mut again = half;
    for b in again.iter_mut().step_by(50_000) {
        *b ^= 0x40;
    }
    out.extend(again);
    out
}

#[test]
fn a_new_device_gets_the_first_install_precomputed_when_the_alias_moved() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    let v1 = repeating(8 * MIB);
    fleet.publish("1.0.0", &v1)?;
    // The warmer precomputes for the devices following the alias it knows of.
    fleet.wait_enrolled(T)?;
    fleet.set_prod("1.0.0", "start")?;
    let index = chunks_of(&v1);
    let distinct: HashSet<Digest> = index.chunks.iter().map(|c| c.hash).collect();
    ensure!(distinct.len() >= 4, "{} distinct chunks", distinct.len());
    // Every distinct chunk but the first, which has no bytes before it.
    wait_until("the first install is precomputed", T, || {
        Ok(fleet
            .coordinator
            .fleet_status()?
            .first_install_chunks_encoded as usize
            >= distinct.len() - 1)
    })?;
    fleet.wait_all_on("1.0.0", T)?; // the first device raced the precompute

    let fresh = fleet.add_agent(AgentSpec::named("fresh"))?;
    fleet.wait_all_on("1.0.0", T)?;
    let fresh = &fleet.agents[fresh];
    assert_eq!(fresh.current_bytes("model.bin")?, v1);
    let t = fresh.transfer_for("1.0.0")?;
    assert_eq!(t.chunks_fetched as usize, distinct.len(), "{t:?}");
    // At least the second half's chunks went against the first half's bytes (the first
    // half's own may go either way: its bytes do not repeat).
    let against_before = t.encodings.get("zstd-ref").copied().unwrap_or(0) as usize;
    assert!(against_before >= distinct.len() / 2 - 1, "{t:?}");
    // What the stored chunks (zstd -9 each, the coordinator's default) add up to.
    let mut stored = 0u64;
    for (offset, c) in index.spans() {
        let bytes = &v1[offset as usize..offset as usize + c.len as usize];
        stored += zstd::bulk::compress(bytes, 9)?.len() as u64;
    }
    assert!(
        t.bytes_on_wire * 3 < stored * 2,
        "{} bytes on the wire, {stored} stored: {t:?}",
        t.bytes_on_wire
    );
    Ok(())
}

#[test]
fn a_fine_tuned_model_travels_as_a_tensor_delta() -> Result<()> {
    let fleet = Fleet::start(1, None)?;
    let v1 = weights(1, MIB); // 4 MiB of f32
    let v2 = nudged(&v1, 2, 0.01);
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("1.1.0", &v2)?;
    fleet.set_prod("1.1.0", "fine-tuned")?;
    fleet.wait_all_on("1.1.0", T)?;

    let agent = &fleet.agents[0];
    assert_eq!(agent.current_bytes("model.bin")?, v2);
    let t = agent.transfer_for("1.1.0")?;
    // The coordinator read the safetensors layout at publish and paired each tensor with its
    // twin in the version the device holds.
    assert!(t.encodings.contains_key("tensors"), "{t:?}");
    // Every weight moved by up to 1 %: about half of each float's bits are new information,
    // which no lossless delta avoids; plain compression finds almost nothing to remove.
    let plain = zstd::encode_all(v2.as_slice(), 3)?.len() as u64;
    assert!(
        t.bytes_on_wire * 5 < plain * 4,
        "numeric delta {} vs plain zstd {plain}",
        t.bytes_on_wire
    );
    Ok(())
}

/// Chunks of `v2` already in place in the agent's staging file.
fn staged_chunks(agent: &Agent, v2: &[u8]) -> usize {
    let path = agent.state_dir.join("staging/detector/2.0.0/model.bin");
    let Ok(staged) = std::fs::read(path) else {
        return 0;
    };
    let index = chunks_of(v2);
    index
        .spans()
        .filter(|(offset, c)| {
            let range = *offset as usize..(*offset + u64::from(c.len)) as usize;
            staged.get(range).is_some_and(|b| Digest::of(b) == c.hash)
        })
        .count()
}

/// Starts installing `v2` (a fine-tune of `v1`, so every chunk is encoded at some cost) and
/// returns once the agent has staged some chunks of it, but not all.
fn start_a_slow_update(fleet: &Fleet, v1: &[u8], v2: &[u8]) -> Result<()> {
    fleet.publish("1.0.0", v1)?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", v2)?;
    fleet.set_prod("2.0.0", "fine-tuned")?;
    let total = chunks_of(v2).chunks.len();
    wait_until("the agent has staged a chunk of 2.0.0", T, || {
        Ok(staged_chunks(&fleet.agents[0], v2) >= 1)
    })?;
    ensure!(
        staged_chunks(&fleet.agents[0], v2) < total
            && fleet.agents[0].current().map(|v| v.to_string()).as_deref() == Some("1.0.0"),
        "the update finished before it could be cut"
    );
    Ok(())
}

#[test]
fn a_download_cut_by_a_stopped_coordinator_resumes_at_the_next_missing_chunk() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    let v1 = weights(3, 3 * MIB);
    let v2 = nudged(&v1, 4, 0.01);
    start_a_slow_update(&fleet, &v1, &v2)?;
    fleet.coordinator.stop();
    fleet.coordinator.restart()?;
    fleet.wait_all_on("2.0.0", T)?;

    let agent = &fleet.agents[0];
    assert_eq!(agent.current_bytes("model.bin")?, v2);
    let t = agent.transfer_for("2.0.0")?;
    let (missing_chunks, _) = missing(&v1, &v2);
    assert!(t.attempts >= 2 && t.resumed >= 1, "{t:?}");
    assert!(
        (t.chunks_fetched as usize) <= missing_chunks + 1,
        "at most the chunk in flight is fetched twice: {t:?}, {missing_chunks} missing"
    );
    Ok(())
}

#[test]
fn a_download_cut_by_an_agent_restart_resumes_from_the_staged_chunks() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    let v1 = weights(5, 3 * MIB);
    let v2 = nudged(&v1, 6, 0.01);
    start_a_slow_update(&fleet, &v1, &v2)?;
    fleet.agents[0].kill();
    fleet.agents[0].start()?;
    fleet.wait_all_on("2.0.0", T)?;

    let agent = &fleet.agents[0];
    assert_eq!(agent.current_bytes("model.bin")?, v2);
    let t = agent.transfer_for("2.0.0")?;
    let (missing_chunks, _) = missing(&v1, &v2);
    assert!(t.resumed >= 1, "{t:?}");
    assert!(
        (t.resumed + t.chunks_fetched) as usize <= missing_chunks + 1,
        "{t:?}, {missing_chunks} missing"
    );
    Ok(())
}

#[test]
fn corrupted_deltas_are_caught_and_the_chunks_fetched_whole() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    let v1 = weights(7, MIB);
    let v2 = nudged(&v1, 8, 0.01);
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    // What it precomputes is for the versions devices told it they hold.
    fleet.wait_reported_on("1.0.0", T)?;
    fleet.agents[0].kill();

    // The coordinator precomputes the deltas the (offline) device will ask for...
    let (i1, i2) = (chunks_of(&v1), chunks_of(&v2));
    let windowed = plan(&i2, std::slice::from_ref(&i1), WINDOW)
        .wants(&[Digest::of(&v1)])
        .into_iter()
        .filter(|w| w.reference.is_some())
        .count();
    ensure!(windowed > 0, "the plan has deltas");
    fleet.publish("1.1.0", &v2)?;
    fleet.set_prod("1.1.0", "fine-tuned")?;
    wait_until("the deltas are precomputed", T, || {
        Ok(fleet.coordinator.fleet_status()?.deltas_encoded as usize >= windowed)
    })
    .with_context(|| format!("coordinator log:\n{}", fleet.coordinator.log_tail(40)))?;
    // ...and they go bad on its disk, in a way only the device's hash check can see.
    fleet.coordinator.stop();
    let root = fleet.coordinator.data_dir.join("deltas");
    let cache = DeltaCache::new(root.clone())?;
    let paths = cache.paths()?;
    ensure!(paths.len() >= windowed, "{} cached", paths.len());
    for path in &paths {
        ensure!(read_entry(path)?.is_some(), "sound before the damage");
        let wrong = CachedDelta {
            encoding: Encoding::Zstd,
            payload: zstd::encode_all(&[0u8; 1000][..], 3)?,
        };
        write_entry(&root.join("tmp"), path, &wrong)?;
    }
    fleet.coordinator.restart()?;
    fleet.agents[0].start()?;
    fleet.wait_all_on("1.1.0", T)?;

    let agent = &fleet.agents[0];
    assert_eq!(agent.current_bytes("model.bin")?, v2);
    let t = agent.transfer_for("1.1.0")?;
    assert_eq!(t.chunks_refetched as usize, windowed, "{t:?}");
    assert_eq!(
        t.encodings.get("zstd").copied(),
        Some(windowed as u32),
        "{t:?}"
    );
    Ok(())
}
