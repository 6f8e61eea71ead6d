//! The admin API's permission matrix on a real coordinator: one API token per role, every
//! route the router declares tried with each, a refusal (403) exactly where the role does not
//! allow the action; model scope; revoked and expired tokens; refusals in the audit trail.

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::TokenCreated;
use ferry_coordinator::http::route::Route;
use ferry_coordinator::http::router::routes;
use ferry_coordinator::rules::access::{Action, TokenRole, allows};
use ferry_tests::http::request_with;
use ferry_tests::{Fleet, MODEL, model_bytes};

/// Creates an API token with ferryctl (admin) and returns it.
fn token(fleet: &Fleet, name: &str, role: TokenRole, extra: &[&str]) -> Result<String> {
    let mut args = vec!["tokens", "create", name, "--role", role.as_str()];
    args.extend_from_slice(extra);
    let created: TokenCreated = fleet.coordinator.ctl_json(&args)?;
    ensure!(created.token.starts_with("fy_"), "{}", created.token);
    Ok(created.token)
}

/// A value for each path parameter the routes use; a route with a parameter not listed here
/// fails the test until it gets one.
fn sample(param: &str) -> Option<String> {
    Some(match param {
        "name" | "model" => MODEL.to_owned(),
        "version" | "a" | "b" => "1.0.0".to_owned(),
        "hash" => "0".repeat(64),
        "id" => "r1".to_owned(),
        "alias" | "stage" => "staging".to_owned(),
        "action" => "pause".to_owned(),
        _ => return None,
    })
}

/// The requests that try `route`'s rule every way it can go: each value listed as picking
/// the action, and a sample value that keeps the route's own action.
fn requests(route: &Route) -> Result<Vec<(String, Action)>> {
    let path = |picked: Option<(&str, &str)>| -> Result<String> {
        let mut out = String::from("/api/v1");
        for segment in route.path.split('/').skip(1) {
            out.push('/');
            match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(param) => match picked.filter(|(p, _)| *p == param) {
                    Some((_, value)) => out.push_str(value),
                    None => out.push_str(&sample(param).with_context(|| {
                        format!("no sample value for {{{param}}} in {}", route.path)
                    })?),
                },
                None => out.push_str(segment),
            }
        }
        Ok(out)
    };
    let mut requests = vec![(path(None)?, route.rule.action)];
    if let Some((param, cases)) = route.rule.picked_by {
        for (value, action) in cases {
            requests.push((path(Some((param, value)))?, *action));
        }
    }
    Ok(requests)
}

/// Every route the coordinator declares, tried with a token of each role: refused (403)
/// exactly where the role does not allow the action its rule names. The routes come from the
/// router's own table, so a new route is covered without touching this test.
#[test]
fn every_role_may_do_exactly_what_the_matrix_says() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "base")?;
    let mut tried: Vec<(String, String, Action)> = Vec::new();
    for route in routes() {
        for (path, action) in requests(&route)? {
            tried.push((route.method.to_string(), path, action));
        }
    }
    ensure!(tried.len() > 30, "only {} routes declared", tried.len());
    // The changing routes get a body that parses as JSON and describes nothing: a caller the
    // rule allows gets past the guard and is answered by the handler (4xx), never 403.
    let body = |method: &str| (method != "GET").then_some("{}");
    for role in TokenRole::ALL {
        let token = token(&fleet, &format!("{role}-token"), role, &[])?;
        for (method, path, action) in &tried {
            let reply = request_with(c.http, method, path, Some(&token), body(method))?;
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
    for (method, path, _) in &tried {
        let reply = request_with(c.http, method, path, None, body(method))?;
        ensure!(reply.status == 401, "{method} {path}: {}", reply.status);
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
    let elsewhere = token(
        &fleet,
        "ci-other",
        TokenRole::Publisher,
        &["--model", "ranker"],
    )?;
    let out = c.ctl_output_as(&elsewhere, &publish)?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("may not Publish on detector"),
        "{err}"
    );
    let here = token(
        &fleet,
        "ci-detector",
        TokenRole::Publisher,
        &["--model", MODEL],
    )?;
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
    let budget = ferry_coordinator::http::refusal_budget::AUDITED_PER_MINUTE as usize;
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
    let expired = token(&fleet, "gone", TokenRole::Admin, &["--expires-days", "0"])?;
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
