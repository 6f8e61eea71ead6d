//! The release lifecycle on a real coordinator whose configuration gates staging and
//! production: moves refused with each failing check named, approvals by approver tokens
//! only, a regression against the baseline refused, promotion moving `prod` (or starting a
//! rollout) and deprecating what it replaces, `prod` kept from unpromoted releases but free
//! to roll back, and every step in the audit trail. A real agent follows `prod` throughout.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::TokenRole;
use ferry_coordinator::api::{ReleaseView, StageView, TokenCreated, TransitionView};
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes};

const WAIT: Duration = Duration::from_secs(60);

const POLICIES: &str = r#"
[stages.staging]
require = ["owner", "code_commit"]

[stages.production]
require = ["owner", "dataset"]
metrics = ["accuracy >= 0.85", "accuracy >= baseline - 0.01"]
schema = true
approvals = 2
on_promote = "alias"
"#;

/// Release metadata with this accuracy.
fn meta(accuracy: f64) -> String {
    format!(
        r#"
code_commit = "9f2c1e7"
owner = "ml-fraud"
input_schema = "tx-features/v3"
output_schema = "fraud-score/v1"
[dataset]
id = "transactions"
version = "2026-11"
[metrics]
accuracy = {accuracy}
"#
    )
}

/// Runs ferryctl with `token`: (succeeded, stdout, stderr).
fn ctl_as(fleet: &Fleet, token: &str, args: &[&str]) -> Result<(bool, String, String)> {
    let out = fleet.coordinator.ctl_output_as(token, args)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn releases_climb_the_lifecycle_only_past_their_checks() -> Result<()> {
    let mut fleet = Fleet::start_configured(0, None, Some(POLICIES))?;
    fleet.add_agent(AgentSpec::named("device"))?;
    let operator = fleet
        .coordinator
        .create_token("olga", TokenRole::Operator)?;
    let alice = fleet
        .coordinator
        .create_token("alice", TokenRole::Approver)?;
    let bob = fleet.coordinator.create_token("bob", TokenRole::Approver)?;
    let c = &fleet.coordinator;
    fleet.publish_with_meta("1.0.0", &model_bytes(1, 64 * 1024, true), Some(&meta(0.90)))?;

    // Fresh releases are in development; prod is gated, and staging is not skipped.
    let shown: ReleaseView = c.ctl_json(&["releases", "show", MODEL, "1.0.0"])?;
    ensure!(shown.stage.as_str() == "development");
    let (err, _) = c.ctl_failing(&["alias", "set", MODEL, "prod", "1.0.0"])?;
    ensure!(
        err.contains("in development") && err.contains("ferryctl stage"),
        "{err}"
    );
    let (err, _) = c.ctl_failing(&["stage", MODEL, "1.0.0", "production"])?;
    ensure!(err.contains("may move to staging"), "{err}");
    let out = c.ctl(&[
        "stage",
        MODEL,
        "1.0.0",
        "staging",
        "--reason",
        "offline eval done",
    ])?;
    ensure!(out.contains("development -> staging"), "{out}");

    // A dry run shows every check; only the approvals are missing.
    let (ok, out, err) = ctl_as(
        &fleet,
        &operator,
        &["stage", MODEL, "1.0.0", "production", "--check"],
    )?;
    ensure!(!ok && err.contains("1 check(s) failed"), "{out}{err}");
    for line in [
        "owner present",
        "accuracy >= 0.85",
        "schema declared and valid",
    ] {
        ensure!(
            out.lines().any(|l| l.contains(line) && l.contains("pass")),
            "{line}: {out}"
        );
    }
    ensure!(
        out.lines()
            .any(|l| l.contains("2 approval(s)") && l.contains("FAIL")),
        "{out}"
    );
    // Approvals: approver tokens only (an operator may not), one approver counts once.
    let (ok, _, err) = ctl_as(&fleet, &operator, &["approve", MODEL, "1.0.0"])?;
    ensure!(!ok && err.contains("403"), "{err}");
    for approver in [&alice, &alice, &bob] {
        let (ok, _, err) = ctl_as(
            &fleet,
            approver,
            &["approve", MODEL, "1.0.0", "--reason", "metrics fine"],
        )?;
        ensure!(ok, "{err}");
    }
    let stage: StageView = c.ctl_json(&["stage", MODEL, "1.0.0"])?;
    ensure!(stage.approvals.len() == 2, "{:?}", stage.approvals);
    // Approvals count people, not tokens: alice's second token (her laptop's) adds nothing.
    let laptop: TokenCreated = c.ctl_json(&[
        "tokens",
        "create",
        "alice-laptop",
        "--role",
        "approver",
        "--owner",
        "alice",
    ])?;
    ensure!(laptop.view.owner == "alice");
    let (ok, _, err) = ctl_as(&fleet, &laptop.token, &["approve", MODEL, "1.0.0"])?;
    ensure!(ok, "{err}");
    let stage: StageView = c.ctl_json(&["stage", MODEL, "1.0.0"])?;
    ensure!(
        stage.approvals.len() == 2,
        "one person's two tokens approve once: {:?}",
        stage.approvals
    );
    // An approver may not promote.
    let (ok, _, err) = ctl_as(&fleet, &alice, &["stage", MODEL, "1.0.0", "production"])?;
    ensure!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = ctl_as(
        &fleet,
        &operator,
        &["stage", MODEL, "1.0.0", "production", "--reason", "first"],
    )?;
    ensure!(
        ok && out.contains("`prod` now points at 1.0.0"),
        "{out}{err}"
    );
    fleet.wait_all_on("1.0.0", WAIT)?;

    // 1.1.0 regresses by more than 0.01 against 1.0.0: refused, the failing check named.
    fleet.publish_with_meta("1.1.0", &model_bytes(2, 64 * 1024, true), Some(&meta(0.88)))?;
    c.ctl(&["stage", MODEL, "1.1.0", "staging"])?;
    for approver in [&alice, &bob] {
        ctl_as(&fleet, approver, &["approve", MODEL, "1.1.0"])?;
    }
    let (ok, out, err) = ctl_as(&fleet, &operator, &["stage", MODEL, "1.1.0", "production"])?;
    ensure!(
        !ok && err.contains("accuracy >= baseline - 0.01 (0.88 >= 0.89")
            && err.contains("baseline 1.0.0: 0.9"),
        "{out}{err}"
    );
    let refused: TransitionView = serde_json::from_str(
        &ctl_as(
            &fleet,
            &operator,
            &["stage", MODEL, "1.1.0", "production", "--json"],
        )?
        .1,
    )?;
    ensure!(!refused.moved && refused.checks.iter().filter(|c| !c.passed).count() == 1);

    // 1.2.0 is better: promoted, 1.0.0 deprecated, the device moves.
    fleet.publish_with_meta("1.2.0", &model_bytes(3, 64 * 1024, true), Some(&meta(0.92)))?;
    c.ctl(&["stage", MODEL, "1.2.0", "staging"])?;
    for approver in [&alice, &bob] {
        ctl_as(&fleet, approver, &["approve", MODEL, "1.2.0"])?;
    }
    let (ok, out, err) = ctl_as(&fleet, &operator, &["stage", MODEL, "1.2.0", "production"])?;
    ensure!(
        ok && out.contains("1.0.0: production -> deprecated"),
        "{out}{err}"
    );
    fleet.wait_all_on("1.2.0", WAIT)?;

    // prod may go back to a deprecated release (a rollback), never to an unpromoted one.
    let (err, _) = c.ctl_failing(&["alias", "set", MODEL, "prod", "1.1.0"])?;
    ensure!(err.contains("in staging"), "{err}");
    c.ctl(&[
        "alias",
        "set",
        MODEL,
        "prod",
        "1.0.0",
        "--reason",
        "roll back",
    ])?;
    fleet.wait_all_on("1.0.0", WAIT)?;

    // Everything is in the history and the audit trail, with who approved.
    let history: StageView = c.ctl_json(&["stage", MODEL, "1.0.0"])?;
    let moves: Vec<String> = history
        .history
        .iter()
        .map(|m| format!("{}>{}", m.from, m.to))
        .collect();
    ensure!(
        moves
            == [
                "development>staging",
                "staging>production",
                "production>deprecated"
            ],
        "{moves:?}"
    );
    ensure!(history.history[1].approvers == ["alice", "bob"]);
    let audit = c.get("/api/v1/audit?limit=1000", "admin")?.body;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit).context("audit")?;
    let promotion = entries
        .iter()
        .find(|e| {
            e["action"] == "stage.move"
                && e["subject"] == "detector 1.2.0"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("-> production"))
        })
        .context("the promotion is audited")?;
    ensure!(
        promotion["detail"]
            .as_str()
            .is_some_and(|d| d.contains("approved by alice, bob")),
        "{promotion}"
    );
    ensure!(
        entries
            .iter()
            .filter(|e| e["action"] == "stage.approve")
            .count()
            >= 7
    );
    let listed = c.ctl(&["releases", "list"])?;
    ensure!(
        listed
            .lines()
            .any(|l| l.contains("1.2.0") && l.contains("production")),
        "{listed}"
    );
    Ok(())
}

#[test]
fn promotion_can_start_a_rollout_that_moves_prod_when_it_completes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("production-rollout.json");
    std::fs::write(
        &plan,
        r#"{"waves": [{"percent": 100, "bake_secs": 0,
             "gates": [{"kind": "InstallFailures", "threshold": 0, "min_samples": 1}]}]}"#,
    )?;
    let config = format!(
        "[stages.production]\non_promote = \"rollout\"\nrollout_plan = \"{}\"\n",
        plan.display()
    );
    let mut fleet = Fleet::start_configured(0, None, Some(&config))?;
    fleet.add_agent(AgentSpec::named("device"))?;
    let c = &fleet.coordinator;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    c.ctl(&["stage", MODEL, "1.0.0", "staging"])?;
    let out = c.ctl(&["stage", MODEL, "1.0.0", "production"])?;
    ensure!(out.contains("rollout detector-1.0.0 started"), "{out}");
    fleet.wait_all_on("1.0.0", WAIT)?;
    ferry_tests::wait_until("the rollout to move prod", WAIT, || {
        Ok(c.ctl(&["alias", "list"])?
            .lines()
            .any(|l| l.contains(" prod ") && l.contains("1.0.0")))
    })?;
    Ok(())
}

/// Deprecated releases move to archived by themselves after the configured wait (a few
/// seconds here), recorded as the lifecycle engine's; one `prod` points at stays.
const AUTOMATIC: &str = r#"
[stages.archived]
after_days = { deprecated = 0.00004 }
"#;

#[test]
fn deprecated_releases_are_archived_by_the_lifecycle_after_their_wait_unless_served() -> Result<()>
{
    let fleet = Fleet::start_configured(0, None, Some(AUTOMATIC))?;
    let c = &fleet.coordinator;
    let stage_of = |version: &str| -> Result<StageView> { c.ctl_json(&["stage", MODEL, version]) };
    for (i, version) in ["1.0.0", "2.0.0", "3.0.0"].into_iter().enumerate() {
        fleet.publish(version, &model_bytes(i as u64 + 1, 4096, true))?;
        c.ctl(&["stage", MODEL, version, "staging"])?;
        c.ctl(&["stage", MODEL, version, "production"])?;
        if version == "2.0.0" {
            // 1.0.0 was deprecated by 2.0.0's promotion just now.
            ensure!(stage_of("1.0.0")?.stage.as_str() == "deprecated");
        }
    }
    // 3.0.0's promotion deprecated 2.0.0; prod is rolled back to it: it serves, so it stays.
    c.ctl(&[
        "alias", "set", MODEL, "prod", "2.0.0", "--reason", "rollback",
    ])?;
    ferry_tests::wait_until("1.0.0 to be archived by the lifecycle", WAIT, || {
        Ok(stage_of("1.0.0")?.stage.as_str() == "archived")
    })?;
    let moved = stage_of("1.0.0")?;
    let last = moved.history.last().context("no history")?;
    ensure!(last.by == "lifecycle-engine", "{last:?}");
    ensure!(
        last.reason
            .as_deref()
            .is_some_and(|r| r.contains("after_days.deprecated")),
        "{last:?}"
    );
    // Well past 2.0.0's wait too (it was deprecated after 1.0.0): still deprecated.
    std::thread::sleep(Duration::from_secs(8));
    ensure!(
        stage_of("2.0.0")?.stage.as_str() == "deprecated",
        "prod points at it"
    );
    let audit = c.ctl(&["audit", "--json"])?;
    ensure!(
        audit.contains("lifecycle-engine"),
        "the move is audited as the engine's"
    );
    Ok(())
}
