//! Chunks from mirrors: an agent takes whole chunks from untrusted HTTP mirrors (its own, and
//! those its coordinator names) and from pre-signed addresses of the S3 bucket, while deltas
//! still come from the coordinator; a confidential model's chunks come over the session only.
//! The hostile mirrors are in `attacks.rs`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::testkit::S3Server;
use ferry_shared::Digest;
use ferry_tests::mirror::{Behaviour, HostileMirror, StaticMirror, copy_frames};
use ferry_tests::{AgentSpec, Fleet, chunks_of, nudged, weights};

const T: Duration = Duration::from_secs(120);

fn distinct_chunks(bytes: &[u8]) -> usize {
    let distinct: HashSet<Digest> = chunks_of(bytes).chunks.iter().map(|c| c.hash).collect();
    distinct.len()
}

#[test]
fn agents_take_whole_chunks_from_mirrors_and_deltas_from_the_coordinator() -> Result<()> {
    // A LAN cache (a real static web server) the coordinator tells its agents of, and a
    // mirror one device has configured itself (a counting server that answers honestly).
    let cache = tempfile::tempdir()?;
    let told = StaticMirror::start(cache.path())?;
    let config = format!("[mirrors]\nurls = [\"{}\"]\n", told.base());
    let mut fleet = Fleet::start_configured(0, None, Some(&config))?;
    let own = HostileMirror::start(cache.path(), Behaviour::LiesAfter(usize::MAX))?;
    let v1 = weights(11, 1024 * 1024);
    fleet.publish("1.0.0", &v1)?;
    copy_frames(&fleet.coordinator.data_dir.join("chunks"), cache.path())?;
    let mut with_own = AgentSpec::named("own-mirror");
    with_own.top = format!("mirrors = [\"{}\"]", own.base());
    fleet.add_agent(with_own)?;
    fleet.add_agent(AgentSpec::named("told-mirror"))?;
    fleet.set_prod("1.0.0", "first install from mirrors")?;
    fleet.wait_all_on("1.0.0", T)?;

    let chunks = distinct_chunks(&v1);
    for agent in &fleet.agents {
        ensure!(
            agent.current_bytes("model.bin")? == v1,
            "{} holds v1",
            agent.name
        );
        let t = agent.transfer_for("1.0.0")?;
        ensure!(
            t.mirrored.chunks as usize == chunks && t.mirrored.failures == 0,
            "{}: every chunk from a mirror: {t:?}",
            agent.name
        );
        ensure!(t.chunks_fetched == 0, "none from the coordinator: {t:?}");
        ensure!(
            t.bytes_on_wire < 64 * 1024,
            "the coordinator sent the chunk index only: {t:?}"
        );
    }
    ensure!(
        own.requests() >= chunks,
        "the device's own mirror came first: {} requests for {chunks} chunks",
        own.requests()
    );
    let status = fleet.coordinator.fleet_status()?;
    ensure!(status.chunks_served == 0, "{status:?}");

    // A fine-tuned version travels as deltas against what the devices hold: those come from
    // the coordinator, whatever the mirrors hold.
    let v2 = nudged(&v1, 12, 0.01);
    fleet.publish("2.0.0", &v2)?;
    copy_frames(&fleet.coordinator.data_dir.join("chunks"), cache.path())?;
    fleet.set_prod("2.0.0", "fine-tuned")?;
    fleet.wait_all_on("2.0.0", T)?;
    for agent in &fleet.agents {
        ensure!(agent.current_bytes("model.bin")? == v2);
        let t = agent.transfer_for("2.0.0")?;
        ensure!(t.chunks_fetched > 0, "deltas from the coordinator: {t:?}");
        ensure!(
            t.encodings.keys().any(|e| e != "zstd" && e != "zstd-ref"),
            "as deltas: {t:?}"
        );
    }
    ensure!(fleet.coordinator.fleet_status()?.deltas_served > 0);
    Ok(())
}

#[test]
fn agents_fetch_chunks_through_pre_signed_bucket_addresses() -> Result<()> {
    let keep = tempfile::tempdir()?;
    let chunks = S3Server::shared()
        .chunk_settings(keep.path())
        .map_err(anyhow::Error::msg)?;
    let config = format!("[store]\n{chunks}[mirrors]\npresign = true\npresign_secs = 300\n");
    let fleet = Fleet::start_configured(1, None, Some(&config))?;
    let v1 = weights(13, 512 * 1024);
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "from the bucket")?;
    fleet.wait_all_on("1.0.0", T)?;
    let agent = &fleet.agents[0];
    ensure!(agent.current_bytes("model.bin")? == v1);
    let t = agent.transfer_for("1.0.0")?;
    let chunks = distinct_chunks(&v1);
    ensure!(
        t.mirrored.chunks as usize == chunks && t.chunks_fetched == 0,
        "every chunk from the bucket: {t:?}"
    );
    let status = fleet.coordinator.fleet_status()?;
    ensure!(
        status.chunks_presigned >= chunks as u64 && status.chunks_served == 0,
        "{status:?}"
    );
    let metrics = fleet.coordinator.get("/metrics", "viewer")?.body;
    ensure!(
        metrics.contains("ferry_chunks_presigned_total"),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn a_confidential_models_chunks_are_not_handed_to_mirrors_and_its_bundles_must_be_sealed()
-> Result<()> {
    // The same LAN cache holds the frames, but the model is confidential: the coordinator
    // names no mirror for it, and every chunk comes over the device's own session.
    let cache = tempfile::tempdir()?;
    let told = StaticMirror::start(cache.path())?;
    let config = format!(
        "confidential_models = [\"{}\"]\n[mirrors]\nurls = [\"{}\"]\n",
        ferry_tests::MODEL,
        told.base()
    );
    let mut fleet = Fleet::start_configured(0, None, Some(&config))?;
    let v1 = weights(13, 1024 * 1024);
    fleet.publish("1.0.0", &v1)?;
    copy_frames(&fleet.coordinator.data_dir.join("chunks"), cache.path())?;
    fleet.add_agent(AgentSpec::named("plant"))?;
    fleet.set_prod("1.0.0", "confidential")?;
    fleet.wait_all_on("1.0.0", T)?;
    let agent = &fleet.agents[0];
    ensure!(agent.current_bytes("model.bin")? == v1);
    let t = agent.transfer_for("1.0.0")?;
    ensure!(
        t.mirrored.chunks == 0 && t.chunks_fetched as usize == distinct_chunks(&v1),
        "every chunk from the coordinator: {t:?}"
    );
    // An offline bundle of it must be sealed.
    let out = fleet
        .dir
        .join("plain.fbundle")
        .to_string_lossy()
        .into_owned();
    let bundle = [
        "bundle",
        "create",
        ferry_tests::MODEL,
        "1.0.0",
        "--output",
        &out,
    ];
    let (err, _) = fleet.coordinator.ctl_failing(&bundle)?;
    ensure!(err.contains("is confidential: seal its bundle"), "{err}");
    let mut sealed = bundle.to_vec();
    sealed.extend(["--seal-for-cohort", "name=plant"]);
    let said = fleet.coordinator.ctl(&sealed)?;
    ensure!(said.contains("sealed for 1 device(s)"), "{said}");
    Ok(())
}
