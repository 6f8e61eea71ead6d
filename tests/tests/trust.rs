//! The offline root ceremony with the real `ferryctl`: keys generated, root 1 drafted and
//! signed by two of three root key holders, root 2 drafted from it; the files it writes are
//! what a device's trust state accepts, and a rotation signed by the new keys alone is not.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use ferry_shared::trust::TrustState;
use ferry_tests::Binaries;

fn ctl(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(&Binaries::get()?.ctl)
        .current_dir(dir)
        .args(args)
        .output()
        .context("cannot run ferryctl")?;
    ensure!(
        out.status.success(),
        "ferryctl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn an_offline_root_ceremony_produces_roots_a_device_accepts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for k in ["r1", "r2", "r3", "n1", "n2", "pub", "snap"] {
        ctl(d, &["keys", "generate", "--out", &format!("{k}.key")])?;
    }
    let roles = |keys: [&'static str; 3], out: &'static str| {
        let mut args: Vec<String> = Vec::new();
        for k in keys {
            args.extend(["--root-key".into(), format!("{k}.key.pub")]);
        }
        args.extend(
            [
                "--root-threshold",
                "2",
                "--publisher",
                "pub.key.pub",
                "--snapshot-key",
                "snap.key.pub",
                "--out",
                out,
            ]
            .map(String::from),
        );
        args
    };
    let mut init = vec!["keys".to_owned(), "root".into(), "init".into()];
    init.extend(roles(["r1", "r2", "r3"], "root-1.tuf"));
    ctl(d, &init.iter().map(String::as_str).collect::<Vec<_>>())?;
    let shown = ctl(d, &["keys", "root", "show", "root-1.tuf"])?;
    ensure!(shown.contains("not yet valid"), "{shown}");
    ensure!(TrustState::from_initial_root(&std::fs::read(d.join("root-1.tuf"))?).is_err());
    for holder in ["r1.key", "r3.key"] {
        ctl(d, &["keys", "root", "sign", "root-1.tuf", "--key", holder])?;
    }
    let mut state = TrustState::from_initial_root(&std::fs::read(d.join("root-1.tuf"))?)
        .context("root 1 refused")?;

    // Rotation to new root keys n1, n2, r3: the new keys alone are not enough.
    let mut next = vec![
        "keys".to_owned(),
        "root".into(),
        "next".into(),
        "root-1.tuf".into(),
    ];
    next.extend(roles(["n1", "n2", "r3"], "root-2.tuf"));
    ctl(d, &next.iter().map(String::as_str).collect::<Vec<_>>())?;
    for holder in ["n1.key", "n2.key"] {
        ctl(d, &["keys", "root", "sign", "root-2.tuf", "--key", holder])?;
    }
    ensure!(
        state
            .update_root(&std::fs::read(d.join("root-2.tuf"))?)
            .is_err()
    );
    ctl(
        d,
        &["keys", "root", "sign", "root-2.tuf", "--key", "r1.key"],
    )?;
    ctl(
        d,
        &["keys", "root", "sign", "root-2.tuf", "--key", "r2.key"],
    )?;
    state.update_root(&std::fs::read(d.join("root-2.tuf"))?)?;
    ensure!(state.root().version == 2);
    Ok(())
}

#[test]
fn the_coordinator_serves_a_root_chain_only_as_a_device_would_accept_it() -> Result<()> {
    let fleet = ferry_tests::Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    let d = fleet.dir.as_path();
    let trust: ferry_coordinator::api::TrustView = c.ctl_json(&["keys", "root", "status"])?;
    for k in ["r1", "r2", "other-snap"] {
        ctl(d, &["keys", "generate", "--out", &format!("{k}.key")])?;
    }
    let draft = |version_args: &[&str], snapshot: &str, out: &str| -> Result<()> {
        let mut args = vec!["keys", "root"];
        args.extend_from_slice(version_args);
        args.extend([
            "--root-key",
            "r1.key.pub",
            "--root-key",
            "r2.key.pub",
            "--root-threshold",
            "2",
            "--publisher",
            "publisher.key.pub",
            "--snapshot-key",
            snapshot,
            "--out",
            out,
        ]);
        ctl(d, &args)?;
        for holder in ["r1.key", "r2.key"] {
            ctl(d, &["keys", "root", "sign", out, "--key", holder])?;
        }
        Ok(())
    };
    // A root naming another snapshot key is refused: this coordinator could not sign under it.
    draft(&["init"], "other-snap.key.pub", "wrong.tuf")?;
    let (err, _) = c.ctl_failing(&[
        "keys",
        "root",
        "push",
        &d.join("wrong.tuf").to_string_lossy(),
    ])?;
    ensure!(err.contains("snapshot key"), "{err}");
    // Root 1 and root 2 with this coordinator's key are accepted, in order.
    draft(&["init"], &trust.snapshot_key, "root-1.tuf")?;
    c.ctl(&[
        "keys",
        "root",
        "push",
        &d.join("root-1.tuf").to_string_lossy(),
    ])?;
    draft(&["next", "root-1.tuf"], &trust.snapshot_key, "root-2.tuf")?;
    c.ctl(&[
        "keys",
        "root",
        "push",
        &d.join("root-2.tuf").to_string_lossy(),
    ])?;
    // Root 1 again is a rollback.
    let (err, _) = c.ctl_failing(&[
        "keys",
        "root",
        "push",
        &d.join("root-1.tuf").to_string_lossy(),
    ])?;
    ensure!(err.contains("rollback"), "{err}");
    let trust: ferry_coordinator::api::TrustView = c.ctl_json(&["keys", "root", "status"])?;
    let versions: Vec<u64> = trust.roots.iter().map(|r| r.version).collect();
    ensure!(versions == [1, 2], "{versions:?}");
    let audit = c.get("/api/v1/audit", "admin")?.body;
    ensure!(audit.contains("trust.root"), "root pushes are audited");

    // The snapshot it signs verifies under the chain, lists what is published, and its
    // version grows when releases change.
    let mut state = TrustState::from_initial_root(&std::fs::read(d.join("root-1.tuf"))?)?;
    state.update_root(&std::fs::read(d.join("root-2.tuf"))?)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let first = c.get("/api/v1/trust/snapshot?model=detector", "viewer")?;
    ensure!(first.status == 200, "{}", first.body);
    let empty = state.update_snapshot(&first.raw, now)?;
    ensure!(
        empty
            .releases
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            == ["detector"]
            && empty.releases.values().all(|v| v.is_empty()),
        "a snapshot lists its own model only: {:?}",
        empty.releases
    );
    fleet.publish("1.0.0", &ferry_tests::model_bytes(1, 64 * 1024, true))?;
    let second = state.update_snapshot(
        &c.get("/api/v1/trust/snapshot?model=detector", "viewer")?
            .raw,
        now,
    )?;
    ensure!(second.version > empty.version, "the version grew");
    let releases: Vec<ferry_coordinator::api::ReleaseView> = c.ctl_json(&["releases", "list"])?;
    ensure!(!releases.is_empty());
    let shown = c.get("/api/v1/releases/detector/1.0.0", "viewer")?;
    ensure!(shown.status == 200);
    let model: ferry_shared::ModelName = ferry_tests::MODEL.parse()?;
    ensure!(second.releases[&model].contains_key(&"1.0.0".parse()?));
    // An old snapshot is a rollback now.
    ensure!(state.update_snapshot(&first.raw, now).is_err());
    Ok(())
}

#[test]
fn a_device_trusting_root_metadata_refuses_a_release_from_a_publisher_the_root_does_not_name()
-> Result<()> {
    let mut fleet = ferry_tests::Fleet::start(0, None)?;
    let d = fleet.dir.clone();
    let trust: ferry_coordinator::api::TrustView =
        fleet.coordinator.ctl_json(&["keys", "root", "status"])?;
    for k in ["r1", "r2", "rogue"] {
        ctl(&d, &["keys", "generate", "--out", &format!("{k}.key")])?;
    }
    let sign_root = |fleet: &ferry_tests::Fleet, args: &[&str], out: &str| -> Result<()> {
        let mut all = vec!["keys", "root"];
        all.extend_from_slice(args);
        all.extend([
            "--root-key",
            "r1.key.pub",
            "--root-key",
            "r2.key.pub",
            "--root-threshold",
            "2",
            "--snapshot-key",
            &trust.snapshot_key,
            "--out",
            out,
        ]);
        ctl(&d, &all)?;
        for holder in ["r1.key", "r2.key"] {
            ctl(&d, &["keys", "root", "sign", out, "--key", holder])?;
        }
        fleet
            .coordinator
            .ctl(&["keys", "root", "push", &d.join(out).to_string_lossy()])?;
        Ok(())
    };
    // A rogue publisher the coordinator trusts before any root exists publishes 2.0.0.
    fleet.coordinator.ctl(&[
        "keys",
        "trust",
        &d.join("rogue.key.pub").to_string_lossy(),
        "--name",
        "rogue",
    ])?;
    let publish_as_rogue = |fleet: &ferry_tests::Fleet, version: &str| -> Result<(String, bool)> {
        let file = d.join(format!("{version}.bin"));
        std::fs::write(&file, ferry_tests::model_bytes(7, 64 * 1024, true))?;
        let key = d.join("rogue.key");
        let out = fleet.coordinator.ctl_output_as(
            &fleet.coordinator.token("admin")?,
            &[
                "publish",
                ferry_tests::MODEL,
                version,
                &file.to_string_lossy(),
                "--key",
                &key.to_string_lossy(),
            ],
        )?;
        Ok((
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.success(),
        ))
    };
    ensure!(
        publish_as_rogue(&fleet, "2.0.0")?.1,
        "published before the root"
    );
    // Root 1 names only the fleet's publisher key.
    sign_root(
        &fleet,
        &["init", "--publisher", "publisher.key.pub"],
        "root-1.tuf",
    )?;
    let agent = fleet.add_agent(ferry_tests::AgentSpec {
        root_file: Some(d.join("root-1.tuf")),
        ..ferry_tests::AgentSpec::named("tuf")
    })?;
    fleet.publish("1.0.0", &ferry_tests::model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", std::time::Duration::from_secs(60))?;
    // Under root 1 the coordinator itself refuses the rogue publisher.
    let (err, ok) = publish_as_rogue(&fleet, "2.0.2")?;
    ensure!(!ok && err.contains("0 valid signature"), "{err}");

    fleet.set_prod("2.0.0", "rogue")?;
    let a = &fleet.agents[agent];
    ferry_tests::wait_until(
        "the device to refuse 2.0.0",
        std::time::Duration::from_secs(60),
        || {
            Ok(a.status()?.models[0]
                .last_error
                .as_ref()
                .is_some_and(|e| e.version.to_string() == "2.0.0"))
        },
    )?;
    let error = a.status()?.models[0].last_error.clone().context("error")?;
    ensure!(
        error.message.contains("release manifest"),
        "{}",
        error.message
    );
    ensure!(
        a.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"),
        "stayed on 1.0.0"
    );

    // Root 2 names the new publisher: the device walks to it and takes its next release.
    sign_root(
        &fleet,
        &[
            "next",
            "root-1.tuf",
            "--publisher",
            "publisher.key.pub",
            "--publisher",
            "rogue.key.pub",
        ],
        "root-2.tuf",
    )?;
    ensure!(
        publish_as_rogue(&fleet, "2.0.1")?.1,
        "root 2 names the rogue publisher"
    );
    fleet.set_prod("2.0.1", "publisher added by root 2")?;
    fleet.wait_all_on("2.0.1", std::time::Duration::from_secs(60))?;
    let saved: TrustState = ferry_agent::stored::decode(
        &std::fs::read(a.state_dir.join("trust.json"))?,
        ferry_agent::stored::TRUST_FORMAT,
    )?;
    ensure!(saved.root().version == 2, "the device saved root 2");
    Ok(())
}

#[test]
fn a_withdrawn_release_is_kept_from_devices_until_it_is_signed_again() -> Result<()> {
    let mut fleet = ferry_tests::Fleet::start(0, None)?;
    fleet.add_agent(ferry_tests::AgentSpec::named("device"))?;
    let c = &fleet.coordinator;
    let key = fleet.key.to_string_lossy().into_owned();
    fleet.publish("1.0.0", &ferry_tests::model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", std::time::Duration::from_secs(60))?;
    fleet.publish("2.0.0", &ferry_tests::model_bytes(2, 64 * 1024, true))?;
    let shown: ferry_coordinator::api::ReleaseView =
        c.ctl_json(&["releases", "show", ferry_tests::MODEL, "2.0.0"])?;
    ensure!(shown.release.revision == 1);

    // Withdrawn: revision 2 expires now. Neither an alias nor a rollout may point at it.
    let out = fleet.resign("2.0.0", 0)?;
    ensure!(out.contains("revision 2"), "{out}");
    let (err, _) = c.ctl_failing(&["alias", "set", ferry_tests::MODEL, "prod", "2.0.0"])?;
    ensure!(err.contains("expired") && err.contains("resign"), "{err}");
    let (err, _) = c.ctl_failing(&["rollout", "create", ferry_tests::MODEL, "2.0.0"])?;
    ensure!(err.contains("expired"), "{err}");
    let text = c.ctl(&["releases", "show", ferry_tests::MODEL, "2.0.0"])?;
    ensure!(text.contains("revision 2, expired"), "{text}");
    // An older signing sent again changes nothing.
    let published = c.ctl(&[
        "publish",
        ferry_tests::MODEL,
        "2.0.0",
        &fleet
            .dir
            .join("artifacts/detector-2.0.0.bin")
            .to_string_lossy(),
        "--key",
        &key,
        "--file-name",
        "model.bin",
    ])?;
    ensure!(published.contains("already published"), "{published}");
    let shown: ferry_coordinator::api::ReleaseView =
        c.ctl_json(&["releases", "show", ferry_tests::MODEL, "2.0.0"])?;
    ensure!(
        shown.release.revision == 2,
        "revision {}",
        shown.release.revision
    );

    // Signed again for 30 days: it may ship, and the device installs revision 3.
    let out = fleet.resign("2.0.0", 30)?;
    ensure!(out.contains("revision 3"), "{out}");
    fleet.set_prod("2.0.0", "extended")?;
    fleet.wait_all_on("2.0.0", std::time::Duration::from_secs(60))?;
    let audit = c.get("/api/v1/audit", "admin")?.body;
    ensure!(
        audit.matches("\"resign\"").count() == 2,
        "both re-signings are audited: {audit}"
    );
    Ok(())
}

#[test]
fn a_root_requiring_two_publishers_gets_releases_signed_by_two() -> Result<()> {
    let mut fleet = ferry_tests::Fleet::start(0, None)?;
    let d = fleet.dir.clone();
    let trust: ferry_coordinator::api::TrustView =
        fleet.coordinator.ctl_json(&["keys", "root", "status"])?;
    for k in ["r1", "r2", "second"] {
        ctl(&d, &["keys", "generate", "--out", &format!("{k}.key")])?;
    }
    ctl(
        &d,
        &[
            "keys",
            "root",
            "init",
            "--root-key",
            "r1.key.pub",
            "--root-key",
            "r2.key.pub",
            "--root-threshold",
            "2",
            "--publisher",
            "publisher.key.pub",
            "--publisher",
            "second.key.pub",
            "--publisher-threshold",
            "2",
            "--snapshot-key",
            &trust.snapshot_key,
            "--out",
            "root-1.tuf",
        ],
    )?;
    for holder in ["r1.key", "r2.key"] {
        ctl(&d, &["keys", "root", "sign", "root-1.tuf", "--key", holder])?;
    }
    let root = d.join("root-1.tuf");
    fleet
        .coordinator
        .ctl(&["keys", "root", "push", &root.to_string_lossy()])?;
    fleet.add_agent(ferry_tests::AgentSpec {
        root_file: Some(root),
        ..ferry_tests::AgentSpec::named("two-person")
    })?;
    let file = d.join("model.bin");
    std::fs::write(&file, ferry_tests::model_bytes(1, 64 * 1024, true))?;
    let publish = |keys: &[&str]| {
        let mut args = vec![
            "publish".to_owned(),
            ferry_tests::MODEL.into(),
            "1.0.0".into(),
            file.to_string_lossy().into_owned(),
        ];
        for k in keys {
            args.extend(["--key".into(), d.join(k).to_string_lossy().into_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fleet
            .coordinator
            .ctl_output_as(&fleet.coordinator.token("admin")?, &args)
    };
    // One publisher is not enough: the registry refuses what every device would refuse.
    let one = publish(&["publisher.key"])?;
    let err = String::from_utf8_lossy(&one.stderr);
    ensure!(
        !one.status.success() && err.contains("1 valid signature") && err.contains("2 needed"),
        "{err}"
    );
    let two = publish(&["publisher.key", "second.key"])?;
    ensure!(
        two.status.success(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    fleet.set_prod("1.0.0", "two publishers signed")?;
    fleet.wait_all_on("1.0.0", std::time::Duration::from_secs(60))?;
    Ok(())
}
