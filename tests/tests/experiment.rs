//! A/B experiments on real processes: a challenger served to a share of the fleet while the
//! rest stays on the champion, a readout from what the application reports through the
//! agents' metrics sockets (errors, latency, a score), a decision recorded with who and why —
//! promote moves everyone to the challenger, reject returns its devices — and the split's
//! rollout cannot be approved around the decision.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{ExperimentPhase, ExperimentView};
use ferry_tests::{Fleet, model_bytes, wait_until};

const T: Duration = Duration::from_secs(60);

/// The application: 1.0.0 and 3.0.0 fail 6 % of requests and score 0.5–0.7; 2.0.0 fails 1 %
/// and scores 0.6–0.8.
fn serve(fleet: &Fleet) -> Result<()> {
    fleet.serve(100, |version, i| {
        let (error_pct, low) = if version == "2.0.0" {
            (1, 0.6)
        } else {
            (6, 0.5)
        };
        let outcome = if i % 100 < error_pct { "error" } else { "ok" };
        format!(
            "{outcome} {} score={:.4}",
            8 + i % 7,
            low + 0.2 * (i as f64 + 0.5) / 100.0
        )
    })
}

fn status(fleet: &Fleet, id: &str) -> Result<ExperimentView> {
    fleet.coordinator.ctl_json(&["experiment", "status", id])
}

#[test]
fn a_challenger_is_compared_with_the_champion_then_promoted_or_rejected() -> Result<()> {
    let fleet = Fleet::start(4, None)?;
    let c = &fleet.coordinator;
    fleet.ship("1.0.0", &model_bytes(1, 64 * 1024, true), T)?;
    fleet.publish("2.0.0", &model_bytes(2, 64 * 1024, true))?;
    let (id, challengers) = fleet.id_splitting("ab", 50)?;
    c.ctl(&[
        "experiment",
        "create",
        "detector",
        "2.0.0",
        "--id",
        &id,
        "--percent",
        "50",
        "--duration-secs",
        "3",
        "--reason",
        "fewer errors?",
    ])?;
    for (i, agent) in fleet.agents.iter().enumerate() {
        let want = if challengers.contains(&i) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        wait_until(&format!("agent {i} on {want}"), T, || {
            Ok(agent.current().map(|v| v.to_string()).as_deref() == Some(want))
        })?;
    }
    let mut view = status(&fleet, &id)?;
    wait_until(
        "the experiment to be ready with traffic on both arms",
        T,
        || {
            serve(&fleet)?;
            view = status(&fleet, &id)?;
            Ok(view.phase == ExperimentPhase::Ready
                && view.champion.requests >= 500
                && view.challenger.requests >= 500)
        },
    )?;
    ensure!(
        view.challenger.devices == challengers.len() as u64,
        "{view:?}"
    );
    let row = |metric: &str| {
        view.readout
            .iter()
            .find(|r| r.metric == metric)
            .with_context(|| format!("no {metric} row: {:?}", view.readout))
    };
    let errors = row("error_rate")?;
    ensure!(
        errors.difference.is_some_and(|d| (d + 0.05).abs() < 0.01),
        "6 % → 1 %: {errors:?}"
    );
    let (lo, hi) = errors.interval.context("an interval")?;
    ensure!(lo < hi && hi < 0.0 && errors.significant, "{errors:?}");
    let score = row("mean score")?;
    ensure!(
        score.difference.is_some_and(|d| (d - 0.1).abs() < 0.02) && score.significant,
        "{score:?}"
    );
    ensure!(
        row("drift score (psi)")?
            .difference
            .is_some_and(|d| d > 0.3)
    );
    let table = c.ctl(&["experiment", "status", &id])?;
    ensure!(
        table.contains("95 % INTERVAL") && table.contains("significant"),
        "{table}"
    );

    // The split's second wave waits for the decision, not for a rollout approval.
    let (refused, _) = c.ctl_failing(&["rollout", "approve", &id])?;
    ensure!(refused.contains("decide it"), "{refused}");

    let decided: ExperimentView = c.ctl_json(&[
        "experiment",
        "decide",
        &id,
        "promote",
        "--reason",
        "5 points fewer errors",
    ])?;
    ensure!(decided.phase == ExperimentPhase::Decided, "{decided:?}");
    ensure!(
        decided
            .outcome
            .as_deref()
            .is_some_and(|o| o.contains("prod -> 2.0.0")),
        "{decided:?}"
    );
    fleet.wait_all_on("2.0.0", T)?;
    ensure!(fleet.prod()?.to_string() == "2.0.0");
    let (again, _) = c.ctl_failing(&["experiment", "decide", &id, "reject", "--reason", "late"])?;
    ensure!(again.contains("Decided"), "{again}");
    let audit = c.ctl(&["audit", "--action", "experiment.decide", "--json"])?;
    ensure!(audit.contains("5 points fewer errors"), "{audit}");

    // A worse challenger is rejected: its devices return to the champion, prod stays.
    fleet.publish("3.0.0", &model_bytes(3, 64 * 1024, true))?;
    let (id, challengers) = fleet.id_splitting("ab-again", 50)?;
    c.ctl(&[
        "experiment",
        "create",
        "detector",
        "3.0.0",
        "--id",
        &id,
        "--duration-secs",
        "600",
        "--reason",
        "retrained",
    ])?;
    let first = challengers[0];
    wait_until("a challenger device on 3.0.0", T, || {
        Ok(fleet.agents[first]
            .current()
            .map(|v| v.to_string())
            .as_deref()
            == Some("3.0.0"))
    })?;
    let (early, _) = c.ctl_failing(&["experiment", "decide", &id, "promote", "--reason", "now"])?;
    ensure!(early.contains("--early"), "{early}");
    c.ctl(&[
        "experiment",
        "decide",
        &id,
        "reject",
        "--reason",
        "more errors",
    ])?;
    fleet.wait_all_on("2.0.0", T)?;
    ensure!(fleet.prod()?.to_string() == "2.0.0");
    ensure!(status(&fleet, &id)?.phase == ExperimentPhase::Decided);
    Ok(())
}
