//! End to end, on real parts: the real coordinator, agent and ferryctl binaries, QUIC and HTTP
//! on loopback, redb files and artifacts in temporary directories, ed25519 keys.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_shared::wire::{ErrorKind, EventKind};
use ferry_tests::{AgentSpec, Fleet, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
const KIB: usize = 1024;

fn errors_of_kind(fleet: &Fleet, kind: ErrorKind, version: &str) -> Result<usize> {
    let status = fleet.coordinator.fleet_status()?;
    Ok(status
        .models
        .iter()
        .flat_map(|m| &m.errors)
        .filter(|e| e.error.kind == kind && e.error.version.to_string() == version)
        .count())
}

#[test]
fn a_fleet_installs_v1_then_v2_and_rolls_back_a_release_that_fails_its_health_check() -> Result<()>
{
    let fleet = Fleet::start(3, None)?;
    let v1 = model_bytes(1, 256 * KIB, true);
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "first release")?;
    fleet.wait_all_on("1.0.0", T)?;
    for agent in &fleet.agents {
        assert_eq!(
            agent.current_bytes("model.bin")?,
            v1,
            "{} has the exact bytes",
            agent.name
        );
    }

    let v2 = model_bytes(2, 300 * KIB, true);
    fleet.publish("2.0.0", &v2)?;
    fleet.set_prod("2.0.0", "retrained")?;
    fleet.wait_all_on("2.0.0", T)?;
    for agent in &fleet.agents {
        assert_eq!(agent.current_bytes("model.bin")?, v2);
        assert_eq!(
            agent.previous().map(|v| v.to_string()).as_deref(),
            Some("1.0.0"),
            "{}",
            agent.name
        );
        assert_eq!(
            agent.installed()?,
            vec!["1.0.0", "2.0.0"],
            "exactly current and previous"
        );
    }

    let v3 = model_bytes(3, 300 * KIB, false);
    fleet.publish("3.0.0", &v3)?;
    fleet.set_prod("3.0.0", "this one is broken")?;
    wait_until("three health-check failures in fleet status", T, || {
        Ok(errors_of_kind(&fleet, ErrorKind::HealthCheck, "3.0.0")? == 3)
    })
    .with_context(|| fleet.describe())?;
    for agent in &fleet.agents {
        assert_eq!(
            agent.current().map(|v| v.to_string()).as_deref(),
            Some("2.0.0"),
            "{} rolled back",
            agent.name
        );
        assert_eq!(
            agent.previous().map(|v| v.to_string()).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(
            agent.installed()?,
            vec!["1.0.0", "2.0.0"],
            "the failed version is gone"
        );
        assert_eq!(agent.current_bytes("model.bin")?, v2);
        let status = agent.status()?;
        let holds: Vec<String> = status.models[0]
            .holds
            .iter()
            .map(|h| h.version.to_string())
            .collect();
        assert_eq!(holds, vec!["3.0.0"]);
    }
    let table = fleet.coordinator.ctl(&["fleet", "status"])?;
    assert!(
        table.contains("health-check 3.0.0") && table.contains("bad header"),
        "{table}"
    );
    let devices = fleet.coordinator.devices()?;
    assert!(devices.iter().all(|d| {
        d.recent_events
            .iter()
            .any(|e| matches!(e.kind, EventKind::HealthRollback { .. }))
    }));
    Ok(())
}

/// Checks that `detector VERSION` is published with `bytes` as its artifact.
fn assert_published_as(fleet: &Fleet, version: &str, bytes: &[u8]) -> Result<()> {
    let stored: ferry_coordinator::api::ReleaseView = fleet
        .coordinator
        .ctl_json(&["releases", "show", "detector", version])?;
    assert_eq!(
        stored.release.variants[0].hash,
        ferry_shared::Digest::of(bytes)
    );
    Ok(())
}

#[test]
fn republishing_a_version_with_other_bytes_is_refused_and_the_same_bytes_are_idempotent()
-> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let bytes = model_bytes(10, 64 * KIB, true);
    fleet.publish("1.0.0", &bytes)?;
    let again = fleet.publish("1.0.0", &bytes)?;
    assert!(
        again.contains("already published with identical content"),
        "{again}"
    );

    let other = fleet.dir.join("other.bin");
    std::fs::write(&other, model_bytes(11, 64 * KIB, true))?;
    let (stderr, code) = fleet.coordinator.ctl_failing(&[
        "publish",
        "detector",
        "1.0.0",
        &other.to_string_lossy(),
        "--key",
        &fleet.key.to_string_lossy(),
        "--file-name",
        "model.bin",
    ])?;
    assert_eq!(code, Some(6), "a conflict exits 6");
    assert!(
        stderr.contains("detector 1.0.0") && stderr.contains("immutable"),
        "{stderr}"
    );
    assert_published_as(&fleet, "1.0.0", &bytes)?;
    Ok(())
}

/// An upload cut part-way (the link drops) is continued where the coordinator's copy ends,
/// not sent again from the start, and publishes the same release.
#[test]
fn a_publish_cut_mid_upload_continues_where_it_stopped() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let bytes = model_bytes(12, 24 * MIB, true);
    let url = &fleet.coordinator.admin_url;
    let (scheme, rest) = url.split_once("://").context("an admin URL")?;
    let target: std::net::SocketAddr = rest.trim_end_matches('/').parse()?;
    let relay = ferry_tests::tcp_cut::CutRelay::start(target, 9 * MIB as u64)?;
    let printed = fleet.publish_through(&format!("{scheme}://{}", relay.addr), "1.0.0", &bytes)?;
    let carried = relay.cut().context("the upload was not cut")?;

    // ferryctl continued at what the coordinator held: some of the bytes the cut connection
    // carried (the rest were in flight), none it did not.
    let at: u64 = printed
        .split("continuing the upload of ")
        .nth(1)
        .and_then(|rest| rest.split(" at byte ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .context(format!("no continuation: {printed}"))?
        .parse()?;
    assert!(
        at > 0 && at < carried,
        "continued at {at}, {carried} carried: {printed}"
    );
    assert!(printed.contains("published detector 1.0.0"), "{printed}");
    assert_published_as(&fleet, "1.0.0", &bytes)?;
    // Nothing of the upload is left over.
    let hash = ferry_shared::Digest::of(&bytes);
    let left = fleet
        .coordinator
        .data_dir
        .join("chunks/uploads")
        .join(format!("{}.part", hash.to_hex()));
    assert!(!left.exists(), "{}", left.display());
    Ok(())
}

#[test]
fn local_rollback_works_with_the_coordinator_stopped_and_is_reported_later() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 128 * KIB, true))?;
    fleet.publish("2.0.0", &model_bytes(2, 128 * KIB, true))?;
    fleet.set_prod("1.0.0", "start")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.set_prod("2.0.0", "upgrade")?;
    fleet.wait_all_on("2.0.0", T)?;
    wait_until("the install of 2.0.0 reported and acknowledged", T, || {
        let reported = fleet.coordinator.devices()?.iter().any(|d| {
            d.recent_events.iter().any(
                |e| matches!(&e.kind, EventKind::Installed { to, .. } if to.to_string() == "2.0.0"),
            )
        });
        Ok(reported && fleet.agents[0].status()?.pending_events == 0)
    })?;

    fleet.coordinator.stop();
    let out = fleet.agents[0].rollback()?;
    assert!(out.contains("2.0.0 -> 1.0.0"), "{out}");
    let agent = &fleet.agents[0];
    assert_eq!(
        agent.current().map(|v| v.to_string()).as_deref(),
        Some("1.0.0")
    );
    assert_eq!(
        agent.previous().map(|v| v.to_string()).as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        agent.status()?.pending_events,
        1,
        "the rollback waits to be reported"
    );

    fleet.coordinator.restart()?;
    wait_until("the local rollback reported", T, || {
        let devices = fleet.coordinator.devices()?;
        Ok(devices.iter().any(|d| {
            d.models
                .iter()
                .any(|m| m.active.as_ref().map(ToString::to_string).as_deref() == Some("1.0.0"))
                && d.recent_events
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::LocalRollback { .. }))
        }))
    })
    .with_context(|| fleet.describe())?;
    wait_until("the event acknowledged", T, || {
        Ok(fleet.agents[0].status()?.pending_events == 0)
    })?;
    // prod still names 2.0.0, but the device keeps the operator's decision.
    let agent = &fleet.agents[0];
    assert_eq!(
        agent.current().map(|v| v.to_string()).as_deref(),
        Some("1.0.0")
    );
    Ok(())
}

#[test]
fn a_chunk_corrupted_on_the_coordinators_disk_fails_the_update_cleanly() -> Result<()> {
    let mut fleet = Fleet::start(2, None)?;
    let v1 = model_bytes(1, 128 * KIB, true);
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "start")?;
    fleet.wait_all_on("1.0.0", T)?;

    // Damage one chunk of v2 so that it still decodes, to other bytes: only the hash check
    // can tell. Asked for as a delta, then whole, it fails both times.
    let v2 = model_bytes(2, 512 * KIB, true);
    fleet.publish("2.0.0", &v2)?;
    // Publishing moved `latest`, which may have cached a delta of the chunk already: start
    // from an empty delta cache, so the damaged chunk itself must be read.
    fleet.coordinator.stop();
    std::fs::remove_dir_all(fleet.coordinator.data_dir.join("deltas"))?;
    let first = ferry_tests::chunks_of(&v2).chunks[0];
    let mut other = v2[..first.len as usize].to_vec();
    other[100] ^= 1;
    std::fs::write(
        fleet.chunk_file(&first.hash),
        zstd::encode_all(other.as_slice(), 3)?,
    )?;
    fleet.coordinator.restart()?;

    fleet.set_prod("2.0.0", "with a corrupted chunk")?;
    wait_until("both agents report an integrity error", T, || {
        Ok(errors_of_kind(&fleet, ErrorKind::Integrity, "2.0.0")? == 2)
    })
    .with_context(|| fleet.describe())?;
    for agent in &fleet.agents {
        assert_eq!(
            agent.current().map(|v| v.to_string()).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(agent.current_bytes("model.bin")?, v1);
        assert_eq!(
            agent.installed()?,
            vec!["1.0.0"],
            "nothing unverified was installed"
        );
        assert!(agent.staging()?.is_empty(), "no partial download left");
    }
    Ok(())
}

#[test]
fn a_wrong_certificate_fingerprint_and_a_wrong_enrollment_token_are_refused() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 32 * KIB, true))?;
    fleet.set_prod("1.0.0", "start")?;
    let mut imposter_pin = AgentSpec::named("wrong-pin");
    imposter_pin.fingerprint = Some(format!("sha256:{}", "ab".repeat(32)));
    let mut bad_token = AgentSpec::named("wrong-token");
    bad_token.token = Some("0".repeat(64));
    fleet.add_agent(imposter_pin)?;
    fleet.add_agent(bad_token)?;

    let error_of = |i: usize| -> Result<String> {
        Ok(fleet.agents[i]
            .status()?
            .connection
            .last_error
            .unwrap_or_default())
    };
    wait_until("the pin mismatch reported", T, || {
        Ok(error_of(0)?.contains("fingerprint"))
    })?;
    wait_until("the enrollment refusal reported", T, || {
        Ok(error_of(1)?.contains("enroll"))
    })?;
    assert!(
        error_of(0)?.contains(&fleet.coordinator.fingerprint),
        "names what was presented"
    );
    assert!(
        fleet.coordinator.devices()?.is_empty(),
        "neither device got in"
    );
    for agent in &fleet.agents {
        assert_eq!(agent.current(), None, "{} installed nothing", agent.name);
    }
    Ok(())
}

#[test]
fn an_agent_killed_in_the_middle_of_an_install_comes_back_on_its_old_version() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    let v1 = model_bytes(1, 64 * KIB, true);
    fleet.publish("1.0.0", &v1)?;
    fleet.set_prod("1.0.0", "start")?;
    fleet.wait_all_on("1.0.0", T)?;

    // The health check blocks, so the install cannot complete before the kill lands: it lands
    // while downloading, while staging, or at the latest while the switch awaits confirmation.
    let reached = fleet.block_health(0, true)?;
    fleet.publish("2.0.0", &model_bytes(2, 24 * 1024 * KIB, true))?;
    fleet.set_prod("2.0.0", "big update")?;
    let staging = fleet.agents[0].state_dir.join("staging").join("detector");
    wait_until("the install under way", T, || {
        Ok(reached.exists() || std::fs::read_dir(&staging).is_ok_and(|mut d| d.next().is_some()))
    })?;
    let in_probation = reached.exists();
    fleet.agents[0].kill();

    // Restart without a coordinator, so nothing can be fetched again: what is on disk now is
    // what start-up reconciliation made of the interrupted install.
    fleet.coordinator.stop();
    fleet.block_health(0, false)?;
    fleet.agents[0].start()?;
    wait_until("the restarted agent reconciled", T, || {
        Ok(fleet.agents[0].log().matches("agent started").count() >= 2)
    })?;
    let agent = &fleet.agents[0];
    assert_eq!(
        agent.current().map(|v| v.to_string()).as_deref(),
        Some("1.0.0"),
        "killed in probation: {in_probation}"
    );
    assert_eq!(agent.current_bytes("model.bin")?, v1);
    assert_eq!(agent.installed()?, vec!["1.0.0"], "no leftovers of 2.0.0");
    // A partial download may stay staged, to be resumed; it is never installed.
    assert!(
        agent.staging()?.iter().all(|v| v == "2.0.0"),
        "{:?}",
        agent.staging()?
    );
    assert!(
        !agent
            .state_dir
            .join("models/detector/switch.journal")
            .exists()
    );
    if in_probation {
        let status = agent.status()?;
        let error = status.models[0]
            .last_error
            .as_ref()
            .context("the interruption is recorded")?;
        assert!(
            error.message.contains("before the health check confirmed"),
            "{}",
            error.message
        );
    }

    // With the coordinator back, the update completes.
    fleet.coordinator.restart()?;
    fleet.wait_all_on("2.0.0", T)?;
    if fleet.agents[0].installed()? != vec!["1.0.0", "2.0.0"] {
        bail!(
            "unexpected versions on disk: {:?}",
            fleet.agents[0].installed()?
        );
    }
    Ok(())
}
