//! One agent following several models (`[[models]]`), on real processes: each model has its
//! own slots, holds and health checks in one session; a release of one that fails its health
//! check rolls that model back and leaves the other alone; a local rollback names its model.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_tests::{AgentSpec, Fleet, MODEL, TOKENIZER, wait_until};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn one_agent_keeps_two_models_each_with_its_own_slots_and_rollbacks() -> Result<()> {
    let fleet = Fleet::two_models_at_one("")?;
    let c = &fleet.coordinator;
    let agent = &fleet.agents[0];
    wait_until("both models on 1.0.0", WAIT, || {
        Ok(agent.runs(MODEL, "1.0.0") && agent.runs(TOKENIZER, "1.0.0"))
    })?;
    // The coordinator sees one device following both.
    let devices = c.devices()?;
    ensure!(
        devices.len() == 1 && devices[0].follows.len() == 2,
        "{devices:?}"
    );

    // The tokenizer's 2.0.0 fails its health check: the tokenizer goes back, the detector
    // moves on to its own 2.0.0.
    fleet.publish_model(TOKENIZER, "2.0.0", false)?;
    fleet.publish_model(MODEL, "2.0.0", true)?;
    c.ctl(&["alias", "set", TOKENIZER, "prod", "2.0.0"])?;
    c.ctl(&["alias", "set", MODEL, "prod", "2.0.0"])?;
    // Confirmed, not merely switched: a local rollback waits for a running health check.
    wait_until("the detector on 2.0.0, confirmed", WAIT, || {
        Ok(agent.runs(MODEL, "2.0.0")
            && agent
                .status()?
                .models
                .iter()
                .any(|m| m.model == MODEL && m.in_probation.is_none()))
    })?;
    wait_until(
        "the tokenizer's 2.0.0 held after its failed check",
        WAIT,
        || {
            Ok(agent.status()?.models.iter().any(|m| {
                m.model == TOKENIZER && m.holds.iter().any(|h| h.version.to_string() == "2.0.0")
            }))
        },
    )?;
    ensure!(agent.runs(TOKENIZER, "1.0.0"));

    // A local rollback names its model; the other stays.
    let out = agent.rollback_model(MODEL)?;
    ensure!(
        out.contains("rolled back detector: 2.0.0 -> 1.0.0"),
        "{out}"
    );
    ensure!(agent.runs(MODEL, "1.0.0"));
    ensure!(agent.runs(TOKENIZER, "1.0.0"));
    let refused = agent.rollback_model("nothing-here");
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("does not follow nothing-here")),
        "{refused:?}"
    );
    Ok(())
}

#[test]
fn the_metrics_socket_counts_each_report_for_the_model_it_names() -> Result<()> {
    let fleet = Fleet::two_models_at_one("")?;
    let c = &fleet.coordinator;
    fleet.publish_model(TOKENIZER, "1.1.0", true)?;
    // A tokenizer rollout whose error-rate gate waits for a thousand requests: its sample
    // count shows what the device reported for the tokenizer.
    let plan = serde_json::json!({
        "id": "tok-1.1.0",
        "model": TOKENIZER,
        "version": "1.1.0",
        "waves": [{"percent": 100.0, "bake_secs": 0, "gates": [
            {"kind": "ErrorRateIncrease", "threshold": 0.5, "min_samples": 1000},
        ]}],
    });
    let path = fleet.dir.join("tok.json");
    std::fs::write(&path, serde_json::to_vec(&plan)?)?;
    c.ctl(&["rollout", "create", "--plan", &path.to_string_lossy()])?;
    let agent = &fleet.agents[0];
    wait_until("the tokenizer on 1.1.0", WAIT, || {
        Ok(agent.runs(TOKENIZER, "1.1.0"))
    })?;
    for i in 0..60 {
        // Forty for the tokenizer, twenty for the detector (no name: the first model).
        agent.tell(if i % 3 == 2 {
            "ok 5"
        } else {
            "@tokenizer ok 5"
        })?;
    }
    wait_until(
        "the tokenizer's gate to count its forty requests",
        WAIT,
        || {
            let view = fleet.rollout("tok-1.1.0")?;
            Ok(view
                .gates
                .iter()
                .any(|g| format!("{:?}", g.gate.kind) == "ErrorRateIncrease" && g.samples == 40))
        },
    )?;
    // `/metrics` counts them per model and version too.
    wait_until("/metrics to count the tokenizer's requests", WAIT, || {
        let metrics = c.get("/metrics", "viewer")?.body;
        Ok(
            metrics.contains("ferry_model_requests{model=\"tokenizer\",version=\"1.1.0\"} 40")
                && metrics
                    .contains("ferry_model_requests{model=\"detector\",version=\"1.0.0\"} 20"),
        )
    })?;
    // The rollout's series name its model, and its phase is a state set.
    let metrics = c.get("/metrics", "viewer")?.body;
    for line in [
        "ferry_rollout_gate_samples{rollout=\"tok-1.1.0\",model=\"tokenizer\",gate=\"ErrorRateIncrease\"} 40",
        "ferry_rollout_phase{rollout=\"tok-1.1.0\",model=\"tokenizer\",phase=\"running\"} 1",
        "ferry_rollout_phase{rollout=\"tok-1.1.0\",model=\"tokenizer\",phase=\"completed\"} 0",
    ] {
        ensure!(metrics.contains(line), "{line} in\n{metrics}");
    }
    Ok(())
}

#[test]
fn each_model_may_declare_the_schemas_its_application_speaks() -> Result<()> {
    // The application reads the tokenizer's output as tok-out/v1; nothing device-wide.
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec {
        models: vec![
            MODEL.into(),
            format!("{TOKENIZER}\n[models.application]\nreads = \"tok-out/v1\""),
        ],
        ..AgentSpec::named("edge")
    })?;
    let c = &fleet.coordinator;
    for model in [MODEL, TOKENIZER] {
        fleet.publish_model(model, "1.0.0", true)?;
        c.ctl(&["alias", "set", model, "prod", "1.0.0"])?;
    }
    let agent = &fleet.agents[0];
    wait_until(
        "the device to announce the tokenizer's schema",
        WAIT,
        || {
            Ok(c.devices()?.first().is_some_and(|d| {
                d.labels.get("app.reads@tokenizer").map(String::as_str) == Some("tok-out/v1")
            }))
        },
    )?;
    let produces = Some("output_schema = \"tok-out/v2\"\n");
    fleet.publish_model_with_meta(TOKENIZER, "2.0.0", true, produces)?;
    fleet.publish_model_with_meta(MODEL, "2.0.0", true, produces)?;
    // The tokenizer's new output is not what the application reads from it: refused.
    let (err, _) = c.ctl_failing(&["alias", "set", TOKENIZER, "prod", "2.0.0"])?;
    ensure!(
        err.contains("do not fit 2.0.0")
            && err.contains("reads tok-out/v1; 2.0.0 produces tok-out/v2"),
        "{err}"
    );
    // The same schema from the detector is nobody's concern: the application declared none.
    c.ctl(&["alias", "set", MODEL, "prod", "2.0.0"])?;
    wait_until("the detector on 2.0.0", WAIT, || {
        Ok(agent.runs(MODEL, "2.0.0"))
    })?;
    ensure!(agent.runs(TOKENIZER, "1.0.0"));
    Ok(())
}
