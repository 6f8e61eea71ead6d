//! Regression tests, one per fault found from outside (issue 14), each named after the fault
//! and run on real processes: the test failed before its fix.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ferry_shared::rollout::Phase;
use ferry_shared::wire::ErrorKind;
use ferry_tests::relay::Relay;
use ferry_tests::small_disk::SmallDisk;
use ferry_tests::{AgentSpec, Fleet, Hopeless, MODEL, chunks_of, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

/// A one-wave rollout of `version` to the whole fleet, gated on install failures over half
/// of at least one device, as the outside tester ran it.
fn rollout(fleet: &Fleet, id: &str, version: &str) -> Result<()> {
    let plan = serde_json::json!({
        "id": id, "model": MODEL, "version": version, "reason": "regression",
        "waves": [{"percent": 100, "bake_secs": 1, "gates": [
            {"kind": "InstallFailures", "threshold": 0.5, "min_samples": 1}]}],
    });
    fleet.create_rollout(&plan)
}

/// Waits for rollout `id` to complete; rolling back instead is hopeless.
fn wait_completed(fleet: &Fleet, id: &str) -> Result<()> {
    wait_until(&format!("rollout {id} to complete"), T, || {
        let view = fleet.rollout(id)?;
        if view.phase == Phase::RolledBack {
            return Err(Hopeless(format!("rolled back: {:?}", view.reason)).into());
        }
        Ok(view.phase == Phase::Completed)
    })?;
    Ok(())
}

/// The last error the coordinator holds for the fleet's one device.
fn device_error(fleet: &Fleet) -> Result<Option<ferry_shared::wire::InstallError>> {
    let devices = fleet.coordinator.devices()?;
    let device = devices.first().context("no device")?;
    Ok(device.models.first().and_then(|m| m.last_error.clone()))
}

/// A fleet of one agent that reaches the coordinator through a relay the test can cut and
/// throttle, on 1.0.0.
fn one_agent_behind_a_relay() -> Result<(Fleet, Relay)> {
    let mut fleet = Fleet::start(0, None)?;
    let relay = Relay::start(fleet.coordinator.quic)?;
    fleet.add_agent(AgentSpec {
        via: Some(relay.addr),
        ..AgentSpec::named("agent-1")
    })?;
    fleet.ship("1.0.0", &model_bytes(1, MIB, true), T)?;
    Ok((fleet, relay))
}

#[test]
fn a_coordinator_restart_mid_download_does_not_roll_back_a_healthy_release() -> Result<()> {
    let (mut fleet, relay) = one_agent_behind_a_relay()?;

    // 1.0.3 downloads slowly enough to be cut in the middle.
    let v3 = model_bytes(3, 4 * MIB, true);
    fleet.publish("1.0.3", &v3)?;
    relay.limit(Some(512 * 1024));
    rollout(&fleet, "det-1.0.3", "1.0.3")?;
    let staging = fleet.agents[0]
        .state_dir
        .join("staging")
        .join(MODEL)
        .join("1.0.3");
    wait_until("the agent is assembling 1.0.3", T, || {
        Ok(std::fs::metadata(staging.join("model.bin")).is_ok())
    })?;
    fleet.coordinator.stop(); // kill -9
    fleet.coordinator.restart()?;
    // The agent's download was cut, and it says so ...
    wait_until("the agent reports the cut download", T, || {
        Ok(device_error(&fleet)?
            .is_some_and(|e| e.kind == ErrorKind::Download && e.version.to_string() == "1.0.3"))
    })?;
    relay.limit(None);
    // ... but a lost connection is no install failure: the rollout completes.
    wait_completed(&fleet, "det-1.0.3")?;
    fleet.wait_all_on("1.0.3", T)?;
    ensure!(fleet.agents[0].current_bytes("model.bin")? == v3);
    Ok(())
}

#[test]
fn a_new_rollout_is_not_judged_by_an_earlier_ones_failures() -> Result<()> {
    let fleet = Fleet::start(1, None)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;

    // 1.0.3's chunks go bad on the coordinator's disk: the first rollout fails, rightly.
    let v3 = model_bytes(3, MIB, true);
    fleet.publish("1.0.3", &v3)?;
    let files: Vec<_> = chunks_of(&v3)
        .chunks
        .iter()
        .map(|c| fleet.chunk_file(&c.hash))
        .collect();
    let sound: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    for file in &files {
        std::fs::write(file, zstd::encode_all(&b"not this chunk"[..], 3)?)?;
    }
    rollout(&fleet, "first", "1.0.3")?;
    fleet.wait_rollout("first", Phase::RolledBack, T, |_| Ok(()))?;
    ensure!(
        device_error(&fleet)?.is_some_and(|e| e.kind == ErrorKind::Integrity),
        "{:?}",
        device_error(&fleet)?
    );

    // Repaired, 1.0.3 goes out again: the device's old failure does not judge the new rollout.
    for (file, bytes) in files.iter().zip(&sound) {
        std::fs::write(file, bytes)?;
    }
    rollout(&fleet, "second", "1.0.3")?;
    wait_completed(&fleet, "second")
        .with_context(|| format!("device error {:?}", device_error(&fleet)))?;
    fleet.wait_all_on("1.0.3", T)?;
    Ok(())
}

/// Fills the file system holding `dir` to the last byte with one file; returns it.
fn fill(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::io::Write;
    let path = dir.join("application.log");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![b'x'; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => return Err(e.into()),
        }
    }
    // Then byte by byte, to the very end.
    while let Ok(1) = file.write(b"x") {}
    Ok(path)
}

#[test]
fn a_full_disk_does_not_wedge_the_agent() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let state = fleet.dir.join("agents/agent-1/state");
    let Some(_disk) = SmallDisk::mount(&state, 20)? else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return Ok(());
    };
    fleet.add_agent(AgentSpec::named("agent-1"))?;
    fleet.publish("1.0.0", &model_bytes(1, 6 * MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, 6 * MIB, true))?;
    fleet.set_prod("2.0.0", "next")?;
    fleet.wait_all_on("2.0.0", T)?;

    // 3.0.0 cannot fit beside the two versions kept: it is refused before any byte comes.
    fleet.publish("3.0.0", &model_bytes(3, 12 * MIB, true))?;
    fleet.set_prod("3.0.0", "too big")?;
    let agent = &fleet.agents[0];
    wait_until("the agent reports the disk too small", T, || {
        Ok(device_error(&fleet)?.is_some_and(|e| {
            e.kind == ErrorKind::Disk && e.message.contains("not enough disk space")
        }))
    })?;
    let status = agent.status()?;
    let error = status.models[0]
        .last_error
        .clone()
        .context("status shows no error")?;
    ensure!(error.message.contains("3.0.0"), "{error:?}");
    ensure!(agent.current_bytes("model.bin")? == model_bytes(2, 6 * MIB, true));

    // Back to what it holds as previous: it switches, and nothing is left half downloaded.
    fleet.set_prod("1.0.0", "back")?;
    fleet.wait_all_on("1.0.0", T)?;
    ensure!(
        agent.staging()?.is_empty(),
        "left staged: {:?}",
        agent.staging()?
    );
    ensure!(
        !std::fs::read_dir(&state)?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp")),
        "temp files left"
    );

    // Something else fills the disk to the last byte: a hand rollback still works.
    wait_until("the reserve for switching is made", T, || {
        Ok(state.join("space.reserve").exists())
    })?;
    let log = fill(&state)?;
    agent.rollback()?;
    ensure!(agent.current().map(|v| v.to_string()).as_deref() == Some("2.0.0"));
    std::fs::remove_file(log)?;
    Ok(())
}

#[test]
fn one_enospc_does_not_poison_the_coordinators_database() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let data = temp.path().join("coordinator");
    let Some(_disk) = SmallDisk::mount(&data, 32)? else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return Ok(());
    };
    let fleet = Fleet::start(0, Some(temp.path()))?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.publish("1.1.0", &model_bytes(2, 64 * 1024, true))?;
    let healthz = || -> Result<(u16, String)> {
        let reply = ferry_tests::http::request(fleet.coordinator.http, "GET", "/healthz", None)?;
        Ok((reply.status, reply.body))
    };
    ensure!(healthz()?.0 == 200);

    // The disk fills: the write fails, and the health check says so.
    let filler = fill(&data)?;
    let set = |v: &str| fleet.coordinator.ctl(&["alias", "set", MODEL, "prod", v]);
    let mut refused = None;
    for v in ["1.0.0", "1.1.0", "1.0.0", "1.1.0"] {
        if let Err(e) = set(v) {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.context("no write failed on a full disk")?;
    ensure!(
        refused.contains("No space left") || refused.contains("space"),
        "{refused}"
    );
    let (status, body) = healthz()?;
    ensure!(
        status == 503 && body.contains("cannot commit"),
        "{status} {body}"
    );

    // Space comes back: writes work again without a restart, and the check recovers.
    std::fs::remove_file(filler)?;
    set("1.1.0")?;
    set("1.0.0")?;
    ensure!(fleet.prod()?.to_string() == "1.0.0");
    ensure!(healthz()?.0 == 200, "{:?}", healthz()?);
    Ok(())
}

#[test]
fn ferryctl_does_not_panic_on_a_closed_pipe_or_an_absurd_duration() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;

    // `ferryctl … | head -0`: the reader is gone before the first line.
    for args in [
        vec!["audit"],
        vec!["releases", "list"],
        vec!["fleet", "status"],
    ] {
        let mut child = c.ctl_command(&args)?;
        drop(child.stdout.take());
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(0) && !stderr.contains("panicked"),
            "ferryctl {}: {:?} {stderr}",
            args.join(" "),
            out.status
        );
    }

    // Durations past any sane bound are refused, clearly, and nothing is created.
    let before: Vec<serde_json::Value> = c.ctl_json(&["devices", "enroll-tokens"])?;
    let (err, code) = c.ctl_failing(&[
        "tokens",
        "create",
        "x",
        "--role",
        "viewer",
        "--expires-days",
        "1000000000000000",
    ])?;
    ensure!(
        err.contains("expires_days must be at most") && code != Some(101),
        "{code:?} {err}"
    );
    let (err, code) = c.ctl_failing(&[
        "devices",
        "enroll-token",
        "--expires-hours",
        "1000000000000000",
    ])?;
    ensure!(
        err.contains("expires_hours must be at most") && code != Some(101),
        "{code:?} {err}"
    );
    let (err, _) = c.ctl_failing(&["devices", "enroll-token", "--uses", "0"])?;
    ensure!(err.contains("uses must be at least 1"), "{err}");
    // What exists still lists.
    c.ctl(&["tokens", "list"])?;
    c.ctl(&["devices", "enroll-tokens"])?;
    let listed: Vec<serde_json::Value> = c.ctl_json(&["devices", "enroll-tokens"])?;
    ensure!(listed.len() == before.len(), "created anyway: {listed:?}");
    Ok(())
}

/// Whether the coordinator shows the fleet's device `id` connected.
fn connected(fleet: &Fleet, id: &str) -> Result<bool> {
    Ok(fleet
        .coordinator
        .devices()?
        .iter()
        .any(|d| d.id == id && d.connected))
}

#[test]
fn a_cloned_identity_is_not_admitted_twice() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    let id = fleet.agents[0].status()?.device_id.context("no id")?;

    // An agent killed and restarted at once is no clone: its old session is silent.
    fleet.agents[0].kill();
    fleet.agents[0].start()?;
    wait_until("the restarted agent is back", T, || {
        Ok(fleet.agents[0].log().matches("connected").count() >= 2 && connected(&fleet, &id)?)
    })?;
    ensure!(fleet.coordinator.fleet_status()?.clone_alerts.is_empty());

    // A second agent with a copy of the identity key, alive at the same time: refused.
    let clone_state = fleet.dir.join("agents/agent-clone/state");
    std::fs::create_dir_all(&clone_state)?;
    std::fs::copy(
        fleet.agents[0].state_dir.join("identity.key"),
        clone_state.join("identity.key"),
    )?;
    fleet.add_agent(AgentSpec::named("agent-clone"))?;
    wait_until("the clone is refused", T, || {
        Ok(fleet.agents[1].log().contains("already has a live session"))
    })?;
    let status = fleet.coordinator.fleet_status()?;
    let alert = status
        .clone_alerts
        .iter()
        .find(|a| a.device == id)
        .context("no clone alert")?;
    ensure!(alert.refusals >= 1);
    let metrics = fleet.coordinator.get("/metrics", "admin")?.body;
    ensure!(
        metrics.contains(&format!("ferry_device_clone_alert{{device=\"{id}\"}} 1")),
        "{metrics}"
    );
    let audit: Vec<serde_json::Value> = fleet.coordinator.ctl_json(&["audit"])?;
    ensure!(
        audit.iter().any(|e| e["action"] == "device.clone-refused"),
        "{audit:?}"
    );
    // The first agent keeps its session, and the record is its own.
    ensure!(fleet.coordinator.devices()?.len() == 1 && connected(&fleet, &id)?);
    ensure!(fleet.agents[0].is_alive());

    // A revoked device is listed as revoked.
    fleet
        .coordinator
        .ctl(&["devices", "revoke", &id, "--reason", "cloned"])?;
    let devices = fleet.coordinator.devices()?;
    ensure!(
        devices.iter().all(|d| d.revoked_at.is_some()),
        "{devices:?}"
    );
    let table = fleet.coordinator.ctl(&["devices", "list"])?;
    ensure!(table.contains("revoked"), "{table}");
    Ok(())
}

#[test]
fn agent_status_says_when_no_agent_runs() -> Result<()> {
    let mut fleet = Fleet::start(1, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    ensure!(fleet.agents[0].status()?.daemon_running);
    // A second daemon on the same state directory is refused, before it touches anything
    // there: it used to look at the agent's own hand-over first, and so removed a torn
    // hand-over file (as a starting daemon heals one) under the running daemon.
    let handover = fleet.agents[0].state_dir.join("handover.json");
    std::fs::write(&handover, b"{ torn")?;
    let mut twin = ferry_tests::Agent::new(
        &ferry_tests::Binaries::get()?,
        "twin",
        &fleet.agents[0].config,
        &fleet.agents[0].state_dir,
        MODEL,
        &fleet.dir.join("twin.log"),
    );
    twin.start()?;
    wait_until("the twin daemon exits", T, || Ok(!twin.is_alive()))?;
    ensure!(
        std::fs::read_to_string(fleet.dir.join("twin.log"))?
            .contains("another ferry-agent is running")
    );
    ensure!(
        handover.exists(),
        "the twin changed the running daemon's state directory"
    );
    std::fs::remove_file(&handover)?;
    fleet.agents[0].kill();
    let status = fleet.agents[0].status()?;
    ensure!(!status.daemon_running && status.connection.last_connected_at.is_some());
    Ok(())
}

#[test]
fn latest_cannot_be_set_by_hand_and_huge_reasons_are_cut() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.publish("0.9.0", &model_bytes(2, 64 * 1024, true))?;
    let (err, _) = c.ctl_failing(&["alias", "set", MODEL, "latest", "0.9.0"])?;
    ensure!(err.contains("cannot be set by hand"), "{err}");
    ensure!(
        fleet
            .alias_target("latest")?
            .map(|v| v.to_string())
            .as_deref()
            == Some("1.0.0")
    );
    let reason = "x".repeat(100_000);
    c.ctl(&["alias", "set", MODEL, "prod", "1.0.0", "--reason", &reason])?;
    let audit: Vec<serde_json::Value> = c.ctl_json(&["audit"])?;
    let last = audit.last().context("no audit entries")?;
    let detail = last["detail"].as_str().unwrap_or_default();
    ensure!(
        detail.len() <= 4096 && detail.contains("bytes cut"),
        "{} bytes",
        detail.len()
    );
    let verified: serde_json::Value = c.ctl_json(&["audit", "--verify"])?;
    ensure!(verified["broken"].is_null(), "{verified}");
    Ok(())
}

/// Finding 9: every runtime failure exited 1; `--help` showed the coordinator's description,
/// mixed the global flags into every command's options and printed `[env: FERRY_URL]` twice;
/// a URL without a scheme failed with "relative URL without a base".
#[test]
fn ferryctl_exit_codes_tell_failures_apart_and_help_speaks_for_ferryctl() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    let viewer: ferry_coordinator::api::TokenCreated =
        c.ctl_json(&["tokens", "create", "v", "--role", "viewer"])?;

    let code = |out: std::process::Output| (out.status.code(), out.stderr);
    // (case, what ferryctl exited with and wrote to stderr, the code it must exit with)
    type Case<'a> = (&'a str, (Option<i32>, Vec<u8>), i32);
    let cases: Vec<Case> = vec![
        (
            "no scheme",
            code(c.ctl_output(&["--url", "127.0.0.1:7401", "releases", "list"])?),
            2,
        ),
        (
            "unreachable",
            code(c.ctl_output(&["--url", "http://127.0.0.1:1", "releases", "list"])?),
            3,
        ),
        (
            "bad token",
            code(c.ctl_output_as("fy_nosuchtoken", &["releases", "list"])?),
            4,
        ),
        (
            "not permitted",
            code(c.ctl_output_as(&viewer.token, &["alias", "set", MODEL, "prod", "1.0.0"])?),
            4,
        ),
        (
            "not found",
            code(c.ctl_output(&["releases", "show", MODEL, "9.9.9"])?),
            5,
        ),
        (
            "invalid",
            code(c.ctl_output(&[
                "tokens",
                "create",
                "x",
                "--role",
                "viewer",
                "--expires-days",
                "1000000000000000",
            ])?),
            7,
        ),
        (
            "usage",
            code(c.ctl_output(&["releases", "list", "--no-such-flag"])?),
            2,
        ),
    ];
    for (case, (got, stderr), want) in cases {
        let stderr = String::from_utf8_lossy(&stderr);
        ensure!(
            got == Some(want),
            "{case}: exit {got:?}, want {want}: {stderr}"
        );
        ensure!(!stderr.contains("relative URL"), "{case}: {stderr}");
    }
    let (err, _) = c.ctl_failing(&["--url", "127.0.0.1:7401", "releases", "list"])?;
    ensure!(
        err.contains("has no scheme") && err.contains("https://"),
        "{err}"
    );

    let help = c.ctl(&["--help"])?;
    ensure!(
        !help.contains("rollout brain"),
        "the coordinator's description: {help}"
    );
    ensure!(
        help.contains("Exit codes:") && help.contains("  5  not found"),
        "{help}"
    );
    let sub = c.ctl(&["alias", "set", "--help"])?;
    ensure!(sub.matches("FERRY_URL").count() == 1, "{sub}");
    ensure!(!sub.contains("Admin token"), "{sub}");
    let options = sub
        .split("Connection (any command):")
        .next()
        .context("no options")?;
    ensure!(
        !options.contains("--url") && !options.contains("--token"),
        "global flags among the command's own options: {sub}"
    );
    Ok(())
}

/// Finding 8: the admin API spoke plain HTTP only and ferryctl could not speak HTTPS ("scheme
/// is not http"), so bearer tokens crossed the network in clear text. With TLS on, ferryctl
/// reaches it by the pinned fingerprint (the one agents pin), refuses any other certificate
/// and says which one it was shown, and plain HTTP gets no answer.
#[test]
fn the_admin_api_speaks_tls_and_ferryctl_pins_its_certificate() -> Result<()> {
    let fleet = Fleet::start_configured(0, None, Some("admin_tls = \"on\"\n"))?;
    let c = &fleet.coordinator;
    ensure!(c.admin_url.starts_with("https://"), "{}", c.admin_url);

    // The harness's ferryctl pins the fingerprint through FERRY_PIN; --pin does the same.
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    let listed = c.ctl(&["--pin", &c.fingerprint, "releases", "list"])?;
    ensure!(listed.contains("1.0.0"), "{listed}");

    let admin = std::fs::read_to_string(c.data_dir.join("admin.token"))?;
    let out = std::process::Command::new(&ferry_tests::Binaries::get()?.ctl)
        .args([
            "--url",
            &c.admin_url,
            "--token",
            admin.trim(),
            "releases",
            "list",
        ])
        .env_remove("FERRY_PIN")
        .output()?;
    ensure!(
        out.status.code() == Some(3),
        "no pin, and the system's CAs do not know a self-signed certificate: {out:?}"
    );
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let out = c.ctl_output(&["--pin", &wrong, "releases", "list"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(3), "{stderr}");
    ensure!(
        stderr.contains(&c.fingerprint) && stderr.contains(&wrong),
        "the refusal names both certificates: {stderr}"
    );
    ensure!(
        ferry_tests::http::request(c.http, "GET", "/healthz", None).is_err(),
        "plain HTTP to the TLS port got an answer"
    );
    let plain = format!("http://{}", c.http);
    let out = c.ctl_output(&["--url", &plain, "--pin", &c.fingerprint, "releases", "list"])?;
    ensure!(
        out.status.code() == Some(2),
        "a pin over plain HTTP is a usage error: {out:?}"
    );
    Ok(())
}

/// Finding 10: the admin port had no header-read timeout (1,100 half-sent requests were
/// held open for more than 40 s), and unknown query parameters were silently ignored.
#[test]
fn half_sent_requests_are_dropped_and_unknown_query_parameters_refused() -> Result<()> {
    use std::io::{Read, Write};

    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut stream = std::net::TcpStream::connect(c.http)?;
        stream.write_all(b"GET /api/v1/releases HTTP/1.1\r\nHost: x\r\nX-Slow: ")?;
        stream.set_read_timeout(Some(Duration::from_secs(40)))?;
        held.push(stream);
    }
    for (i, stream) in held.iter_mut().enumerate() {
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            // Closed, with or without a 408 first.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => anyhow::bail!("half-sent request {i} still held after 40 s: {e}"),
        }
    }
    // Served as before, meanwhile and after.
    ensure!(ferry_tests::http::request(c.http, "GET", "/healthz", None)?.status == 200);

    let admin = std::fs::read_to_string(c.data_dir.join("admin.token"))?;
    let get = |path: &str| ferry_tests::http::request(c.http, "GET", path, Some(admin.trim()));
    for path in [
        "/api/v1/releases?nmae=detector",
        "/api/v1/devices?model=detector",
        "/api/v1/audit?limit=5&evil=1",
    ] {
        let reply = get(path)?;
        ensure!(
            reply.status == 400,
            "{path}: {} {}",
            reply.status,
            reply.body
        );
    }
    ensure!(get("/api/v1/releases?name=detector")?.status == 200);
    ensure!(get("/api/v1/audit?limit=5")?.status == 200);
    Ok(())
}

/// Finding 7: a device rolled back by hand during a rollout held it forever ("6 on target of
/// 7 targeted", gates "6/10 samples waiting") while nothing named the device. Now the
/// rollout names it as pinned, leaves it out of the gates within the plan's limit, says
/// the gate passed on fewer samples than its minimum, and completes.
#[test]
fn a_device_pinned_by_a_hand_rollback_is_named_and_does_not_stall_the_rollout() -> Result<()> {
    let fleet = Fleet::start(3, None)?;
    fleet.ship("1.0.0", &model_bytes(1, 256 * 1024, true), T)?;
    fleet.publish("1.1.0", &model_bytes(2, 256 * 1024, true))?;
    let plan = serde_json::json!({
        "id": "pinned", "model": MODEL, "version": "1.1.0", "reason": "regression",
        "max_left_out_percent": 40.0,
        "waves": [{"percent": 100, "bake_secs": 15, "gates": [
            {"kind": "InstallFailures", "threshold": 0.5, "min_samples": 10}]}],
    });
    fleet.create_rollout(&plan)?;
    fleet.wait_all_on("1.1.0", T)?;

    // An operator rolls one device back by hand while the wave bakes.
    let pinned = &fleet.agents[0];
    pinned.rollback()?;
    let device = pinned.status()?.device_id.context("no device id")?;
    let short = device.chars().take(12).collect::<String>();
    let named = wait_until("the rollout to name the pinned device", T, || {
        let view = fleet.rollout("pinned")?;
        if view.phase.is_terminal() {
            return Err(Hopeless(format!("ended before naming it: {:?}", view.phase)).into());
        }
        Ok(view
            .stragglers
            .iter()
            .any(|s| s.device == device && s.left_out && s.reason.contains("pinned")))
    });
    named?;
    let status = fleet.coordinator.ctl(&["rollout", "status", "pinned"])?;
    ensure!(
        status.contains(&short) && status.contains("pinned by a hand rollback"),
        "{status}"
    );
    wait_completed(&fleet, "pinned")?;
    let view = fleet.rollout("pinned")?;
    ensure!(
        view.notes
            .iter()
            .any(|n| n
                .contains("InstallFailures passed on 2 sample(s), fewer than its minimum of 10")),
        "{:?}",
        view.notes
    );
    ensure!(
        pinned.current() == Some("1.0.0".parse()?),
        "the pinned device stays put"
    );
    Ok(())
}

/// "Failure paths that lose events": a failed write of `state.json` was only logged. The
/// state is kept in memory, reported to the coordinator as a disk error naming the file, and
/// written as soon as it can be, with the events of the meantime.
#[test]
fn a_state_the_agent_cannot_write_is_kept_reported_and_written_once_it_can() -> Result<()> {
    let fleet = Fleet::start(1, None)?;
    fleet.ship("1.0.0", &model_bytes(1, 256 * 1024, true), T)?;
    let agent = &fleet.agents[0];
    let saved_seq = || -> Result<u64> {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(agent.state_dir.join("state.json"))?)?;
        state["next_seq"].as_u64().context("no next_seq")
    };
    // Every write of state.json fails from now on: its temporary file cannot be created. The
    // agent may be writing the state right now, its own state.tmp in the way for a moment.
    let blocker = agent.state_dir.join("state.tmp");
    wait_until(
        "state.tmp to be free for the blocker",
        T,
        || match std::fs::create_dir(&blocker) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        },
    )?;
    // Read once no write can land any more: the agent may still be saving what followed the
    // install (its update record, an event) when `ship` returns.
    let before = saved_seq()?;
    fleet.ship("1.1.0", &model_bytes(2, 256 * 1024, true), T)?;
    wait_until("the device to report its unsaved state", T, || {
        Ok(device_error(&fleet)?
            .is_some_and(|e| e.kind == ErrorKind::Disk && e.message.contains("state.json")))
    })?;
    ensure!(saved_seq()? == before, "the state was written after all");

    std::fs::remove_dir(&blocker)?;
    wait_until("the state to be written and the error cleared", T, || {
        Ok(saved_seq()? > before && device_error(&fleet)?.is_none())
    })?;
    Ok(())
}

/// Finding 6, last part: after a cut mid-download, every retry failed with "not connected to
/// the coordinator", and that replaced the failure that began it in what the device showed
/// and the fleet was told. The failure that began the streak stays the one reported.
#[test]
fn a_cut_mid_download_is_reported_as_itself_not_as_the_retries_after_it() -> Result<()> {
    let (fleet, relay) = one_agent_behind_a_relay()?;
    fleet.publish("2.0.0", &model_bytes(2, 32 * MIB, true))?;
    relay.limit(Some(MIB as u64));
    fleet.set_prod("2.0.0", "next")?;
    let agent = &fleet.agents[0];
    let before = relay.delivered();
    // About a megabyte of datagrams: chunks are arriving.
    wait_until("the download to be under way", T, || {
        Ok(relay.delivered() > before + 1000)
    })?;
    relay.cut(true);
    let error = || -> Result<Option<String>> {
        Ok(agent.status()?.models[0]
            .last_error
            .as_ref()
            .map(|e| e.message.clone()))
    };
    let mut first = None;
    wait_until("the cut to fail the download", T, || {
        first = error()?;
        Ok(first.is_some())
    })?;
    let first = first.context("no error")?;
    // Retries meanwhile find no link; what began it is still what is reported.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    while std::time::Instant::now() < deadline {
        let now = error()?;
        ensure!(
            now.as_deref() == Some(first.as_str()),
            "the first failure {first:?} was replaced by {now:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    relay.cut(false);
    relay.limit(None);
    fleet.wait_all_on("2.0.0", T)?;
    Ok(())
}

/// The same for `trust.json`: a trust change (a newer snapshot) that cannot be written was
/// only logged and never retried. It stays in force, is reported naming the file, and is
/// written once it can be.
#[test]
fn a_trust_state_the_agent_cannot_write_is_kept_reported_and_written_once_it_can() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let root = ferry_tests::scenarios::root_ceremony(&fleet)?;
    fleet.add_agent(AgentSpec {
        root_file: Some(root),
        ..AgentSpec::named("agent-1")
    })?;
    fleet.ship("1.0.0", &model_bytes(1, 256 * 1024, true), T)?;
    let agent = &fleet.agents[0];
    let saved_snapshot = || -> Result<u64> {
        let trust: ferry_shared::trust::TrustState = ferry_agent::stored::decode(
            &std::fs::read(agent.state_dir.join("trust.json"))?,
            ferry_agent::stored::TRUST_FORMAT,
        )?;
        Ok(trust.snapshot_version(&MODEL.parse()?))
    };
    let before = saved_snapshot()?;

    let blocker = agent.state_dir.join("trust.tmp");
    std::fs::create_dir(&blocker)?;
    // A newer snapshot lists 1.1.0: the device takes it (the trust in memory is in force).
    fleet.ship("1.1.0", &model_bytes(2, 256 * 1024, true), T)?;
    wait_until("the device to report its unsaved trust", T, || {
        Ok(device_error(&fleet)?
            .is_some_and(|e| e.kind == ErrorKind::Disk && e.message.contains("trust.json")))
    })?;
    ensure!(
        saved_snapshot()? == before,
        "the trust was written after all"
    );

    std::fs::remove_dir(&blocker)?;
    wait_until("the trust to be written and the error cleared", T, || {
        Ok(saved_snapshot()? > before && device_error(&fleet)?.is_none())
    })?;
    Ok(())
}

/// `Fleet::wait_all_on` waited out its whole patience (an hour in the benches) for a version
/// whose health check had failed and which every agent held back.
#[test]
fn waiting_for_a_version_the_agents_hold_back_gives_up() -> Result<()> {
    let fleet = Fleet::start(1, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    fleet.publish("2.0.0", &model_bytes(2, 64 * 1024, false))?;
    fleet.set_prod("2.0.0", "fails its health check")?;
    // Long enough that only giving up ends the wait; short enough that a regression fails
    // CI rather than stalling it.
    let patience = Duration::from_secs(300);
    let Err(e) = fleet.wait_all_on("2.0.0", patience) else {
        bail!("a version that fails its health check was waited for and came");
    };
    let message = format!("{e:#}");
    ensure!(message.contains("holds 2.0.0 back"), "{message}");
    Ok(())
}
