//! `ferryctl import`: releases made from models registered elsewhere. `import mlflow` reads a
//! registered model version from an MLflow tracking server — its files, run, params, metrics,
//! tags, datasets and signature — and publishes it as a signed Ferry release whose lineage says
//! where it came from ([`mapping`] holds the field-by-field table). With `--watch` it keeps
//! following an MLflow alias (`@champion`) and imports each version the alias moves to, then
//! moves a Ferry alias or stage after it.

mod mapping;
mod mlflow;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ferry_coordinator::api::{AliasChanged, SetAlias, StageChange, TransitionView};
use ferry_coordinator::outln;
use ferry_shared::{Accelerator, Target};
use serde::Serialize;

use crate::client::Client;
use crate::exit::{ApiFailure, Usage};
use crate::publish::{DEFAULT_LIFETIME_DAYS, Publication, VariantSpec, publish};
use mlflow::{Mlflow, ModelVersion};

#[derive(Subcommand)]
pub(crate) enum ImportCommand {
    /// Publish a registered model version from an MLflow tracking server.
    Mlflow(MlflowArgs),
}

#[derive(Args)]
pub(crate) struct MlflowArgs {
    /// The registered model: NAME/VERSION, NAME@ALIAS, or NAME (its newest version).
    model: String,
    /// The MLflow tracking server (credentials from MLFLOW_TRACKING_TOKEN, or
    /// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, as MLflow's client takes them).
    #[arg(long, env = "MLFLOW_TRACKING_URI")]
    tracking_uri: String,
    /// Publisher private key; repeat it when the root requires several signatures.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
    /// Ferry model name [default: MLflow's, lowercased, other characters as `-`].
    #[arg(long)]
    name: Option<String>,
    /// Ferry version [default: the version's tag `ferry.version`, else MLflow's N as N.0.0].
    #[arg(long, conflicts_with = "watch")]
    version: Option<String>,
    /// Directory name devices unpack the model into (installed as NAME.tar).
    #[arg(long, default_value = "model")]
    dir_name: String,
    /// The accelerator the model needs (cpu, gpu or any).
    #[arg(long, default_value = "any")]
    accelerator: Accelerator,
    /// A fact the device must have to run the model, e.g. `cuda >= 12.2`; repeat for several.
    #[arg(long)]
    requires: Vec<ferry_shared::requirement::Requirement>,
    /// The target triple it runs on, or any.
    #[arg(long, default_value = "any")]
    target: Target,
    /// After each import, move the release to this lifecycle stage (through its gates).
    #[arg(long)]
    set_stage: Option<String>,
    /// After each import, point this Ferry alias at the release (devices following it update).
    #[arg(long)]
    set_alias: Option<String>,
    /// Keep following NAME@ALIAS: import each version the MLflow alias moves to.
    #[arg(long)]
    watch: bool,
    /// With --watch: seconds between looks at the MLflow alias.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval_secs: u64,
    /// Days the signature vouches for the release.
    #[arg(long, default_value_t = DEFAULT_LIFETIME_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    expires_days: u32,
    /// Who publishes, recorded in the manifest [default: $USER].
    #[arg(long)]
    created_by: Option<String>,
    /// Why, for the audit trail [default: "imported from MLflow NAME version N"].
    #[arg(long)]
    reason: Option<String>,
    /// Print one JSON object per import (for programs that run ferryctl).
    #[arg(long)]
    json: bool,
    /// Report the upload's progress on stderr as JSON lines (as `publish --progress-lines`).
    #[arg(long)]
    progress_lines: bool,
}

/// Which version of the registered model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reference {
    Version(String, String),
    Alias(String, String),
    Newest(String),
}

impl Reference {
    fn parse(text: &str) -> Result<Self> {
        if let Some((name, alias)) = text.rsplit_once('@') {
            if name.is_empty() || alias.is_empty() {
                bail!(Usage(format!("{text:?}: expected NAME@ALIAS")));
            }
            return Ok(Self::Alias(name.into(), alias.into()));
        }
        // A registered model name may hold `/`; the version is the part after the last one
        // when it is a number.
        if let Some((name, version)) = text.rsplit_once('/')
            && !name.is_empty()
            && !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(Self::Version(name.into(), version.into()));
        }
        if text.is_empty() {
            bail!(Usage("name the registered model".into()));
        }
        Ok(Self::Newest(text.into()))
    }
}

/// What one import did, as `--json` prints it.
#[derive(Serialize)]
struct Imported {
    /// The Ferry model and version published.
    name: String,
    version: String,
    /// False when the identical release was already published.
    created: bool,
    /// The MLflow model version it came from.
    mlflow_model: String,
    mlflow_version: String,
    /// Files and bytes of the model directory.
    files: u64,
    bytes: u64,
    /// The alias moved and the stage reached, when asked for.
    alias: Option<String>,
    stage: Option<String>,
}

pub(crate) async fn run(client: &Client, command: ImportCommand) -> Result<()> {
    match command {
        ImportCommand::Mlflow(args) => import_mlflow(client, &args).await,
    }
}

async fn import_mlflow(client: &Client, args: &MlflowArgs) -> Result<()> {
    let reference = Reference::parse(&args.model)?;
    let server = Mlflow::new(&args.tracking_uri)?;
    if !args.watch {
        let version = resolve(&server, &reference).await?;
        let imported = import_one(client, &server, args, version).await?;
        return report(args, &imported);
    }
    let Reference::Alias(name, alias) = &reference else {
        bail!(Usage(format!(
            "--watch follows an MLflow alias: give NAME@ALIAS, not {:?}",
            args.model
        )));
    };
    outln!(
        "following {name}@{alias} on {} every {}s (Ctrl-C stops)",
        server.base,
        args.interval_secs
    );
    let mut done: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let step = async {
            let version = server.by_alias(name, alias).await?;
            if done.as_deref() == Some(version.version.as_str()) {
                return Ok(None);
            }
            let number = version.version.clone();
            let imported = import_one(client, &server, args, version).await?;
            report(args, &imported)?;
            anyhow::Ok(Some(number))
        };
        match step.await {
            Ok(Some(number)) => {
                done = Some(number);
                failures = 0;
            }
            Ok(None) => failures = 0,
            Err(e) => {
                failures += 1;
                eprintln!("ferryctl: import of {name}@{alias} failed ({e:#}); trying again");
            }
        }
        // Back off on repeated failures, up to ten intervals.
        let pause = Duration::from_secs(args.interval_secs * u64::from(failures.clamp(1, 10)));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn resolve(server: &Mlflow, reference: &Reference) -> Result<ModelVersion> {
    match reference {
        Reference::Version(name, version) => server.model_version(name, version).await,
        Reference::Alias(name, alias) => server.by_alias(name, alias).await,
        Reference::Newest(name) => server
            .versions(name)
            .await?
            .into_iter()
            .filter(|v| v.status.is_empty() || v.status == "READY")
            .max_by_key(|v| v.version.parse::<u64>().unwrap_or(0))
            .with_context(|| format!("MLflow model {name:?} has no ready version")),
    }
}

async fn import_one(
    client: &Client,
    server: &Mlflow,
    args: &MlflowArgs,
    version: ModelVersion,
) -> Result<Imported> {
    let reference = format!("{} version {}", version.name, version.version);
    if !(version.status.is_empty() || version.status == "READY") {
        bail!("MLflow {reference} is {}, not READY", version.status);
    }
    let name = match &args.name {
        Some(n) => n.parse()?,
        None => mapping::ferry_name(&version.name)?,
    };
    let ferry_version = mapping::ferry_version(&version, args.version.as_deref())?;
    let run = match version.run_id.as_str() {
        "" => None,
        id => Some(server.run(id).await?),
    };
    let experiment = match &run {
        Some(r) => server.experiment(&r.info.experiment_id).await.ok(),
        None => None,
    };
    let siblings = server.versions(&version.name).await?;

    let temp = tempfile::Builder::new()
        .prefix("ferry-mlflow-")
        .tempdir()
        .context("cannot create a temporary directory for the model's files ($TMPDIR)")?;
    let dir_name: ferry_shared::FileName = format!("{}.tar", args.dir_name)
        .parse()
        .context("--dir-name")?;
    let tree = temp
        .path()
        .join(dir_name.unpacked_dir().context("--dir-name is empty")?);
    std::fs::create_dir(&tree)?;
    let uri = server.download_uri(&version.name, &version.version).await?;
    let (files, bytes) = server
        .download_tree(&uri, &tree)
        .await
        .with_context(|| format!("downloading the files of MLflow {reference}"))?;
    if files == 0 {
        bail!("MLflow {reference} has no files at {uri}");
    }
    let mlmodel = match std::fs::read_to_string(tree.join("MLmodel")) {
        Ok(text) => Some(
            serde_norway::from_str(&text)
                .with_context(|| format!("the MLmodel file of MLflow {reference}"))?,
        ),
        Err(_) => None,
    };
    let requirements = std::fs::read_to_string(tree.join("requirements.txt")).ok();
    let found = mapping::Found {
        tracking: server.base.clone(),
        version,
        run,
        experiment,
        mlmodel,
        requirements,
        siblings,
    };
    let publication = Publication {
        name: name.clone(),
        version: ferry_version.clone(),
        specs: vec![VariantSpec {
            accelerator: args.accelerator,
            target: args.target.clone(),
            requires: args.requires.clone(),
            file: tree,
        }],
        cpu_fallback: false,
        file_name: Some(dir_name.to_string()),
        keys: args.key.clone(),
        metadata: mapping::lineage(&found),
        created_by: args.created_by.clone(),
        reason: Some(
            args.reason
                .clone()
                .unwrap_or_else(|| format!("imported from MLflow {reference}")),
        ),
        expires_days: args.expires_days,
        json: args.json,
        progress_lines: args.progress_lines,
        quiet: true,
    };
    let published = publish(client, &publication)
        .await
        .with_context(|| format!("publishing MLflow {reference} as {name} {ferry_version}"))?;
    let (ferry_name, v) = (name.to_string(), ferry_version.to_string());
    if let Some(stage) = &args.set_stage {
        move_stage(client, &ferry_name, &v, stage, &reference).await?;
    }
    if let Some(alias) = &args.set_alias {
        let _: AliasChanged = client
            .put_json(
                &format!("/aliases/{ferry_name}/{alias}"),
                &SetAlias {
                    version: ferry_version.clone(),
                    reason: Some(format!("MLflow {reference} imported")),
                    force: false,
                },
            )
            .await
            .with_context(|| format!("pointing {ferry_name}@{alias} at {v}"))?;
    }
    Ok(Imported {
        name: ferry_name,
        version: v,
        created: published.created,
        mlflow_model: found.version.name,
        mlflow_version: found.version.version,
        files,
        bytes,
        alias: args.set_alias.clone(),
        stage: args.set_stage.clone(),
    })
}

/// Moves the release to `stage` unless it is there already; a refusal names the failing
/// check.
async fn move_stage(
    client: &Client,
    name: &str,
    version: &str,
    stage: &str,
    reference: &str,
) -> Result<()> {
    let current: ferry_coordinator::api::StageView = client
        .get(&format!("/releases/{name}/{version}/stage"))
        .await?;
    if current.stage.to_string() == stage {
        return Ok(());
    }
    let (view, refused): (TransitionView, bool) = client
        .post_judged(
            &format!("/releases/{name}/{version}/stage/{stage}"),
            &StageChange {
                reason: Some(format!("MLflow {reference} imported")),
                dry_run: false,
                force: false,
            },
            reqwest::StatusCode::CONFLICT,
        )
        .await?;
    if refused {
        return Err(ApiFailure {
            status: reqwest::StatusCode::CONFLICT,
            message: format!(
                "{name} {version} is published but stays out of {stage}: {}",
                view.error
                    .unwrap_or_else(|| "the coordinator refused the move".into())
            ),
        }
        .into());
    }
    Ok(())
}

fn report(args: &MlflowArgs, imported: &Imported) -> Result<()> {
    if args.json {
        return crate::output::json(imported);
    }
    let what = if imported.created {
        "published"
    } else {
        "already published (identical), nothing changed for"
    };
    outln!(
        "MLflow {} version {} ({} files, {} bytes): {what} {} {}",
        imported.mlflow_model,
        imported.mlflow_version,
        imported.files,
        imported.bytes,
        imported.name,
        imported.version
    );
    if let Some(stage) = &imported.stage {
        outln!("  stage: {stage}");
    }
    if let Some(alias) = &imported.alias {
        outln!("  {}@{alias} -> {}", imported.name, imported.version);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_version_an_alias_or_the_newest() {
        let r = |s: &str| Reference::parse(s).unwrap();
        assert_eq!(r("fraud/3"), Reference::Version("fraud".into(), "3".into()));
        assert_eq!(
            r("fraud@champion"),
            Reference::Alias("fraud".into(), "champion".into())
        );
        assert_eq!(r("team/fraud"), Reference::Newest("team/fraud".into()));
        assert_eq!(
            r("team/fraud/7"),
            Reference::Version("team/fraud".into(), "7".into())
        );
        assert_eq!(r("fraud"), Reference::Newest("fraud".into()));
        assert!(Reference::parse("@x").is_err());
        assert!(Reference::parse("x@").is_err());
        assert!(Reference::parse("").is_err());
    }
}
