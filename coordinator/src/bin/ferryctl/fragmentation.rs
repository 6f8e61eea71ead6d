//! `ferryctl fleet fragmentation`: per model (and per cohort of a label), devices per version,
//! the Gini–Simpson index and its history, and the devices behind their alias's target with
//! why and by how many versions.

use anyhow::Result;
use ferry_coordinator::api::{CohortFragmentation, FragmentationPoint, FragmentationReport};
use ferry_coordinator::outln;

use crate::client::{Client, escape};
use crate::output::{Table, ago, clip, json, or_dash};

/// Rows of behind devices printed per model (the JSON has them all).
const BEHIND_ROWS: usize = 20;

/// The arguments of `fleet fragmentation`.
pub(crate) struct Args {
    /// Only this model.
    pub model: Option<String>,
    /// Split by this label.
    pub by: Option<String>,
    /// Days of history.
    pub days: u64,
    /// Print JSON.
    pub json: bool,
}

pub(crate) async fn run(client: &Client, args: Args) -> Result<()> {
    let mut query = vec![format!("days={}", args.days)];
    if let Some(m) = &args.model {
        query.push(format!("model={}", escape(m)));
    }
    if let Some(by) = &args.by {
        query.push(format!("by={}", escape(by)));
    }
    let report: FragmentationReport = client
        .get(&format!("/fleet/fragmentation?{}", query.join("&")))
        .await?;
    if args.json {
        return json(&report);
    }
    if report.models.is_empty() {
        outln!("no models");
    }
    for m in &report.models {
        let all = &m.overall;
        outln!(
            "model {}: {} device(s), {} version(s) running, index {:.2}",
            m.model,
            all.devices,
            all.distinct_versions,
            all.index
        );
        if let Some(line) = history_line(&m.history, args.days) {
            outln!("  {line}");
        }
        let mut versions = Table::new(&["  VERSION", "DEVICES", "SHARE"]);
        for v in &all.versions {
            versions.row(vec![
                format!("  {}", or_dash(v.version.as_ref())),
                v.devices.to_string(),
                format!("{:.0}%", v.share * 100.0),
            ]);
        }
        versions.print();
        let alias_names: Vec<&str> = all.aliases.iter().map(|a| a.alias.as_str()).collect();
        let mut header = vec!["  COHORT", "DEVICES", "VERSIONS", "INDEX"];
        let on: Vec<String> = alias_names.iter().map(|a| format!("ON {a}")).collect();
        header.extend(on.iter().map(String::as_str));
        header.push("BEHIND");
        let mut cohorts = Table::new(&header);
        let rows: Vec<&CohortFragmentation> =
            std::iter::once(all).chain(m.cohorts.iter()).collect();
        for c in rows {
            let mut row = vec![
                format!("  {}", clip(&c.cohort, 16)),
                c.devices.to_string(),
                c.distinct_versions.to_string(),
                format!("{:.2}", c.index),
            ];
            for alias in &alias_names {
                let share = c.aliases.iter().find(|a| a.alias == *alias);
                row.push(share.map_or_else(
                    || "-".into(),
                    |a| format!("{}/{}", a.on_target, a.following),
                ));
            }
            row.push(c.behind.len().to_string());
            cohorts.row(row);
        }
        cohorts.print();
        if !all.behind.is_empty() {
            let reasons: Vec<String> = all
                .behind_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            outln!("  behind: {}", reasons.join(", "));
            let mut behind = Table::new(&["  DEVICE", "RUNS", "TARGET", "BY", "WHY"]);
            for b in all.behind.iter().take(BEHIND_ROWS) {
                let why = match b.reason {
                    ferry_coordinator::api::BehindReason::Offline => {
                        format!("offline, last seen {}", ago(b.last_seen))
                    }
                    r => match &b.detail {
                        Some(d) => format!("{}: {d}", r.as_str()),
                        None => r.as_str().to_owned(),
                    },
                };
                behind.row(vec![
                    format!("  {}", b.id),
                    or_dash(b.running.as_ref()),
                    b.target.to_string(),
                    b.versions_behind.to_string(),
                    clip(&why, 28),
                ]);
            }
            behind.print();
            if all.behind.len() > BEHIND_ROWS {
                outln!(
                    "  … and {} more (--json lists them all)",
                    all.behind.len() - BEHIND_ROWS
                );
            }
        }
        outln!();
    }
    Ok(())
}

/// `index over 7 days ▁▂▂▄▇ 0.05 → 0.48` from the samples.
fn history_line(history: &[FragmentationPoint], days: u64) -> Option<String> {
    let first = history.first()?;
    let last = history.last()?;
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    // At most 40 bars: the newest point of each of 40 equal slices of the history.
    let slices = history.len().min(40);
    let spark: String = (0..slices)
        .map(|i| {
            let p = &history[(i + 1) * history.len() / slices - 1];
            BARS[((p.index * 8.0) as usize).min(7)]
        })
        .collect();
    Some(format!(
        "index over {days} day(s): {spark} {:.2} → {:.2} ({} snapshot(s))",
        first.index,
        last.index,
        history.len()
    ))
}
