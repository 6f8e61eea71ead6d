//! `ferryctl releases`: list and show published releases with their lineage.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::ReleaseView;
use ferry_coordinator::outln;

use crate::client::Client;
use crate::output::{Table, ago, json, or_dash, timestamp};

#[derive(Subcommand)]
pub(crate) enum ReleasesCommand {
    /// Releases, newest last.
    List {
        /// Only this model.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a release again: a newer revision with a new expiry, or under a new key.
    Resign(crate::resign::ResignArgs),
    /// One release with its variants and lineage.
    Show {
        /// The model's name.
        name: String,
        /// The release's version.
        version: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: ReleasesCommand) -> Result<()> {
    match command {
        ReleasesCommand::List {
            name,
            json: as_json,
        } => {
            let path = match &name {
                Some(n) => format!("/releases?name={n}"),
                None => "/releases".into(),
            };
            let releases: Vec<ReleaseView> = client.get(&path).await?;
            if as_json {
                return json(&releases);
            }
            let mut table =
                Table::new(&["MODEL", "VERSION", "STAGE", "SIZE", "PUBLISHED", "ALIASES"]);
            for r in releases {
                let size: u64 = r.release.variants.iter().map(|v| v.size).sum();
                table.row(vec![
                    r.release.name.to_string(),
                    r.release.version.to_string(),
                    match r.purged_at {
                        Some(_) => format!("{} (purged)", r.stage),
                        None => r.stage.to_string(),
                    },
                    human_bytes(size),
                    ago(r.published_at),
                    r.aliases.join(","),
                ]);
            }
            if table.is_empty() {
                outln!("no releases");
            } else {
                table.print();
            }
            Ok(())
        }
        ReleasesCommand::Resign(args) => crate::resign::run(client, &args).await,
        ReleasesCommand::Show {
            name,
            version,
            json: as_json,
        } => {
            let r: ReleaseView = client.get(&format!("/releases/{name}/{version}")).await?;
            if as_json {
                return json(&r);
            }
            print_release(&r);
            Ok(())
        }
    }
}

fn print_release(r: &ReleaseView) {
    let rel = &r.release;
    let m = &rel.metadata;
    outln!("{} {}", rel.name, rel.version);
    outln!(
        "  created        {} by {}",
        timestamp(rel.created_at),
        rel.created_by
    );
    outln!("  stage          {}", r.stage);
    outln!(
        "  published      {} by {}",
        timestamp(r.published_at),
        r.published_by
    );
    outln!(
        "  signed by      {} (revision {}, {} {})",
        r.signer,
        rel.revision,
        if rel.expires <= crate::output::now() {
            "expired"
        } else {
            "expires"
        },
        timestamp(rel.expires)
    );
    outln!(
        "  aliases        {}",
        if r.aliases.is_empty() {
            "-".into()
        } else {
            r.aliases.join(", ")
        }
    );
    outln!("  variants");
    for v in &rel.variants {
        outln!(
            "    {:<28} {:<4} {} {} blake3:{}",
            v.target.to_string(),
            v.accelerator.to_string(),
            v.file_name,
            human_bytes(v.size),
            v.hash.short()
        );
        if !v.requires.is_empty() {
            let requires: Vec<String> = v.requires.iter().map(ToString::to_string).collect();
            outln!("      requires {}", requires.join(", "));
        }
    }
    outln!("  code commit    {}", or_dash(m.code_commit.as_deref()));
    match &m.dataset {
        Some(d) => outln!(
            "  dataset        {} {} {}",
            d.id,
            d.version,
            d.hash.as_deref().unwrap_or("")
        ),
        None => outln!("  dataset        -"),
    }
    if let Some(f) = &m.framework {
        outln!("  framework      {} {}", f.name, f.version);
    }
    outln!("  owner          {}", or_dash(m.owner.as_deref()));
    outln!(
        "  schemas        in {} / out {}",
        or_dash(m.input_schema.as_deref()),
        or_dash(m.output_schema.as_deref())
    );
    if !m.parents.is_empty() {
        let parents: Vec<String> = m.parents.iter().map(ToString::to_string).collect();
        outln!("  parents        {}", parents.join(", "));
    }
    for (title, map) in [
        ("hyperparameters", &m.hyperparameters),
        ("dependencies", &m.dependencies),
    ] {
        if !map.is_empty() {
            outln!("  {title}");
            for (k, v) in map {
                outln!("    {k} = {v}");
            }
        }
    }
    if !m.metrics.is_empty() {
        outln!("  metrics");
        for (k, v) in &m.metrics {
            outln!("    {k} = {v}");
        }
    }
    if let Some(c) = &m.changelog {
        outln!("  changelog      {c}");
    }
}

/// `1.5 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
