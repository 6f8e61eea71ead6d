//! `ferryctl gc`: what retention and garbage collection would free (a dry run, by default),
//! or, with `--apply`, freeing it.

use anyhow::Result;
use clap::Args;
use ferry_coordinator::api::GcReport;
use ferry_coordinator::outln;

use crate::client::Client;
use crate::output::{Table, json};
use crate::releases::human_bytes;

#[derive(Args)]
pub(crate) struct GcArgs {
    /// Free it (admin); without this, only show what would go.
    #[arg(long)]
    apply: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(client: &Client, args: &GcArgs) -> Result<()> {
    let report: GcReport = if args.apply {
        client.post_for("/gc", &serde_json::json!({})).await?
    } else {
        client.get("/gc").await?
    };
    if args.json {
        return json(&report);
    }
    let plan = &report.plan;
    if !plan.purge.is_empty() || !plan.kept.is_empty() {
        let mut table = Table::new(&["MODEL", "VERSION", "BYTES", "WHY"]);
        for (decided, fate) in plan
            .purge
            .iter()
            .map(|d| (d, "freed"))
            .chain(plan.kept.iter().map(|d| (d, "kept")))
        {
            table.row(vec![
                decided.model.to_string(),
                decided.version.to_string(),
                fate.into(),
                decided.why.clone(),
            ]);
        }
        table.print();
    }
    let verb = if report.applied {
        "freed"
    } else {
        "would free"
    };
    outln!(
        "{verb} {} in {} chunk file(s)",
        human_bytes(report.bytes),
        plan.chunks.len() + report.orphans
    );
    outln!(
        "  releases {}, artifacts no release uses {}, orphan chunks {}",
        plan.purge.len(),
        plan.blobs.len(),
        report.orphans
    );
    if report.stale_uploads > 0 {
        outln!(
            "  and {} interrupted upload(s) not resumed for a week",
            report.stale_uploads
        );
    }
    if !report.applied {
        outln!("  (a dry run: `ferryctl gc --apply` frees it)");
    }
    Ok(())
}
