//! The lifecycle's rules, each on plain data.

use ferry_shared::Release;
use ferry_shared::manifest::DatasetRef;

use super::*;

fn release(version: &str, metrics: &[(&str, f64)]) -> Release {
    let mut release = ferry_shared::testutil::release("detector", version);
    release.metadata.metrics = metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    release
}

fn policy(toml: &str) -> StagePolicy {
    toml::from_str(toml).unwrap()
}

fn approval(by: &str) -> Approval {
    Approval {
        by: by.into(),
        at: 1,
        reason: None,
    }
}

#[test]
fn stages_move_only_along_the_lifecycle() {
    use Stage::*;
    assert!(Development.can_move_to(Staging));
    assert!(Staging.can_move_to(Production));
    assert!(Production.can_move_to(Deprecated));
    assert!(Deprecated.can_move_to(Production), "brought back");
    assert!(Archived.can_move_to(Deprecated), "restored");
    assert!(
        !Development.can_move_to(Production),
        "staging is not skipped"
    );
    assert!(!Archived.can_move_to(Production));
    assert!(!Rejected.can_move_to(Production));
    for stage in Stage::ALL {
        assert!(!stage.can_move_to(stage), "{stage} to itself");
        assert_eq!(stage.as_str().parse::<Stage>().unwrap(), stage);
    }
    assert!(Production.may_serve() && Deprecated.may_serve() && !Staging.may_serve());
    assert!("prod".parse::<Stage>().unwrap_err().contains("production"));
}

#[test]
fn metric_rules_parse_and_print_back() {
    for (text, shown) in [
        ("accuracy >= 0.85", "accuracy >= 0.85"),
        ("accuracy>=baseline-0.01", "accuracy >= baseline - 0.01"),
        ("p95_latency_ms <= 50", "p95_latency_ms <= 50"),
        ("f1 > baseline", "f1 > baseline"),
        ("loss < baseline + 0.5", "loss < baseline + 0.5"),
        ("drift != 1", "drift != 1"),
    ] {
        let rule: MetricRule = text.parse().unwrap();
        assert_eq!(rule.to_string(), shown);
    }
    for bad in [
        "accuracy",
        ">= 0.85",
        "accuracy >= high",
        "accuracy >= NaN",
        "accuracy >= baseline * 2",
        "acc uracy >= 1",
    ] {
        let err = bad.parse::<MetricRule>().unwrap_err();
        assert!(err.0.contains(bad), "{err}");
    }
}

#[test]
fn metric_thresholds_and_regressions_against_the_baseline() {
    let p = policy(
        r#"metrics = ["accuracy >= 0.85", "accuracy >= baseline - 0.01", "p95_latency_ms <= 50"]"#,
    );
    let base = release("1.0.0", &[("accuracy", 0.93), ("p95_latency_ms", 40.0)]);
    let good = release("1.1.0", &[("accuracy", 0.925), ("p95_latency_ms", 42.0)]);
    let worse = release("1.2.0", &[("accuracy", 0.90), ("p95_latency_ms", 60.0)]);
    let judge = |r: &Release, baseline| {
        evaluate(
            &p,
            Evidence {
                release: r,
                baseline,
                approvals: &[],
            },
        )
    };
    assert!(judge(&good, Some(&base)).iter().all(|c| c.passed));
    let checks = judge(&worse, Some(&base));
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        ["accuracy >= baseline - 0.01", "p95_latency_ms <= 50"]
    );
    assert!(
        checks[1].detail.contains("baseline 1.0.0: 0.93"),
        "{}",
        checks[1].detail
    );
    // The first production release has nothing to regress against.
    let first = judge(&worse, None);
    assert!(first[1].passed && first[1].detail.contains("no release in production"));
    // A release without the metric fails the rule.
    let bare = release("1.3.0", &[]);
    let checks = judge(&bare, Some(&base));
    assert!(!checks[0].passed && checks[0].detail.contains("reports no accuracy"));
}

#[test]
fn required_metadata_schema_and_approvals() {
    let p = policy(
        r#"
        require = ["owner", "dataset", "dataset.hash"]
        schema = true
        approvals = 2
        "#,
    );
    let mut r = release("1.0.0", &[]);
    r.metadata.owner = Some("ml-fraud".into());
    r.metadata.dataset = Some(DatasetRef {
        id: "tx".into(),
        version: "2024-01".into(),
        hash: None,
    });
    r.metadata.input_schema = Some("tx-features/v3".into());
    r.metadata.output_schema = Some("fraud score".into());
    let approvals = [approval("alice"), approval("alice")];
    let checks = evaluate(
        &p,
        Evidence {
            release: &r,
            baseline: None,
            approvals: &approvals,
        },
    );
    let by_name = |n: &str| checks.iter().find(|c| c.name == n).unwrap();
    assert!(by_name("owner present").passed);
    assert_eq!(by_name("dataset present").detail, "tx 2024-01");
    assert!(!by_name("dataset.hash present").passed);
    let schema = by_name("schema declared and valid");
    assert!(!schema.passed && schema.detail.contains("fraud score"));
    let approved = by_name("2 approval(s)");
    assert!(!approved.passed, "one approver twice counts once");
    assert_eq!(approved.detail, "1 by alice");
    let two = [approval("alice"), approval("bob")];
    let checks = evaluate(
        &p,
        Evidence {
            release: &r,
            baseline: None,
            approvals: &two,
        },
    );
    assert!(checks.iter().any(|c| c.name == "2 approval(s)" && c.passed));
}

#[test]
fn policies_refuse_unknown_fields_and_misplaced_promotion_actions() {
    assert!(
        toml::from_str::<StagePolicy>(r#"require = ["ownr"]"#)
            .unwrap_err()
            .to_string()
            .contains("ownr")
    );
    assert!(toml::from_str::<StagePolicy>("aprovals = 2").is_err());
    let alias = policy(r#"on_promote = "alias""#);
    assert!(alias.validate(Stage::Production).is_ok());
    assert!(alias.validate(Stage::Staging).is_err());
    let rollout = policy(r#"on_promote = "rollout""#);
    assert!(rollout.validate(Stage::Production).is_err(), "no plan");
}

/// A release imported from MLflow lists its datasets with their roles and has no `dataset`:
/// `require = ["dataset", "dataset.hash"]` refused it though it names its training data.
#[test]
fn a_required_dataset_is_found_in_the_list_of_datasets_by_its_training_role() {
    use ferry_shared::manifest::DatasetUse;
    let policy = policy("require = [\"dataset\", \"dataset.hash\"]");
    let mut imported = release("2.0.0", &[]);
    imported.metadata.datasets = vec![
        DatasetUse {
            name: "holdout".into(),
            digest: Some("6d5f".into()),
            source: None,
            role: Some("eval".into()),
        },
        DatasetUse {
            name: "tx-2026-11".into(),
            digest: Some("afc9".into()),
            source: None,
            role: Some("training".into()),
        },
    ];
    let checks = evaluate(
        &policy,
        Evidence {
            release: &imported,
            baseline: None,
            approvals: &[],
        },
    );
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");
    assert!(checks[0].detail.contains("tx-2026-11 afc9"), "{checks:?}");
    // Only an evaluation set is not training data.
    imported.metadata.datasets.truncate(1);
    let checks = evaluate(
        &policy,
        Evidence {
            release: &imported,
            baseline: None,
            approvals: &[],
        },
    );
    assert!(checks.iter().all(|c| !c.passed), "{checks:?}");
}
