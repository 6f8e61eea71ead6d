//! The admin API's permission matrix on a real coordinator: one API token per role, every
//! changing route tried with each, a refusal (403) exactly where the role does not allow the
//! action; model scope; revoked and expired tokens; refusals in the audit trail.

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::TokenCreated;
use ferry_coordinator::rules::access::{Action, Role, allows};
use ferry_tests::http::request_with;
use ferry_tests::{Fleet, MODEL, model_bytes};

/// Creates an API token with ferryctl (admin) and returns it.
fn token(fleet: &Fleet, name: &str, role: Role, extra: &[&str]) -> Result<String> {
    let mut args = vec!["tokens", "create", name, "--role", role.as_str()];
    args.extend_from_slice(extra);
    let created: TokenCreated = fleet.coordinator.ctl_json(&args)?;
    ensure!(created.token.starts_with("fy_"), "{}", created.token);
    Ok(created.token)
}

#[test]
fn every_role_may_do_exactly_what_the_matrix_says() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    let rollout = serde_json::json!({
        "id": "r1", "model": MODEL, "version": "1.0.0",
        "waves": [{"percent": 100, "bake_secs": 3600}],
    })
    .to_string();
    let alias = r#"{"version": "1.0.0"}"#;
    let key = r#"{"public_key": "ed25519:0000000000000000000000000000000000000000000000000000000000000000", "name": "x"}"#;
    let new_token = r#"{"name": "t", "role": "viewer"}"#;
    let zero = "0".repeat(64);
    // Every changing route (and the admin-only reads), with the action it needs.
    let routes: Vec<(&str, String, Option<&str>, Action)> = vec![
        ("GET", "/api/v1/releases".into(), None, Action::Read),
        ("GET", "/api/v1/fleet/status".into(), None, Action::Read),
        (
            "GET",
            format!("/api/v1/releases/{MODEL}/1.0.0/envelope"),
            None,
            Action::Read,
        ),
        ("PUT", format!("/api/v1/blobs/{zero}"), None, Action::Upload),
        ("POST", "/api/v1/releases".into(), None, Action::Publish),
        (
            "PUT",
            format!("/api/v1/aliases/{MODEL}/staging"),
            Some(alias),
            Action::SetAlias,
        ),
        (
            "PUT",
            format!("/api/v1/aliases/{MODEL}/prod"),
            Some(alias),
            Action::Promote,
        ),
        (
            "POST",
            "/api/v1/rollouts".into(),
            Some(&rollout),
            Action::RunRollout,
        ),
        (
            "POST",
            "/api/v1/rollouts/r1/pause".into(),
            None,
            Action::RunRollout,
        ),
        (
            "POST",
            "/api/v1/rollouts/r1/approve".into(),
            None,
            Action::Approve,
        ),
        (
            "POST",
            "/api/v1/rollouts/r1/rollback".into(),
            None,
            Action::RollBack,
        ),
        ("POST", "/api/v1/keys".into(), Some(key), Action::Administer),
        (
            "GET",
            "/api/v1/devices/enroll-tokens".into(),
            None,
            Action::Devices,
        ),
        (
            "POST",
            "/api/v1/devices/enroll-tokens".into(),
            Some(r#"{"name": "b"}"#),
            Action::Devices,
        ),
        (
            "POST",
            format!("/api/v1/devices/{}/revoke", "0".repeat(20)),
            None,
            Action::Devices,
        ),
        ("GET", "/api/v1/tokens".into(), None, Action::Administer),
        (
            "GET",
            format!("/api/v1/releases/{MODEL}/1.0.0/stage"),
            None,
            Action::Read,
        ),
        (
            "GET",
            "/api/v1/datasets/transactions/impact".into(),
            None,
            Action::Read,
        ),
        ("GET", "/api/v1/gc".into(), None, Action::Read),
        ("POST", "/api/v1/gc".into(), Some("{}"), Action::Administer),
        (
            "POST",
            format!("/api/v1/releases/{MODEL}/1.0.0/stage/staging"),
            Some("{}"),
            Action::Stage,
        ),
        (
            "POST",
            format!("/api/v1/releases/{MODEL}/1.0.0/stage/production"),
            Some("{}"),
            Action::Promote,
        ),
        (
            "POST",
            format!("/api/v1/releases/{MODEL}/1.0.0/approvals"),
            Some("{}"),
            Action::Approve,
        ),
        ("GET", "/api/v1/trust".into(), None, Action::Read),
        (
            "POST",
            "/api/v1/trust/roots".into(),
            None,
            Action::Administer,
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            Some(new_token),
            Action::Administer,
        ),
    ];
    for role in Role::ALL {
        let token = token(&fleet, &format!("{role}-token"), role, &[])?;
        for (method, path, body, action) in &routes {
            let reply = request_with(c.http, method, path, Some(&token), *body)?;
            let refused = reply.status == 403;
            ensure!(
                reply.status != 401,
                "{role} {method} {path}: not authenticated: {}",
                reply.body
            );
            ensure!(
                refused != allows(role, *action),
                "{role} {method} {path} ({action:?}): {} {}",
                reply.status,
                reply.body
            );
        }
    }
    // No token: 401 on every route.
    for (method, path, body, _) in &routes {
        ensure!(request_with(c.http, method, path, None, *body)?.status == 401);
    }
    // Every refusal is in the audit trail, with who.
    let audit = c.get("/api/v1/audit", "admin")?.body;
    ensure!(audit.contains("access.denied"), "no refusal audited");
    ensure!(audit.contains("viewer-token"), "refusals name the token");
    Ok(())
}

#[test]
fn scoped_revoked_and_expired_tokens() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    let artifact = fleet.dir.join("model.bin");
    std::fs::write(&artifact, model_bytes(2, 64 * 1024, true))?;
    let key = fleet.key.to_string_lossy().into_owned();
    let file = artifact.to_string_lossy().into_owned();
    let publish = [
        "publish",
        MODEL,
        "2.0.0",
        file.as_str(),
        "--key",
        key.as_str(),
    ];

    // A publisher scoped to another model may not publish this one; scoped to it, may.
    let elsewhere = token(&fleet, "ci-other", Role::Publisher, &["--model", "ranker"])?;
    let out = c.ctl_output_as(&elsewhere, &publish)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("may not Publish on detector"),
        "{err}"
    );
    let here = token(&fleet, "ci-detector", Role::Publisher, &["--model", MODEL])?;
    let out = c.ctl_output_as(&here, &publish)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alias = r#"{"version": "2.0.0"}"#;
    let put = |token: &str, path: &str| -> Result<u16> {
        Ok(request_with(c.http, "PUT", path, Some(token), Some(alias))?.status)
    };
    ensure!(put(&here, &format!("/api/v1/aliases/{MODEL}/staging"))? == 200);
    ensure!(put(&elsewhere, &format!("/api/v1/aliases/{MODEL}/staging"))? == 403);

    // A flood of refusals is answered in full but cannot flood the audit trail.
    for _ in 0..100 {
        ensure!(put(&elsewhere, &format!("/api/v1/aliases/{MODEL}/staging"))? == 403);
    }
    let audit = c.get("/api/v1/audit?limit=1000", "admin")?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&audit.body).with_context(|| audit.body.clone())?;
    let refusals = entries
        .iter()
        .filter(|e| e["action"] == "access.denied" && e["actor"].as_str() == Some("ci-other"))
        .count();
    let budget = ferry_coordinator::http::denials::AUDITED_PER_MINUTE as usize;
    // 102 refusals: one budget, or two when a minute turns during the burst.
    ensure!(
        (budget..=2 * budget).contains(&refusals),
        "{refusals} refusals audited of 102"
    );

    // Revoked: refused at once. Expired: refused.
    let listed: Vec<ferry_coordinator::api::TokenView> = c.ctl_json(&["tokens", "list"])?;
    let id = &listed
        .iter()
        .find(|t| t.name == "ci-detector")
        .context("token listed")?
        .id;
    ensure!(
        !listed
            .iter()
            .any(|t| format!("{t:?}").contains(&here[20..])),
        "secret listed"
    );
    c.ctl(&["tokens", "revoke", id])?;
    ensure!(put(&here, &format!("/api/v1/aliases/{MODEL}/staging"))? == 401);
    let expired = token(&fleet, "gone", Role::Admin, &["--expires-days", "0"])?;
    ensure!(put(&expired, &format!("/api/v1/aliases/{MODEL}/staging"))? == 401);
    Ok(())
}

#[test]
fn an_oversized_body_is_refused_before_it_is_read_whole() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    let admin = c.token("admin")?;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    for path in ["/api/v1/releases", "/api/v1/rollouts", "/api/v1/tokens"] {
        let reply = request_with(c.http, "POST", path, Some(&admin), Some(&huge))?;
        ensure!(
            reply.status == 413,
            "{path}: {} {}",
            reply.status,
            reply.body
        );
    }
    Ok(())
}

#[test]
fn bootstrap_tokens_admit_from_their_hashes_once_their_files_are_removed() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    let admin = fleet.coordinator.token("admin")?;
    let viewer = fleet.coordinator.token("viewer")?;
    let data = fleet.coordinator.data_dir.clone();
    for which in ["admin", "viewer"] {
        let hash = std::fs::read_to_string(data.join(format!("{which}.token.blake3")))?;
        ensure!(!hash.contains(&admin) && !hash.contains(&viewer));
        std::fs::remove_file(data.join(format!("{which}.token")))?;
    }
    fleet.coordinator.restart()?;
    let c = &fleet.coordinator;
    ensure!(
        !data.join("admin.token").exists() && !data.join("viewer.token").exists(),
        "a restart does not mint new bootstrap tokens"
    );
    let listed = c.ctl_output_as(&admin, &["keys", "list"])?;
    ensure!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let read = request_with(c.http, "GET", "/api/v1/releases", Some(&viewer), None)?;
    ensure!(read.status == 200, "{}", read.body);
    let write = request_with(
        c.http,
        "PUT",
        &format!("/api/v1/aliases/{MODEL}/prod"),
        Some(&viewer),
        Some(r#"{"version": "1.0.0"}"#),
    )?;
    ensure!(write.status == 403, "{} {}", write.status, write.body);
    let stranger = request_with(
        c.http,
        "GET",
        "/api/v1/releases",
        Some(&"0".repeat(64)),
        None,
    )?;
    ensure!(stranger.status == 401, "{}", stranger.status);
    Ok(())
}
