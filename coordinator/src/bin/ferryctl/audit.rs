//! `ferryctl audit`: the audit trail, newest last, and `--verify`, which walks its hash
//! chain (against an anchor kept from an earlier walk) and names the first broken link.

use anyhow::Result;
use clap::Args;
use ferry_coordinator::api::{AuditEntryView, AuditFilter, AuditVerification};
use ferry_coordinator::outln;

use crate::client::Client;
use crate::exit::CheckFailed;
use crate::output::{Table, ago, json};

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Walk the hash chain and report the first broken link (exit 1 when there is one).
    #[arg(long)]
    verify: bool,
    /// With --verify: a head printed by an earlier --verify (SEQ:HASH), which must still be
    /// there unchanged (shows a truncated or rewritten trail).
    #[arg(long, requires = "verify")]
    anchor: Option<String>,
    /// Only entries whose action starts with this (`stage`, `alias.set`, `rollout`, …).
    #[arg(long)]
    action: Option<String>,
    /// Only entries whose actor contains this (a person, a token's name).
    #[arg(long)]
    actor: Option<String>,
    /// Only entries whose subject contains this (a model, a device id, a rollout).
    #[arg(long)]
    subject: Option<String>,
    /// Only entries of the last N hours.
    #[arg(long)]
    hours: Option<u64>,
    /// The last N entries (after filtering).
    #[arg(long, default_value_t = 50)]
    last: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(client: &Client, args: &AuditArgs) -> Result<()> {
    if args.verify {
        return verify(client, args).await;
    }
    let filter = AuditFilter {
        action: args.action.clone(),
        actor: args.actor.clone(),
        subject: args.subject.clone(),
        since: args
            .hours
            .map(|h| crate::output::now().saturating_sub(h.saturating_mul(3600))),
        until: None,
    };
    // Read page by page (the whole trail: the filters are applied here, so no page ends
    // early) and keep the last matches.
    let mut entries: Vec<AuditEntryView> = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<AuditEntryView> = client
            .get(&format!("/audit?after={after}&limit=10000"))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        entries.extend(page.into_iter().filter(|e| filter.keeps(e)));
        let keep = entries.len().saturating_sub(args.last);
        entries.drain(..keep);
    }
    if args.json {
        return json(&entries);
    }
    let mut table = Table::new(&["SEQ", "WHEN", "WHO", "ACTION", "SUBJECT", "DETAIL"]);
    for e in &entries {
        table.row(vec![
            e.seq.to_string(),
            ago(e.at),
            e.actor.clone(),
            e.action.clone(),
            e.subject.clone(),
            e.detail.clone(),
        ]);
    }
    if table.is_empty() {
        outln!("no audit entries");
    } else {
        table.print();
    }
    Ok(())
}

async fn verify(client: &Client, args: &AuditArgs) -> Result<()> {
    let path = match &args.anchor {
        Some(anchor) => format!("/audit/verify?anchor={anchor}"),
        None => "/audit/verify".into(),
    };
    let found: AuditVerification = client.get(&path).await?;
    if args.json {
        json(&found)?;
    } else {
        outln!("{found}");
    }
    if let Some(broken) = found.broken {
        return Err(
            CheckFailed(format!("the audit trail is broken at entry {}", broken.seq)).into(),
        );
    }
    Ok(())
}
