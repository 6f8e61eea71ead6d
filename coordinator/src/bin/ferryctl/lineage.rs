//! `ferryctl lineage`, `impact`, `diff` and `card`: a release's ancestry and inputs, what a
//! dataset reaches (releases and the devices running them), two releases side by side, and a
//! release's Markdown model card.

use anyhow::Result;
use clap::{Args, Subcommand};
use ferry_coordinator::api::{DiffView, ImpactView, LineageView};
use ferry_coordinator::{out, outln};

use crate::client::{Client, escape};
use crate::output::{Table, json};

#[derive(Args)]
pub(crate) struct LineageArgs {
    /// The model's name.
    name: String,
    /// The release's version.
    version: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub(crate) enum ImpactCommand {
    /// Every release derived from a dataset, and every device running one of them.
    Dataset {
        /// Dataset id.
        id: String,
        /// Only this version of it.
        #[arg(long)]
        version: Option<String>,
        /// Print JSON (with every device id).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// The model's name.
    name: String,
    /// One version.
    a: String,
    /// The other.
    b: String,
    /// Show the fields that are the same too.
    #[arg(long)]
    all: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct CardArgs {
    /// The model's name.
    name: String,
    /// The release's version.
    version: String,
}

pub(crate) async fn lineage(client: &Client, args: &LineageArgs) -> Result<()> {
    let view: LineageView = client
        .get(&format!("/releases/{}/{}/lineage", args.name, args.version))
        .await?;
    if args.json {
        return json(&view);
    }
    let mut table = Table::new(&["VERSION", "DATASET", "CODE COMMIT", "PARENT OF"]);
    for a in &view.ancestors {
        let indent = "  ".repeat(a.depth as usize);
        let version = if a.published {
            format!("{indent}{}", a.version)
        } else {
            format!("{indent}{} (not published)", a.version)
        };
        table.row(vec![
            version,
            a.dataset.clone().unwrap_or_else(|| "-".into()),
            a.code_commit.clone().unwrap_or_else(|| "-".into()),
            a.child
                .as_ref()
                .map_or_else(|| "-".into(), ToString::to_string),
        ]);
    }
    outln!("{} {}", view.model, view.version);
    table.print();
    Ok(())
}

pub(crate) async fn impact(client: &Client, command: ImpactCommand) -> Result<()> {
    let ImpactCommand::Dataset {
        id,
        version,
        json: as_json,
    } = command;
    let path = match &version {
        Some(v) => format!("/datasets/{}/impact?version={}", escape(&id), escape(v)),
        None => format!("/datasets/{}/impact", escape(&id)),
    };
    let view: ImpactView = client.get(&path).await?;
    if as_json {
        return json(&view);
    }
    let what = match &view.version {
        Some(v) => format!("dataset {} {v}", view.dataset),
        None => format!("dataset {}", view.dataset),
    };
    if view.releases.is_empty() {
        outln!("no release is derived from {what}");
        return Ok(());
    }
    let mut table = Table::new(&["MODEL", "VERSION", "STAGE", "DEVICES", "HOW"]);
    for r in &view.releases {
        table.row(vec![
            r.model.clone(),
            r.version.to_string(),
            r.stage.to_string(),
            r.devices.len().to_string(),
            r.how.clone(),
        ]);
    }
    table.print();
    outln!(
        "{} release(s) derived from {what}; {} device(s) run one of them",
        view.releases.len(),
        view.devices
    );
    Ok(())
}

pub(crate) async fn diff(client: &Client, args: &DiffArgs) -> Result<()> {
    let view: DiffView = client
        .get(&format!(
            "/releases/{}/{}/diff/{}",
            args.name, args.a, args.b
        ))
        .await?;
    if args.json {
        return json(&view);
    }
    let a = view.a.to_string();
    let b = view.b.to_string();
    let mut table = Table::new(&["", "FIELD", &a, &b]);
    for row in view.rows.iter().filter(|r| args.all || r.differs) {
        table.row(vec![
            if row.differs { "*" } else { "" }.into(),
            row.field.clone(),
            row.a.clone(),
            row.b.clone(),
        ]);
    }
    if table.is_empty() {
        outln!("{} {a} and {b} carry the same metadata", view.model);
    } else {
        table.print();
    }
    Ok(())
}

pub(crate) async fn card(client: &Client, args: &CardArgs) -> Result<()> {
    let bytes = client
        .get_bytes(&format!("/releases/{}/{}/card", args.name, args.version))
        .await?;
    out!("{}", String::from_utf8_lossy(&bytes));
    Ok(())
}
