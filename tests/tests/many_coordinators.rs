//! Several coordinators, one fleet: three `ferry-coordinator` processes on one PostgreSQL
//! database and one S3 bucket (real servers the test starts), six agents spread over them,
//! each naming all three. A release published on one node and pointed at on
//! another reaches every agent; with one node killed (-9), its agents move to the others and
//! the fleet goes on; the audit chain stays whole; the node comes back and serves again. A
//! rollout with health gates goes on when the node driving it is killed: another takes the
//! driver's lease and finishes it, every node seeing the whole fleet connected.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{DeviceView, FleetStatus, RolloutView};
use ferry_coordinator::store::Store;
use ferry_coordinator::testkit::{PostgresServer, S3Server};
use ferry_shared::rollout::Phase;
use ferry_tests::{AgentSpec, Cadence, Coordinator, Fleet, MODEL, model_bytes, wait_until};

const T: Duration = Duration::from_secs(90);

/// Where the nodes keep what they share.
struct Shared {
    /// The PostgreSQL database.
    url: String,
    /// The `[store]` lines naming the bucket.
    chunks: String,
}

/// A node's configuration: its name, the shared database and bucket.
fn config(node: &str, shared: &Shared) -> String {
    format!(
        "node_name = \"{node}\"\n[store]\nmetadata = \"{url}\"\n{chunks}",
        url = shared.url,
        chunks = shared.chunks,
    )
}

/// Chunk frames (`*.zst`) under `dir`.
fn frames_in(dir: &std::path::Path) -> Result<usize> {
    let mut n = 0;
    if !dir.exists() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            n += frames_in(&path)?;
        } else if path.extension().is_some_and(|e| e == "zst") {
            n += 1;
        }
    }
    Ok(n)
}

fn set_prod(node: &Coordinator, version: &str) -> Result<()> {
    node.ctl(&["alias", "set", MODEL, "prod", version, "--reason", "test"])?;
    Ok(())
}

#[test]
fn three_coordinators_on_one_database_serve_one_fleet_through_a_node_loss() -> Result<()> {
    let url = PostgresServer::shared().fresh_database();
    let keep = tempfile::tempdir()?;
    let shared = Shared {
        url: url.clone(),
        chunks: S3Server::shared()
            .chunk_settings(keep.path())
            .map_err(anyhow::Error::msg)?,
    };
    let mut fleet = Fleet::start_configured(0, None, Some(&config("a", &shared)))?;
    let b = fleet.start_node("b", &config("b", &shared), Cadence::TESTS)?;
    let c = fleet.start_node("c", &config("c", &shared), Cadence::TESTS)?;
    let nodes = [fleet.coordinator.quic, b.quic, c.quic];
    for i in 0..6 {
        let first = nodes[i % 3];
        fleet.add_agent(AgentSpec {
            via: Some(first),
            also: nodes.iter().copied().filter(|n| *n != first).collect(),
            ..AgentSpec::named(&format!("agent-{}", i + 1))
        })?;
    }

    // Published on a, pointed at on b: every agent, whichever node it talks to, updates.
    fleet.publish("1.0.0", &model_bytes(1, 256 * 1024, true))?;
    set_prod(&b, "1.0.0")?;
    fleet.wait_all_on("1.0.0", T)?;
    for node in [&fleet.coordinator, &b, &c] {
        ensure!(
            node.devices()?.len() == 6,
            "every node knows the whole fleet"
        );
        ensure!(
            frames_in(&node.data_dir.join("chunks"))? == 0,
            "chunks went to the bucket, not to a node's own directory"
        );
    }

    // Node a dies: its agents move to b and c, and the fleet goes on from them.
    fleet.coordinator.stop();
    let b_admin = b.admin_url.clone();
    fleet.publish_through(&b_admin, "1.1.0", &model_bytes(2, 256 * 1024, true))?;
    set_prod(&c, "1.1.0")?;
    fleet.wait_all_on("1.1.0", T)?;

    let verified: serde_json::Value = c.ctl_json(&["audit", "--verify"])?;
    ensure!(verified["broken"].is_null(), "{verified}");

    // Back again, node a serves its share: a move made on it reaches every agent.
    fleet.coordinator.restart()?;
    set_prod(&fleet.coordinator, "1.0.0")?;
    fleet.wait_all_on("1.0.0", T)?;
    let verified: serde_json::Value = b.ctl_json(&["audit", "--verify"])?;
    ensure!(verified["broken"].is_null(), "{verified}");
    let entries = verified["entries"].as_u64().unwrap_or(0);
    let moves = b
        .ctl_json::<Vec<serde_json::Value>>(&["audit", "--action", "alias.set", "--last", "1000"])?
        .iter()
        .filter(|e| e["subject"] == "detector@prod" && e["actor"] != "registry")
        .count();
    ensure!(
        moves == 3,
        "each of the three prod moves is in the trail once ({moves} of {entries} entries)"
    );

    // A rollout in two waves, created on a; whichever node drives it is killed in the first
    // wave's bake, and another finishes it.
    fleet.publish("1.2.0", &model_bytes(3, 256 * 1024, true))?;
    let plan = serde_json::json!({
        "id": "to-1.2", "model": MODEL, "version": "1.2.0",
        "waves": [
            {"percent": 50, "bake_secs": 4, "gates": [
                {"kind": "InstallFailures", "threshold": 0.5, "min_samples": 1}]},
            {"percent": 100, "bake_secs": 1, "gates": []},
        ],
    });
    fleet.create_rollout(&plan)?;
    let store = Store::open_postgres(&url, &Default::default())?;
    let mut holder = String::new();
    wait_until("a node to hold the driver's lease", T, || {
        if let Some((_, lease)) = store
            .leases()?
            .into_iter()
            .find(|(name, _)| name == ferry_coordinator::rollout::run::DRIVER_LEASE)
        {
            holder = lease.holder;
        }
        Ok(!holder.is_empty())
    })?;
    // The driver's measurements are stored with the rollout: every node charts them.
    let mut first = None;
    wait_until("the driver to measure the gates", T, || {
        first = store.gate_samples("to-1.2")?.samples.first().cloned();
        Ok(first.is_some())
    })?;
    let first = first.context("a sample")?;
    let mut nodes = [("a", None), ("b", Some(b)), ("c", Some(c))];
    match nodes.iter_mut().find(|(name, _)| *name == holder) {
        Some((_, Some(node))) => node.stop(),
        Some((_, None)) => fleet.coordinator.stop(),
        None => anyhow::bail!("the driver's lease is held by {holder}, no node of this fleet"),
    }
    let survivor = nodes
        .iter()
        .filter(|(name, _)| *name != holder)
        .find_map(|(_, node)| node.as_ref())
        .context("a surviving node")?;
    wait_until("the rollout to finish without its first driver", T, || {
        let view: RolloutView = survivor.ctl_json(&["rollout", "status", "to-1.2"])?;
        ensure!(view.phase != Phase::RolledBack, "rolled back: {view:?}");
        Ok(view.phase == Phase::Completed)
    })?;
    fleet.wait_all_on("1.2.0", T)?;
    // The killed driver's samples are still there, after the survivor's; the survivor's view
    // charts the wave it ended in (the second), as the one that drove it.
    let kept = store.gate_samples("to-1.2")?.samples;
    ensure!(
        kept.first() == Some(&first),
        "the first driver's samples are gone: {:?} vs {first:?}",
        kept.first()
    );
    let view: RolloutView = survivor.ctl_json(&["rollout", "status", "to-1.2"])?;
    ensure!(
        !view.gate_history.is_empty() && view.gate_history.iter().all(|s| s.wave == 2),
        "{:?}",
        view.gate_history
    );
    let taken = survivor.ctl_json::<Vec<serde_json::Value>>(&[
        "audit",
        "--action",
        "lease.take",
        "--last",
        "100",
    ])?;
    ensure!(
        taken.iter().any(|e| e["actor"] != holder.as_str()
            && e["subject"] == ferry_coordinator::rollout::run::DRIVER_LEASE),
        "another node took the lease over: {taken:?}"
    );
    // A collection on a surviving node, under the fleet-wide fence, lists the bucket and
    // keeps every chunk a release still uses: the fleet moves back to 1.1.0 afterwards.
    let report: serde_json::Value = survivor.ctl_json(&["gc", "--apply"])?;
    ensure!(report["applied"] == true, "{report}");
    set_prod(survivor, "1.1.0")?;
    fleet.wait_all_on("1.1.0", T)?;

    // Every surviving node sees the whole fleet connected, wherever each device's session is.
    wait_until("every node to see six devices connected", T, || {
        let mut all = true;
        for (_, node) in nodes.iter().filter(|(name, _)| *name != holder) {
            let seen: FleetStatus = match node {
                Some(node) => node.ctl_json(&["fleet", "status"])?,
                None => fleet.coordinator.ctl_json(&["fleet", "status"])?,
            };
            all &= seen.devices_connected == 6;
        }
        Ok(all)
    })?;
    Ok(())
}

/// The device page read what the device serves from the answering node's memory: behind a
/// load balancer, a device whose session another node holds showed nothing served.
#[test]
fn a_device_page_on_a_node_without_its_session_shows_what_it_serves() -> Result<()> {
    let url = PostgresServer::shared().fresh_database();
    let keep = tempfile::tempdir()?;
    let shared = Shared {
        url,
        chunks: S3Server::shared()
            .chunk_settings(keep.path())
            .map_err(anyhow::Error::msg)?,
    };
    let mut fleet = Fleet::start_configured(0, None, Some(&config("a", &shared)))?;
    let b = fleet.start_node("b", &config("b", &shared), Cadence::TESTS)?;
    let a = fleet.coordinator.quic;
    fleet.add_agent(AgentSpec {
        via: Some(a),
        ..AgentSpec::named("agent-1")
    })?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    set_prod(&fleet.coordinator, "1.0.0")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.serve_requests(20, |_| 0)?;
    let id = fleet.agents[0].status()?.device_id.context("no id")?;
    wait_until("node b to show what the device serves", T, || {
        let reply = b.get(&format!("/api/v1/devices/{id}"), "viewer")?;
        ensure!(reply.status == 200, "{}", reply.body);
        let view: DeviceView = serde_json::from_str(&reply.body)?;
        Ok(view.connected && view.served.iter().any(|s| s.requests >= 20))
    })?;
    Ok(())
}
