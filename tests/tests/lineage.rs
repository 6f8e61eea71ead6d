//! Lineage queries on a real coordinator with real agents: a release's ancestry and inputs,
//! a dataset's reach down to the devices running what was derived from it, two releases
//! side by side, and a model card, each through ferryctl.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::api::{ImpactView, LineageView};
use ferry_tests::{Fleet, MODEL, model_bytes, wait_until};

fn meta(dataset: Option<&str>, parents: &[&str], accuracy: f64) -> String {
    let mut text = format!(
        "code_commit = \"c{}\"\nparents = {parents:?}\n[metrics]\naccuracy = {accuracy}\n",
        parents.len()
    );
    if let Some(version) = dataset {
        text.push_str(&format!(
            "[dataset]\nid = \"transactions\"\nversion = \"{version}\"\nhash = \"sha256:ab\"\n"
        ));
    }
    text
}

#[test]
fn lineage_impact_diff_and_card() -> Result<()> {
    let fleet = Fleet::start(2, None)?;
    let c = &fleet.coordinator;
    let bytes = |seed| model_bytes(seed, 64 * 1024, true);
    fleet.publish_with_meta("1.0.0", &bytes(1), Some(&meta(Some("2024-01"), &[], 0.90)))?;
    fleet.publish_with_meta("1.1.0", &bytes(2), Some(&meta(None, &["1.0.0"], 0.91)))?;
    fleet.publish_with_meta("2.0.0", &bytes(3), Some(&meta(Some("2024-02"), &[], 0.93)))?;
    fleet.set_prod("1.1.0", "fine-tuned")?;
    // A publish with a reason (spaces and all) says why in the audit trail.
    let file = fleet.dir.join("1.2.0.bin");
    std::fs::write(&file, bytes(4))?;
    c.ctl(&[
        "publish",
        MODEL,
        "1.2.0",
        &file.to_string_lossy(),
        "--key",
        &fleet.key.to_string_lossy(),
        "--reason",
        "nightly & retrained",
    ])?;
    let audit = c.ctl(&["audit", "--action", "publish", "--json"])?;
    ensure!(audit.contains("nightly & retrained"), "{audit}");
    fleet.wait_all_on("1.1.0", Duration::from_secs(60))?;

    let walk: LineageView = c.ctl_json(&["lineage", MODEL, "1.1.0"])?;
    let found: Vec<(String, Option<String>)> = walk
        .ancestors
        .iter()
        .map(|a| (a.version.to_string(), a.dataset.clone()))
        .collect();
    ensure!(
        found
            == [
                ("1.1.0".to_owned(), None),
                (
                    "1.0.0".into(),
                    Some("transactions 2024-01 sha256:ab".into())
                )
            ],
        "{found:?}"
    );

    // Every device runs 1.1.0, fine-tuned from 1.0.0, which was trained on 2024-01.
    let reach = |version: Option<&str>| -> Result<ImpactView> {
        let mut args = vec!["impact", "dataset", "transactions"];
        if let Some(v) = version {
            args.extend(["--version", v]);
        }
        c.ctl_json(&args)
    };
    // The agents' own state shows 1.1.0 before their reports reach the coordinator.
    wait_until(
        "the coordinator to know both devices run 1.1.0",
        Duration::from_secs(30),
        || Ok(reach(None)?.devices == 2),
    )?;
    let all = reach(None)?;
    let versions: Vec<String> = all.releases.iter().map(|r| r.version.to_string()).collect();
    ensure!(versions == ["1.0.0", "1.1.0", "2.0.0"], "{versions:?}");
    ensure!(all.devices == 2, "{}", all.devices);
    let january = reach(Some("2024-01"))?;
    ensure!(january.devices == 2 && january.releases.len() == 2);
    ensure!(january.releases[1].how == "derived from 1.0.0");
    let february = reach(Some("2024-02"))?;
    ensure!(february.devices == 0 && february.releases.len() == 1);
    let text = c.ctl(&["impact", "dataset", "transactions"])?;
    ensure!(text.contains("2 device(s) run one of them"), "{text}");

    let diff = c.ctl(&["diff", MODEL, "1.0.0", "1.1.0"])?;
    ensure!(
        diff.lines()
            .any(|l| l.contains("metrics.accuracy") && l.contains("0.91 (+0.01)")),
        "{diff}"
    );
    ensure!(diff.lines().all(|l| l.chars().count() <= 80), "{diff}");
    ensure!(!diff.contains("owner"), "only what differs: {diff}");

    let card = c.ctl(&["card", MODEL, "1.1.0"])?;
    for line in [
        "# detector 1.1.0",
        "- Derived from: 1.0.0",
        "| Devices running it | 2 |",
        "| Aliases | prod |",
        "| accuracy | 0.91 |",
    ] {
        ensure!(card.contains(line), "{line}\n{card}");
    }
    Ok(())
}
