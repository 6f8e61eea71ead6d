//! The mapping on records as an MLflow 3.17 server returned them for a registered sklearn
//! model (a nested training run with params, a metric logged twice, two datasets).

use super::*;

const VERSION: &str = r#"{
    "name": "Fraud Detector", "version": "2", "creation_timestamp": 1796586559409,
    "current_stage": "None", "description": "Retrained on January.",
    "source": "models:/m-61abd2095aaa454cbc055f82912aa04c",
    "run_id": "02eeef5bb9994df49d200cab79fdec1b", "status": "READY",
    "tags": [{"key": "validated", "value": "yes"},
             {"key": "ferry.input_schema", "value": "tx-features/v3"}],
    "run_link": "", "aliases": ["champion"]
}"#;

const RUN: &str = r#"{
    "info": {"run_uuid": "02eeef5bb9994df49d200cab79fdec1b", "experiment_id": "1",
             "run_name": "train", "user_id": "alice", "status": "FINISHED",
             "run_id": "02eeef5bb9994df49d200cab79fdec1b"},
    "data": {
        "metrics": [{"key": "accuracy", "value": 0.95, "timestamp": 1, "step": 1},
                    {"key": "loss", "value": "NaN", "timestamp": 1, "step": 1}],
        "params": [{"key": "C", "value": "0.5"}, {"key": "solver", "value": "lbfgs"},
                   {"key": "base_model", "value": "models:/Fraud Detector/1"}],
        "tags": [{"key": "mlflow.user", "value": "alice"},
                 {"key": "mlflow.source.git.commit", "value": "9f2c1e7"},
                 {"key": "mlflow.parentRunId", "value": "51e6185e000d4c11bea125a51eb9fc76"},
                 {"key": "team", "value": "fraud"}, {"key": "validated", "value": "no"}]
    },
    "inputs": {"dataset_inputs": [
        {"tags": [{"key": "mlflow.data.context", "value": "training"}],
         "dataset": {"name": "train-2024", "digest": "afc96371", "source_type": "s3",
                     "source": "{\"uri\": \"s3://data/train.parquet\"}",
                     "schema": "{}", "profile": "{}"}},
        {"tags": [{"key": "mlflow.data.context", "value": "eval"}],
         "dataset": {"name": "holdout", "digest": "6d5f3de9", "source_type": "code",
                     "source": "{\"tags\": {\"mlflow.user\": \"alice\"}}"}}
    ]}
}"#;

const MLMODEL: &str = r#"artifact_path: mlflow-artifacts:/1/models/m-61abd/artifacts
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.skops
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
mlflow_version: 3.17.2
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "double",
    "name": "b", "required": true}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
"#;

fn version(json: &str) -> ModelVersion {
    serde_json::from_str(json).unwrap()
}

fn sibling(n: &str, run_id: &str) -> ModelVersion {
    version(&format!(
        r#"{{"name": "Fraud Detector", "version": "{n}", "run_id": "{run_id}"}}"#
    ))
}

fn found() -> Found {
    Found {
        tracking: "http://mlflow:5000".into(),
        version: version(VERSION),
        run: Some(serde_json::from_str(RUN).unwrap()),
        experiment: Some(Experiment {
            name: "fraud".into(),
        }),
        mlmodel: Some(serde_norway::from_str(MLMODEL).unwrap()),
        requirements: Some("numpy==2.4.6  # pinned\nscipy>=1.0\n-r other.txt\nskops==0.16.0; python_version > '3.8'\n".into()),
        siblings: vec![
            sibling("1", "0000"),
            sibling("2", "02eeef5bb9994df49d200cab79fdec1b"),
            sibling("3", "51e6185e000d4c11bea125a51eb9fc76"),
        ],
    }
}

#[test]
fn every_mlflow_field_lands_where_the_table_says() {
    let l = lineage(&found());
    assert_eq!(l.code_commit.as_deref(), Some("9f2c1e7"));
    assert_eq!(l.hyperparameters["C"], "0.5");
    assert_eq!(l.hyperparameters["solver"], "lbfgs");
    assert_eq!(l.metrics.get("accuracy"), Some(&0.95));
    assert!(!l.metrics.contains_key("loss"), "NaN is left out");
    assert_eq!(l.tags["team"], "fraud");
    assert_eq!(
        l.tags["validated"], "yes",
        "the version's tag wins over the run's"
    );
    assert!(l.tags.keys().all(|k| !k.starts_with("mlflow.")));
    assert_eq!(l.datasets.len(), 2);
    assert_eq!(l.datasets[0].name, "train-2024");
    assert_eq!(l.datasets[0].digest.as_deref(), Some("afc96371"));
    assert_eq!(
        l.datasets[0].source.as_deref(),
        Some("s3://data/train.parquet")
    );
    assert_eq!(l.datasets[0].role.as_deref(), Some("training"));
    assert_eq!(
        l.datasets[1].source, None,
        "a dataset built in code has no source"
    );
    assert_eq!(l.datasets[1].role.as_deref(), Some("eval"));
    let interface = l.interface.unwrap();
    assert_eq!(interface.format, "mlflow-signature");
    assert!(interface.inputs.unwrap().contains(r#""name": "b""#));
    assert!(interface.outputs.unwrap().contains("int64"));
    assert_eq!(interface.params, None);
    let framework = l.framework.unwrap();
    assert_eq!(
        (framework.name.as_str(), framework.version.as_str()),
        ("sklearn", "1.9.1")
    );
    assert_eq!(l.dependencies["numpy"], "2.4.6");
    assert_eq!(l.dependencies["skops"], "0.16.0");
    assert_eq!(l.dependencies["mlflow"], "3.17.2");
    assert!(
        !l.dependencies.contains_key("scipy"),
        "a range is not a pin"
    );
    assert_eq!(l.input_schema.as_deref(), Some("tx-features/v3"));
    assert_eq!(l.owner.as_deref(), Some("alice"));
    assert_eq!(l.changelog.as_deref(), Some("Retrained on January."));
    // Version 1 named as base_model, version 3 registered from the parent run; never itself.
    assert_eq!(
        l.parents,
        vec![Version::new(1, 0, 0), Version::new(3, 0, 0)]
    );
    let source = l.source.unwrap();
    assert_eq!(source.registry, "mlflow");
    assert_eq!(
        source.uri,
        "http://mlflow:5000/#/models/Fraud Detector/versions/2"
    );
    assert_eq!(source.model_version.as_deref(), Some("2"));
    assert_eq!(
        source.run_id.as_deref(),
        Some("02eeef5bb9994df49d200cab79fdec1b")
    );
    assert_eq!(
        source.run_uri.as_deref(),
        Some("http://mlflow:5000/#/experiments/1/runs/02eeef5bb9994df49d200cab79fdec1b")
    );
    assert_eq!(source.experiment.as_deref(), Some("fraud"));
}

#[test]
fn mlflow_integer_versions_become_major_versions_unless_told_otherwise() {
    let mut mv = version(VERSION);
    assert_eq!(ferry_version(&mv, None).unwrap(), Version::new(2, 0, 0));
    assert_eq!(
        ferry_version(&mv, Some("2.1.0-rc.1")).unwrap().to_string(),
        "2.1.0-rc.1"
    );
    mv.tags.push(KeyValue {
        key: "ferry.version".into(),
        value: "1.4.0".into(),
    });
    assert_eq!(ferry_version(&mv, None).unwrap().to_string(), "1.4.0");
    mv.tags.last_mut().unwrap().value = "one".into();
    assert!(
        ferry_version(&mv, None)
            .unwrap_err()
            .to_string()
            .contains("ferry.version")
    );
    let mut odd = version(VERSION);
    odd.version = "0".into();
    assert!(ferry_version(&odd, None).is_err());
}

#[test]
fn mlflow_names_become_ferry_names() {
    assert_eq!(
        ferry_name("Fraud Detector").unwrap().as_str(),
        "fraud-detector"
    );
    assert_eq!(ferry_name("sk_model.v2").unwrap().as_str(), "sk_model.v2");
    assert_eq!(ferry_name("  Über-Model").unwrap().as_str(), "ber-model");
    assert!(ferry_name("???").is_err());
}

#[test]
fn a_version_without_a_run_still_maps() {
    let mut f = found();
    f.run = None;
    f.mlmodel = None;
    f.requirements = None;
    let l = lineage(&f);
    assert!(l.hyperparameters.is_empty() && l.metrics.is_empty() && l.datasets.is_empty());
    assert_eq!(l.framework, None);
    assert_eq!(l.interface, None);
    assert_eq!(l.source.unwrap().run_uri, None);
}
