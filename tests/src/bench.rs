//! What the bench binaries share: the `--build` flag and the agent's stage table.

use ferry_agent::state::StageTimes;

use crate::Binaries;

/// The `--build` flag of the bench binaries.
#[derive(clap::Args)]
pub struct BuildFlag {
    /// Build the workspace's binaries first; by default the bench runs them as they are in
    /// the target directory.
    #[arg(long)]
    pub build: bool,
}

impl BuildFlag {
    /// Unless `--build` was given, makes [`Binaries`] run the binaries as they are.
    pub fn apply(&self) {
        if !self.build {
            Binaries::use_prebuilt();
        }
    }
}

/// Prints where an agent's staging time went (`total_ms` of it): a markdown table.
pub fn print_stages(stages: &StageTimes, total_ms: u64) {
    let rows = [
        ("chunk index", stages.index_us),
        ("open and local copies (beside the network)", stages.copy_us),
        ("network (waiting for chunk bytes)", stages.network_us),
        ("decode and check chunks", stages.decode_us),
        ("write chunks", stages.write_us),
        ("fsync", stages.fsync_us),
        ("verify the whole file", stages.verify_us),
    ];
    let total_us = total_ms.saturating_mul(1000).max(1);
    let counted: u64 = rows.iter().map(|(_, us)| us).sum();
    println!(
        "| agent stage (decode and write run beside the network reads) | time | share of staging |"
    );
    println!("|---|---:|---:|");
    for (stage, us) in rows
        .into_iter()
        .chain([("other", total_us.saturating_sub(counted))])
    {
        println!(
            "| {stage} | {:.3} s | {:.1} % |",
            us as f64 / 1e6,
            us as f64 * 100.0 / total_us as f64
        );
    }
}
