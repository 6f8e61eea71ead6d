//! `ferryctl stage` and `ferryctl approve`: a release's lifecycle stage, moving it under the
//! configured policies (every check shown, each failing one named), and approving its
//! promotion to production.

use anyhow::Result;
use clap::Args;
use ferry_coordinator::api::{ApprovalRequest, StageChange, StageView, TransitionView};
use ferry_coordinator::outln;

use crate::client::Client;
use crate::exit::ApiFailure;
use crate::output::{Table, ago, json, timestamp};

#[derive(Args)]
pub(crate) struct StageArgs {
    /// The model's name.
    name: String,
    /// The release's version.
    version: String,
    /// The stage to move it to (development, staging, production, deprecated, archived,
    /// rejected); without it, where it stands.
    target: Option<String>,
    /// Why (recorded in the audit trail and the release's history).
    #[arg(long)]
    reason: Option<String>,
    /// Only run the target stage's checks; move nothing.
    #[arg(long)]
    check: bool,
    /// Let a promotion that moves `prod` past releases that do not fit some devices'
    /// applications (recorded in the audit trail).
    #[arg(long)]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub(crate) struct ApproveArgs {
    /// The model's name.
    name: String,
    /// The release's version.
    version: String,
    /// Why (recorded in the audit trail).
    #[arg(long)]
    reason: Option<String>,
}

pub(crate) async fn run(client: &Client, args: &StageArgs) -> Result<()> {
    let (name, version) = (&args.name, &args.version);
    let Some(target) = &args.target else {
        let view: StageView = client
            .get(&format!("/releases/{name}/{version}/stage"))
            .await?;
        if args.json {
            return json(&view);
        }
        print_stage(&view);
        return Ok(());
    };
    let (view, refused): (TransitionView, bool) = client
        .post_judged(
            &format!("/releases/{name}/{version}/stage/{target}"),
            &StageChange {
                reason: args.reason.clone(),
                dry_run: args.check,
                force: args.force,
            },
            reqwest::StatusCode::CONFLICT,
        )
        .await?;
    if args.json {
        json(&view)?;
    } else {
        print_transition(&view);
    }
    if refused {
        return Err(ApiFailure {
            status: reqwest::StatusCode::CONFLICT,
            message: view
                .error
                .unwrap_or_else(|| "the coordinator refused the move".into()),
        }
        .into());
    }
    Ok(())
}

pub(crate) async fn approve(client: &Client, args: &ApproveArgs) -> Result<()> {
    let view: StageView = client
        .post_for(
            &format!("/releases/{}/{}/approvals", args.name, args.version),
            &ApprovalRequest {
                reason: args.reason.clone(),
            },
        )
        .await?;
    let approvers: Vec<&str> = view.approvals.iter().map(|a| a.by.as_str()).collect();
    outln!(
        "{} {}: approved toward production (approvals so far: {})",
        view.model,
        view.version,
        approvers.join(", ")
    );
    Ok(())
}

fn print_transition(view: &TransitionView) {
    if !view.checks.is_empty() {
        let mut table = Table::new(&["CHECK", "RESULT", "FOUND"]);
        for c in &view.checks {
            table.row(vec![
                c.name.clone(),
                if c.passed { "pass" } else { "FAIL" }.into(),
                c.detail.clone(),
            ]);
        }
        table.print();
    }
    let what = format!("{} {}", view.model, view.version);
    if view.error.is_some() {
        outln!("{what} stays in {}", view.from);
        return;
    }
    if !view.moved {
        outln!(
            "{what} may move from {} to {}: every check passes (nothing moved)",
            view.from,
            view.to
        );
        return;
    }
    outln!("{what}: {} -> {}", view.from, view.to);
    for old in &view.deprecated {
        outln!("  {} {old}: production -> deprecated", view.model);
    }
    if view.prod_moved {
        outln!("  alias `prod` now points at {}", view.version);
    }
    if let Some(id) = &view.rollout {
        outln!("  rollout {id} started (`ferryctl rollout status {id}`)");
    }
}

fn print_stage(view: &StageView) {
    outln!("{} {}", view.model, view.version);
    outln!(
        "  stage      {} since {}",
        view.stage,
        timestamp(view.since)
    );
    let next: Vec<&str> = view.next.iter().map(|s| s.as_str()).collect();
    outln!("  may move   {}", next.join(", "));
    if !view.approvals.is_empty() {
        let approvals: Vec<String> = view
            .approvals
            .iter()
            .map(|a| format!("{} ({})", a.by, ago(a.at)))
            .collect();
        outln!("  approvals  {}", approvals.join(", "));
    }
    if !view.history.is_empty() {
        let mut table = Table::new(&["WHEN", "MOVE", "BY", "WHY"]);
        for m in &view.history {
            table.row(vec![
                ago(m.at),
                format!("{} -> {}", m.from, m.to),
                m.by.clone(),
                m.reason.clone().unwrap_or_default(),
            ]);
        }
        table.print();
    }
}
