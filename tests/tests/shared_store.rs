//! Records on PostgreSQL, a real server the test starts: an embedded install moves onto it
//! with `ferry-coordinator migrate` (checked by its audit chain, refused into a database that
//! holds records), and the coordinator serves its fleet on from there.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::AliasView;
use ferry_coordinator::testkit::PostgresServer;
use ferry_tests::{Fleet, MODEL, model_bytes, run_coordinator};

const T: Duration = Duration::from_secs(60);

/// The audit trail's head as `SEQ:HASH`, checked intact.
fn anchor(fleet: &Fleet, with: Option<&str>) -> Result<String> {
    let mut args = vec!["audit", "--verify"];
    if let Some(anchor) = with {
        args.extend(["--anchor", anchor]);
    }
    let verified: serde_json::Value = fleet.coordinator.ctl_json(&args)?;
    ensure!(verified["broken"].is_null(), "{verified}");
    Ok(format!(
        "{}:{}",
        verified["head"]["seq"],
        verified["head"]["hash"].as_str().context("no head")?
    ))
}

fn prod(fleet: &Fleet) -> Result<String> {
    let aliases: Vec<AliasView> = fleet.coordinator.ctl_json(&["alias", "list", MODEL])?;
    aliases
        .iter()
        .find(|a| a.alias == "prod")
        .map(|a| a.version.to_string())
        .context("no prod alias")
}

#[test]
fn an_embedded_install_moves_onto_postgres_and_serves_on() -> Result<()> {
    let url = PostgresServer::shared().fresh_database();
    let mut fleet = Fleet::start(2, None)?;
    fleet.ship("1.0.0", &model_bytes(1, 256 * 1024, true), T)?;
    let head = anchor(&fleet, None)?;

    fleet.coordinator.terminate()?;
    let data = fleet.coordinator.data_dir.clone();
    let from = data.to_string_lossy().into_owned();
    let (ok, said) = run_coordinator(&["migrate", "--from", &from, "--to", &url])?;
    ensure!(
        ok && said.contains("moved") && said.contains("intact"),
        "{said}"
    );
    let (ok, said) = run_coordinator(&["migrate", "--from", &from, "--to", &url])?;
    ensure!(
        !ok && said.contains("already holds records"),
        "a second move into the same database: {said}"
    );

    let config = fleet.dir.join("shared.toml");
    std::fs::write(&config, format!("[store]\nmetadata = \"{url}\"\n"))?;
    fleet.coordinator.use_config(&config);
    fleet.coordinator.restart()?;

    // The records came along, under the same unbroken audit chain.
    ensure!(prod(&fleet)? == "1.0.0");
    anchor(&fleet, Some(&head))?;
    ensure!(
        fleet.coordinator.devices()?.len() == 2,
        "the devices came along"
    );

    // And the fleet goes on from the shared database.
    fleet.ship("1.1.0", &model_bytes(2, 256 * 1024, true), T)?;
    ensure!(prod(&fleet)? == "1.1.0");
    let moved_on = anchor(&fleet, Some(&head))?;
    ensure!(moved_on != head, "the trail grew on PostgreSQL");

    // The embedded database was left as it was, ending at the head it had when it moved;
    // the shared one walks on past it, offline too.
    fleet.coordinator.terminate()?;
    let (ok, said) = run_coordinator(&["--data-dir", &from, "--verify-audit", "--anchor", &head])?;
    ensure!(ok && said.contains(&format!("head {head}\n")), "{said}");
    let (ok, said) = run_coordinator(&[
        "--config",
        &config.to_string_lossy(),
        "--data-dir",
        &from,
        "--verify-audit",
        "--anchor",
        &head,
    ])?;
    ensure!(
        ok && said.contains(&format!("head {moved_on}\n")),
        "the audit chain on PostgreSQL, walked offline: {said}"
    );
    Ok(())
}

#[test]
fn a_store_address_that_is_not_postgres_is_refused_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[store]\nmetadata = \"mysql://root:secret@db/ferry\"\n",
    )?;
    let data = dir.path().join("data");
    let (ok, said) = run_coordinator(&[
        "--config",
        &config.to_string_lossy(),
        "--data-dir",
        &data.to_string_lossy(),
        "--verify-audit",
    ])?;
    ensure!(!ok && said.contains("not a postgres://"), "{said}");
    ensure!(!said.contains("secret"), "the password was shown: {said}");
    ensure!(!Path::new(&data).join("ferry.redb").exists());
    Ok(())
}
