//! `ferryctl releases resign`: sign a published release again, unchanged but for a newer
//! revision and a new expiry (and, when the key is new, a new signer). Extends a release's
//! life, withdraws it early (`--expires-days 0`), or moves it under a rotated publisher key.

use anyhow::{Context, Result, bail};
use clap::Args;
use ferry_coordinator::api::Published;
use ferry_coordinator::outln;
use ferry_shared::sign::Envelope;
use ferry_shared::{ModelName, Release, Version};

use crate::client::Client;
use crate::keys::{sign_release, signer_ids};
use crate::output::{now, timestamp};
use crate::publish::{DEFAULT_LIFETIME_DAYS, days};

#[derive(Args)]
pub(crate) struct ResignArgs {
    /// The model's name.
    name: String,
    /// The release's version.
    version: String,
    /// Publisher private key to sign with (one the root, or the coordinator, trusts); repeat
    /// it when the root requires several publishers' signatures.
    #[arg(long, required = true)]
    key: Vec<std::path::PathBuf>,
    /// Days from now the new signature vouches for it; 0 withdraws it now (devices that do
    /// not run it yet refuse it from then on).
    #[arg(long, default_value_t = DEFAULT_LIFETIME_DAYS, value_parser = clap::value_parser!(u32).range(0..=3650))]
    expires_days: u32,
}

pub(crate) async fn run(client: &Client, args: &ResignArgs) -> Result<()> {
    let name: ModelName = args.name.parse()?;
    let version: Version = args.version.parse()?;
    let bytes = client
        .get_bytes(&format!("/releases/{name}/{version}/envelope"))
        .await
        .with_context(|| format!("fetching the signed manifest of {name} {version}"))?;
    let envelope = Envelope::from_bytes(&bytes)?;
    let current = Release::from_canonical_bytes(&envelope.payload)
        .with_context(|| format!("the coordinator's manifest of {name} {version}"))?;
    if current.name != name || current.version != version {
        bail!(
            "the coordinator answered with {} {}, not {name} {version}",
            current.name,
            current.version
        );
    }
    let expires = match args.expires_days {
        // Withdrawn now (a manifest may not expire before it was made).
        0 => now().max(current.created_at),
        d => now() + days(d),
    };
    let next = Release {
        revision: current
            .revision
            .checked_add(1)
            .context("the revision counter is exhausted")?,
        expires,
        ..current.clone()
    };
    let signed = sign_release(&next, &args.key)?;
    let signers = signer_ids(&signed.envelope_bytes);
    let published: Published = client
        .post_bytes("/releases", signed.envelope_bytes)
        .await
        .with_context(|| format!("re-signing {name} {version}"))?;
    match published.resigned_from {
        Some(from) => outln!(
            "{name} {version}: revision {} signed by {}, expires {} (replaces revision {from}, valid until {})",
            next.revision,
            signers,
            timestamp(next.expires),
            timestamp(current.expires)
        ),
        None => bail!(
            "the coordinator kept revision {} of {name} {version}: a newer one was signed meanwhile",
            current.revision
        ),
    }
    Ok(())
}
