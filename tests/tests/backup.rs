//! Backups keep the data: an online backup taken while the coordinator serves, restored into
//! a fresh data directory, carries the fleet on (versions, aliases, rollouts, the audit chain);
//! a damaged backup is refused before anything is written.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::AliasView;
use ferry_shared::rollout::Phase;
use ferry_tests::{Fleet, MODEL, model_bytes, run_coordinator};

const T: Duration = Duration::from_secs(60);

/// Runs `ferry-coordinator --data-dir DATA ARGS…`; returns (success, stdout + stderr).
fn coordinator(data: &Path, args: &[&str]) -> Result<(bool, String)> {
    let data = data.to_string_lossy();
    let all: Vec<&str> = ["--data-dir", &data]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run_coordinator(&all)
}

fn anchor(fleet: &Fleet) -> Result<String> {
    let verified: serde_json::Value = fleet.coordinator.ctl_json(&["audit", "--verify"])?;
    ensure!(verified["broken"].is_null(), "{verified}");
    Ok(format!(
        "{}:{}",
        verified["head"]["seq"],
        verified["head"]["hash"].as_str().context("no head")?
    ))
}

#[test]
fn an_online_backup_restored_into_a_fresh_data_dir_carries_the_fleet_on() -> Result<()> {
    let mut fleet = Fleet::start(2, None)?;
    fleet.ship("1.0.0", &model_bytes(1, 512 * 1024, true), T)?;
    fleet.publish("1.1.0", &model_bytes(2, 512 * 1024, true))?;
    let plan = serde_json::json!({
        "id": "to-1.1", "model": MODEL, "version": "1.1.0",
        "waves": [{"percent": 100, "bake_secs": 1, "gates": [
            {"kind": "InstallFailures", "threshold": 0.5, "min_samples": 1}]}],
    });
    fleet.create_rollout(&plan)?;
    fleet.wait_rollout("to-1.1", Phase::Completed, T, |_| Ok(()))?;
    fleet.wait_all_on("1.1.0", T)?;
    let head = anchor(&fleet)?;

    // Online: the running coordinator writes it while it serves.
    let backup = fleet.dir.join("backup");
    let data = fleet.coordinator.data_dir.clone();
    // With the flags the coordinator runs with, so that it is found.
    let http = fleet.coordinator.http.to_string();
    let (ok, said) = coordinator(
        &data,
        &[
            "--http-listen",
            &http,
            "backup",
            "--to",
            &backup.to_string_lossy(),
        ],
    )?;
    ensure!(ok && said.contains("the coordinator is running"), "{said}");
    ensure!(backup.join("manifest.json").exists());
    fleet.coordinator.ctl(&["releases", "list"])?;

    // A damaged copy of it is refused, and nothing is written.
    let damaged = fleet.dir.join("damaged");
    copy_dir(&backup, &damaged)?;
    let chunk = first_chunk(&damaged.join("chunks"))?;
    let mut bytes = std::fs::read(&chunk)?;
    bytes[0] ^= 0xff;
    std::fs::write(&chunk, bytes)?;
    let refused_into = fleet.dir.join("refused");
    let (ok, said) = coordinator(
        &refused_into,
        &["restore", "--from", &damaged.to_string_lossy()],
    )?;
    ensure!(!ok && said.contains("cannot be used"), "{said}");
    ensure!(
        !refused_into.join("ferry.redb").exists(),
        "a damaged backup was restored"
    );

    // The coordinator's host is lost; the backup comes back on a fresh data directory.
    fleet.coordinator.stop();
    let fresh = fleet.dir.join("restored");
    let (ok, said) = coordinator(&fresh, &["restore", "--from", &backup.to_string_lossy()])?;
    ensure!(ok && said.contains("restored"), "{said}");
    let (ok, said) = coordinator(&fresh, &["restore", "--from", &backup.to_string_lossy()])?;
    ensure!(!ok && said.contains("already holds a database"), "{said}");
    // Tokens travel as hashes only; the operator brings the admin token they keep.
    for token in ["admin.token", "viewer.token", "enrollment.token"] {
        ensure!(!fresh.join(token).exists(), "{token} was in the backup");
        std::fs::copy(data.join(token), fresh.join(token))?;
    }
    fleet.coordinator.data_dir = fresh;
    fleet.coordinator.restart()?;

    // The same registry, the same audit chain, and the agents carry on.
    let aliases: Vec<AliasView> = fleet.coordinator.ctl_json(&["alias", "list", MODEL])?;
    ensure!(
        aliases
            .iter()
            .any(|a| a.alias == "prod" && a.version.to_string() == "1.1.0"),
        "prod after restore: {aliases:?}"
    );
    ensure!(fleet.rollout("to-1.1")?.phase == Phase::Completed);
    let verified: serde_json::Value = fleet
        .coordinator
        .ctl_json(&["audit", "--verify", "--anchor", &head])?;
    ensure!(verified["broken"].is_null(), "{verified}");
    fleet.ship("1.2.0", &model_bytes(3, 512 * 1024, true), T)?;
    ensure!(
        fleet.coordinator.devices()?.len() == 2,
        "the devices are known as before"
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn first_chunk(chunks: &Path) -> Result<std::path::PathBuf> {
    for dir in std::fs::read_dir(chunks)? {
        if let Some(file) = std::fs::read_dir(dir?.path())?.next() {
            return Ok(file?.path());
        }
    }
    anyhow::bail!("no chunk in {}", chunks.display())
}

/// The `[store]` section of a coordinator on the shared engines: a fresh PostgreSQL
/// database and S3 bucket (on the servers the tests start), the S3 credentials in `dir`.
fn shared_stores(dir: &Path) -> Result<String> {
    use ferry_coordinator::testkit::{PostgresServer, S3Server};
    Ok(format!(
        "[store]\nmetadata = \"{url}\"\n{chunks}",
        url = PostgresServer::shared().fresh_database(),
        chunks = S3Server::shared()
            .chunk_settings(dir)
            .map_err(anyhow::Error::msg)?,
    ))
}

#[test]
fn a_backup_of_shared_stores_restores_into_fresh_shared_stores_and_carries_the_fleet_on()
-> Result<()> {
    let keep = tempfile::tempdir()?;
    let mut fleet = Fleet::start_configured(1, None, Some(&shared_stores(keep.path())?))?;
    let v1 = model_bytes(4, 768 * 1024, true);
    fleet.ship("1.0.0", &v1, T)?;
    let head = anchor(&fleet)?;

    // Online, by the running node: records out of PostgreSQL, frames out of the bucket.
    let backup = fleet.dir.join("backup");
    let data = fleet.coordinator.data_dir.clone();
    let config = fleet.dir.join("coordinator.toml");
    let http = fleet.coordinator.http.to_string();
    let (ok, said) = run_coordinator(&[
        "--config",
        &config.to_string_lossy(),
        "--data-dir",
        &data.to_string_lossy(),
        "--http-listen",
        &http,
        "backup",
        "--to",
        &backup.to_string_lossy(),
    ])?;
    ensure!(ok && said.contains("backup of the shared stores"), "{said}");
    let frames = std::fs::read_dir(backup.join("chunks"))?.count();
    ensure!(frames > 0, "the bucket's frames are in the backup");
    ensure!(
        !data
            .join("chunks")
            .read_dir()?
            .any(|e| e.ok().is_some_and(|e| e.file_name().len() == 2)),
        "the node itself holds no frames: they came from the bucket"
    );

    // The same backup makes a plain embedded install too.
    let embedded = fleet.dir.join("embedded");
    let (ok, said) = coordinator(&embedded, &["restore", "--from", &backup.to_string_lossy()])?;
    ensure!(
        ok && said.contains(&head[head.find(':').map_or(0, |i| i + 1)..]),
        "{said}"
    );
    ensure!(first_chunk(&embedded.join("chunks")).is_ok());

    // The stores are lost; the backup goes into a new database and a new bucket.
    fleet.coordinator.stop();
    let fresh_config = fleet.dir.join("restored.toml");
    std::fs::write(&fresh_config, shared_stores(keep.path())?)?;
    let fresh = fleet.dir.join("restored");
    let restore = |into: &Path| {
        run_coordinator(&[
            "--config",
            &fresh_config.to_string_lossy(),
            "--data-dir",
            &into.to_string_lossy(),
            "restore",
            "--from",
            &backup.to_string_lossy(),
        ])
    };
    let (ok, said) = restore(&fresh)?;
    ensure!(
        ok && said.contains("moved") && said.contains("restored"),
        "{said}"
    );
    // The database now holds records: a second restore into it is refused.
    let (ok, said) = restore(&fleet.dir.join("again"))?;
    ensure!(!ok && said.contains("already holds records"), "{said}");
    for token in ["admin.token", "viewer.token", "enrollment.token"] {
        std::fs::copy(data.join(token), fresh.join(token))?;
    }
    fleet.coordinator.data_dir = fresh;
    fleet.coordinator.use_config(&fresh_config);
    fleet.coordinator.restart()?;

    let aliases: Vec<AliasView> = fleet.coordinator.ctl_json(&["alias", "list", MODEL])?;
    ensure!(
        aliases
            .iter()
            .any(|a| a.alias == "prod" && a.version.to_string() == "1.0.0"),
        "prod after restore: {aliases:?}"
    );
    let verified: serde_json::Value = fleet
        .coordinator
        .ctl_json(&["audit", "--verify", "--anchor", &head])?;
    ensure!(verified["broken"].is_null(), "{verified}");
    // The agent carries on against the restored stores: the new release's chunks that 1.0.0
    // shares come from the restored bucket.
    let mut v2 = v1.clone();
    v2.extend(model_bytes(5, 64 * 1024, false));
    fleet.ship("1.1.0", &v2, T)?;
    ensure!(fleet.agents[0].current_bytes("model.bin")? == v2);
    Ok(())
}
