//! Offline bundles on real processes: `ferryctl bundle create` writes a release with its
//! root chain, a snapshot and only the chunks a device on the old version lacks;
//! `ferry-agent install-bundle` applies it with no coordinator reachable, with the checks of
//! a network update (a tampered payload, a bundle for another version, an older bundle after
//! a newer one, a file that is not a bundle: refused, nothing changed, nothing held), and the
//! device reports what it did on next contact.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_shared::bundle::read_header;
use ferry_shared::wire::EventKind;
use ferry_tests::{AgentSpec, Fleet, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// Version 1.0.0 (4 MiB) and 2.0.0, the same but for 96 KiB in the middle.
fn versions() -> (Vec<u8>, Vec<u8>) {
    let old = model_bytes(1, 4 * MIB, true);
    let mut new = old.clone();
    let fresh = model_bytes(2, 96 * 1024, true);
    new[2 * MIB..2 * MIB + fresh.len()].copy_from_slice(&fresh);
    (old, new)
}

/// `ferryctl bundle create …` into `name` in the fleet's directory; its path.
fn bundle(fleet: &Fleet, name: &str, args: &[&str]) -> Result<PathBuf> {
    let out = fleet.dir.join(name);
    let mut all = vec!["bundle", "create", ferry_tests::MODEL, "2.0.0"];
    all.extend(args);
    let path = out.to_string_lossy().into_owned();
    all.extend(["--output", &path]);
    let said = fleet.coordinator.ctl(&all)?;
    ensure!(said.starts_with(&format!("wrote {path}")), "{said}");
    Ok(out)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// A fleet with a root (so the bundle's snapshot is checked), one device on 1.0.0, 2.0.0
/// published and `prod` moved to it while the device was off: the device has not seen it.
fn fleet_with_a_device_left_behind() -> Result<Fleet> {
    fleet_left_behind(&["air-gapped"])
}

/// [`fleet_with_a_device_left_behind`] with a device of each name.
fn fleet_left_behind(names: &[&str]) -> Result<Fleet> {
    let mut fleet = Fleet::start(0, None)?;
    let root = ferry_tests::scenarios::root_ceremony(&fleet)?;
    for name in names {
        fleet.add_agent(AgentSpec {
            root_file: Some(root.clone()),
            ..AgentSpec::named(name)
        })?;
    }
    let (old, new) = versions();
    fleet.publish("1.0.0", &old)?;
    fleet.set_prod("1.0.0", "base")?;
    wait_until("the devices on 1.0.0, confirmed", WAIT, || {
        Ok(fleet.agents.iter().all(|agent| {
            agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0")
                && !agent.in_probation()
        }))
    })?;
    for agent in &mut fleet.agents {
        agent.terminate()?;
    }
    fleet.publish("2.0.0", &new)?;
    fleet.set_prod("2.0.0", "next")?;
    Ok(fleet)
}

#[test]
fn an_air_gapped_device_installs_a_bundle_and_reports_it_on_next_contact() -> Result<()> {
    let mut fleet = fleet_with_a_device_left_behind()?;
    let delta = bundle(&fleet, "delta.fbundle", &["--for-version", "1.0.0"])?;
    let whole = bundle(&fleet, "whole.fbundle", &[])?;
    ensure!(
        size(&delta) * 4 < size(&whole),
        "the bundle for 1.0.0 carries what changed only: {} vs {} bytes",
        size(&delta),
        size(&whole)
    );
    // No coordinator from here on.
    fleet.coordinator.stop();
    fleet.agents[0].start()?;
    let out = fleet.agents[0].install_bundle(&delta, 120)?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && said.contains("2.0.0: installed from bundle"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agent = &fleet.agents[0];
    ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("2.0.0"));
    ensure!(agent.previous().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    let again = agent.install_bundle(&delta, 0)?;
    ensure!(String::from_utf8_lossy(&again.stdout).contains("already runs here"));

    // Back in contact: the coordinator learns what the device did.
    fleet.coordinator.restart()?;
    wait_until("the coordinator to see 2.0.0 installed", WAIT, || {
        let devices = fleet.coordinator.devices()?;
        Ok(devices.first().is_some_and(|d| {
            d.models.first().is_some_and(|m| {
                m.active.as_ref().map(ToString::to_string).as_deref() == Some("2.0.0")
            }) && d.recent_events.iter().any(|e| {
                matches!(&e.kind, EventKind::Installed { from: Some(f), to }
                        if f.to_string() == "1.0.0" && to.to_string() == "2.0.0")
            })
        }))
    })?;
    Ok(())
}

#[test]
fn a_bad_bundle_is_refused_with_a_reason_and_changes_nothing() -> Result<()> {
    let mut fleet = fleet_with_a_device_left_behind()?;
    let stale = bundle(&fleet, "stale.fbundle", &["--for-version", "1.0.0"])?;
    // 1.5.0: 2.0.0 but for 96 KiB elsewhere; a device on 1.0.0 lacks what it shares with 2.0.0.
    let (_, mut sideways) = versions();
    let other = model_bytes(7, 96 * 1024, true);
    sideways[MIB..MIB + other.len()].copy_from_slice(&other);
    fleet.publish("1.5.0", &sideways)?;
    let elsewhere = bundle(&fleet, "for-1.5.fbundle", &["--for-version", "1.5.0"])?;
    // Made after 1.5.0 was published: its snapshot is newer than the stale bundle's.
    let delta = bundle(&fleet, "delta.fbundle", &["--for-version", "1.0.0"])?;
    fleet.coordinator.stop();
    fleet.agents[0].start()?;
    let agent = &fleet.agents[0];
    let refused = |file: &Path, says: &str| -> Result<()> {
        let out = agent.install_bundle(file, 120)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && err.contains(says), "{says}: {err}");
        ensure!(
            agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"),
            "{says}: the device moved: {:?} {err}",
            agent.current()
        );
        Ok(())
    };
    // A payload altered in transit: the chunk does not verify.
    let mut bytes = std::fs::read(&delta)?;
    bytes[20] ^= 0xff;
    let tampered = fleet.dir.join("tampered.fbundle");
    std::fs::write(&tampered, &bytes)?;
    refused(&tampered, "not installed")?;
    // Made for devices on another version.
    refused(&elsewhere, "made for devices holding 1.5.0")?;
    // Once the device saw a newer snapshot, an older bundle is a replay.
    refused(&stale, "rollback")?;
    // Not a bundle at all.
    let junk = fleet.dir.join("junk.fbundle");
    std::fs::write(&junk, b"definitely not a bundle")?;
    refused(&junk, "not a Ferry bundle")?;
    // None of that held 2.0.0: the good bundle still installs.
    ensure!(agent.hold_on(&"2.0.0".parse()?).is_none());
    let out = agent.install_bundle(&delta, 120)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("2.0.0"));
    Ok(())
}

/// The id of the device labelled `name`.
fn id_of(fleet: &Fleet, name: &str) -> Result<String> {
    fleet
        .coordinator
        .devices()?
        .into_iter()
        .find(|d| d.labels.get("name").map(String::as_str) == Some(name))
        .map(|d| d.id)
        .with_context(|| format!("{name} is not enrolled"))
}

#[test]
fn a_sealed_bundle_opens_only_on_the_devices_it_is_sealed_for() -> Result<()> {
    let mut fleet = fleet_left_behind(&["mine", "other", "revoked"])?;
    let (mine, other, revoked) = (
        id_of(&fleet, "mine")?,
        id_of(&fleet, "other")?,
        id_of(&fleet, "revoked")?,
    );
    fleet.coordinator.ctl(&["devices", "revoke", &revoked])?;
    let sealed = bundle(
        &fleet,
        "sealed.fbundle",
        &["--for-version", "1.0.0", "--seal-for", &mine],
    )?;
    // The bytes leaving are in the audit trail, with whom they were sealed for.
    let audit = fleet
        .coordinator
        .get("/api/v1/audit?limit=1000", "admin")?
        .body;
    ensure!(
        audit.contains("bundle.create") && audit.contains("sealed for 1 device(s)"),
        "{audit}"
    );
    // A revoked device gets no key, named or by its cohort.
    let path = fleet
        .dir
        .join("nope.fbundle")
        .to_string_lossy()
        .into_owned();
    for how in [
        ["--seal-for", revoked.as_str()],
        ["--seal-for-cohort", "name=revoked"],
    ] {
        let (err, _) = fleet.coordinator.ctl_failing(&[
            "bundle",
            "create",
            ferry_tests::MODEL,
            "2.0.0",
            "--output",
            &path,
            how[0],
            how[1],
        ])?;
        ensure!(err.contains("revoked"), "{how:?}: {err}");
    }
    fleet.coordinator.stop();
    fleet.agents[0].start()?;
    fleet.agents[1].start()?;

    // Another device cannot open it, even when the bundle is rewritten to name it.
    let out = fleet.agents[1].install_bundle(&sealed, 120)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("sealed for 1 other device(s), not for this one"),
        "{err}"
    );
    let mut bytes = std::fs::read(&sealed)?;
    let mut header = read_header(&mut std::io::Cursor::new(&bytes))?;
    let n = bytes.len();
    let at = u64::from_le_bytes(bytes[n - 16..n - 8].try_into()?);
    header.sealed_for[0].device = ferry_shared::wire::DeviceId::parse(&other).context("an id")?;
    bytes.truncate(usize::try_from(at)?);
    bytes.extend(ferry_shared::bundle::tail(&header, at)?);
    let hostile = fleet.dir.join("renamed.fbundle");
    std::fs::write(&hostile, &bytes)?;
    let out = fleet.agents[1].install_bundle(&hostile, 120)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("does not open"),
        "{err}"
    );
    ensure!(fleet.agents[1].current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));

    // The device it is sealed for installs it, and what it runs is the published release.
    let out = fleet.agents[0].install_bundle(&sealed, 120)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(fleet.agents[0].current_bytes("model.bin")? == versions().1);
    Ok(())
}

/// A bundle holds the model's bytes: a read-only token must not be able to take them.
#[test]
fn a_viewer_token_cannot_take_a_models_bytes_in_a_bundle() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    let out = fleet.dir.join("b.fbundle").to_string_lossy().into_owned();
    let args = [
        "bundle",
        "create",
        ferry_tests::MODEL,
        "1.0.0",
        "--output",
        &out,
    ];
    let viewer = fleet.coordinator.token("viewer")?;
    let refused = fleet.coordinator.ctl_output_as(&viewer, &args)?;
    let err = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && err.contains("may not"),
        "a viewer took a bundle: {err}"
    );
    ensure!(!Path::new(&out).exists());
    fleet.coordinator.ctl(&args)?;
    ensure!(size(Path::new(&out)) > 64 * 1024 / 2);
    Ok(())
}
