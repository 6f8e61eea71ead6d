//! `ferryctl fleet status`: per model, devices per version, adoption of each alias target,
//! devices gone quiet, devices with errors, and devices mid-update.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::FleetStatus;
use ferry_coordinator::outln;
use ferry_shared::wire::UpdatePhase;

use crate::client::Client;
use crate::output::{Table, ago, clip, json, or_dash};

#[derive(Subcommand)]
pub(crate) enum FleetCommand {
    /// The fleet at a glance.
    Status {
        /// Devices silent longer than this many seconds count as stale [default: coordinator's].
        #[arg(long)]
        stale_after: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which versions run where, how spread they are, and who is behind and why.
    Fragmentation {
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Split into cohorts by this device label (e.g. region, accelerator).
        #[arg(long)]
        by: Option<String>,
        /// Days of fragmentation history to show.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: FleetCommand) -> Result<()> {
    let (stale_after, as_json) = match command {
        FleetCommand::Status { stale_after, json } => (stale_after, json),
        FleetCommand::Fragmentation {
            model,
            by,
            days,
            json,
        } => {
            let args = crate::fragmentation::Args {
                model,
                by,
                days,
                json,
            };
            return crate::fragmentation::run(client, args).await;
        }
    };
    let path = match stale_after {
        Some(s) => format!("/fleet/status?stale_after={s}"),
        None => "/fleet/status".into(),
    };
    let status: FleetStatus = client.get(&path).await?;
    if as_json {
        return json(&status);
    }
    outln!(
        "{} devices, {} connected (stale after {}s)",
        status.devices_total,
        status.devices_connected,
        status.stale_after_secs,
    );
    outln!(
        "{} served in {} chunks ({} as deltas)",
        crate::releases::human_bytes(status.bytes_served),
        status.chunks_served,
        status.deltas_served
    );
    for a in &status.clone_alerts {
        outln!(
            "CLONE ALERT: device {} — {} session(s) refused, last from {} {}: a second agent holds its identity key",
            a.device,
            a.refusals,
            a.refused_from,
            crate::output::ago(a.last_at)
        );
    }
    for m in &status.models {
        outln!();
        outln!("model {} — {} device(s)", m.model, m.devices);
        let mut versions = Table::new(&["  VERSION", "DEVICES", "SHARE"]);
        for v in &m.versions {
            versions.row(vec![
                format!("  {}", or_dash(v.version.as_ref())),
                v.devices.to_string(),
                format!("{:.0}%", v.share * 100.0),
            ]);
        }
        versions.print();
        if !m.aliases.is_empty() {
            let mut aliases =
                Table::new(&["  ALIAS", "TARGET", "FOLLOWING", "ON TARGET", "FLEET SHARE"]);
            for a in &m.aliases {
                aliases.row(vec![
                    format!("  {}", a.alias),
                    a.version.to_string(),
                    a.following.to_string(),
                    a.on_target.to_string(),
                    format!("{:.0}%", a.share * 100.0),
                ]);
            }
            aliases.print();
        }
        for d in &m.in_progress {
            let (label, what) = phase(&d.phase);
            outln!("  {label:<6} {}  {}", d.id, clip(&what, 48));
        }
        for d in &m.stale {
            outln!(
                "  stale  {}  last seen {}, on {}",
                d.id,
                ago(d.last_seen),
                or_dash(d.active.as_ref())
            );
        }
        for d in &m.errors {
            outln!("  error  {}  {} {}", d.id, d.error.kind, d.error.version);
            outln!("         {}", clip(&d.error.message, 71));
        }
    }
    Ok(())
}

fn phase(p: &UpdatePhase) -> (&'static str, String) {
    match p {
        UpdatePhase::Idle => ("idle", String::new()),
        UpdatePhase::Fetching(v) => ("fetch", format!("installing {v}")),
        UpdatePhase::Probation(v) => ("check", format!("health-checking {v}")),
        UpdatePhase::Held { version, reason } => ("held", format!("{version}: {reason}")),
        UpdatePhase::Retrying { version, attempts } => {
            ("retry", format!("{version}, attempt {attempts}"))
        }
    }
}
