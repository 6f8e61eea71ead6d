//! `ferryctl keys root`: the offline root ceremony. Root metadata names the keys of every
//! role (root, targets = publishers, snapshot) and their thresholds; it is drafted, then
//! signed by each root key holder in turn on their own offline machine, and shown before it
//! is trusted. Root N+1 must carry the thresholds of both root N's and its own root keys.
//! Works on files only: nothing here talks to the coordinator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ferry_shared::PublicKey;
use ferry_shared::trust::{Role, RoleKeys, Root, add_signature, draft, inspect_root};

use ferry_coordinator::outln;

use crate::exit::Usage;
use crate::keys::{public_key_arg, secret_key_file};
use crate::output::timestamp;

#[derive(Subcommand)]
pub(crate) enum RootCommand {
    /// Draft root version 1 (unsigned) from public keys.
    Init(RoleArgs),
    /// Draft the next root from a trusted one, with the roles given anew.
    Next {
        /// The root it follows.
        previous: PathBuf,
        #[command(flatten)]
        roles: RoleArgs,
    },
    /// Add one root key holder's signature (run on that holder's offline machine).
    Sign {
        /// The draft; signed in place.
        file: PathBuf,
        /// The holder's private root key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Show a root: version, expiry, each role's keys and threshold, valid signatures.
    Show {
        /// The root file.
        file: PathBuf,
    },
    /// Give the coordinator the next root of its chain (admin; it checks it as a device would).
    Push {
        /// The signed root file.
        file: PathBuf,
    },
    /// The coordinator's snapshot key (to name in a root) and the root chain it serves.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl RootCommand {
    /// True for the commands that work on files alone.
    pub(crate) fn is_offline(&self) -> bool {
        !matches!(self, RootCommand::Push { .. } | RootCommand::Status { .. })
    }
}

/// The commands that talk to the coordinator.
pub(crate) async fn run_online(client: &crate::client::Client, command: RootCommand) -> Result<()> {
    match command {
        RootCommand::Push { file } => {
            let view: ferry_coordinator::api::RootView =
                client.post_bytes("/trust/roots", read(&file)?).await?;
            outln!(
                "the coordinator now serves root {} (expires {})",
                view.version,
                timestamp(view.expires)
            );
            Ok(())
        }
        RootCommand::Status { json } => {
            let trust: ferry_coordinator::api::TrustView = client.get("/trust").await?;
            if json {
                return crate::output::json(&trust);
            }
            outln!("snapshot key  {}", trust.snapshot_key);
            if trust.roots.is_empty() {
                outln!("no root yet: run the ceremony and `ferryctl keys root push root-1.tuf`");
            }
            for r in &trust.roots {
                outln!(
                    "root {}  expires {}  root keys {} of {}  publishers {} of {}",
                    r.version,
                    &timestamp(r.expires)[..10],
                    r.root_threshold,
                    r.root_keys.len(),
                    r.publisher_threshold,
                    r.publishers.len()
                );
            }
            Ok(())
        }
        offline => run(offline),
    }
}

#[derive(Args)]
pub(crate) struct RoleArgs {
    /// Root public keys (repeat).
    #[arg(long = "root-key", required = true)]
    root_keys: Vec<String>,
    /// Root signatures needed.
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    /// Publisher public keys (repeat).
    #[arg(long = "publisher", required = true)]
    publishers: Vec<String>,
    /// Publisher signatures needed on a release.
    #[arg(long, default_value_t = 1)]
    publisher_threshold: u32,
    /// The coordinator's online snapshot public key.
    #[arg(long)]
    snapshot_key: String,
    /// Days until it expires.
    #[arg(long, default_value_t = 365)]
    expires_days: u64,
    /// Where to write the draft.
    #[arg(long)]
    out: PathBuf,
}

fn role_of(keys: &[PublicKey], threshold: u32) -> Result<RoleKeys> {
    if threshold == 0 || threshold as usize > keys.len() {
        return Err(Usage(format!(
            "a threshold of {threshold} cannot be met by {} key(s)",
            keys.len()
        ))
        .into());
    }
    Ok(RoleKeys {
        keys: keys.iter().map(PublicKey::key_id).collect(),
        threshold,
    })
}

fn draft_root(version: u64, args: &RoleArgs) -> Result<()> {
    let parse = |texts: &[String]| -> Result<Vec<PublicKey>> {
        texts.iter().map(|t| public_key_arg(t)).collect()
    };
    let root_keys = parse(&args.root_keys)?;
    let publishers = parse(&args.publishers)?;
    let snapshot = public_key_arg(&args.snapshot_key)?;
    let keys: BTreeMap<_, _> = root_keys
        .iter()
        .chain(&publishers)
        .chain([&snapshot])
        .map(|k| (k.key_id(), *k))
        .collect();
    let root = Root {
        version,
        expires: crate::output::now() + args.expires_days.saturating_mul(86_400),
        keys,
        root: role_of(&root_keys, args.root_threshold)?,
        targets: role_of(&publishers, args.publisher_threshold)?,
        snapshot: role_of(&[snapshot], 1)?,
    };
    if args.out.exists() {
        bail!("{} exists; refusing to overwrite", args.out.display());
    }
    std::fs::write(&args.out, draft(Role::Root, &root))
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    outln!(
        "drafted root {version} in {}; now each root key holder runs `ferryctl keys root sign`",
        args.out.display()
    );
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The commands that work on files alone.
pub(crate) fn run(command: RootCommand) -> Result<()> {
    match command {
        RootCommand::Push { .. } | RootCommand::Status { .. } => {
            bail!("this command talks to the coordinator")
        }
        RootCommand::Init(args) => draft_root(1, &args),
        RootCommand::Next { previous, roles } => {
            let (prev, _) = inspect_root(&read(&previous)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", previous.display()))?;
            draft_root(prev.version + 1, &roles)?;
            outln!(
                "it needs {} signature(s) of root {}'s keys and the thresholds of its own",
                prev.root.threshold,
                prev.version
            );
            Ok(())
        }
        RootCommand::Sign { file, key } => {
            let key = secret_key_file(&key)?;
            let signed = add_signature(Role::Root, &read(&file)?, &key)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            std::fs::write(&file, &signed)
                .with_context(|| format!("cannot write {}", file.display()))?;
            outln!("signed {} with {}", file.display(), key.public().key_id());
            Ok(())
        }
        RootCommand::Show { file } => {
            let (root, valid) = inspect_root(&read(&file)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            outln!(
                "root version {}, expires {}",
                root.version,
                timestamp(root.expires)
            );
            for (name, role) in [
                ("root", &root.root),
                ("publishers", &root.targets),
                ("snapshot", &root.snapshot),
            ] {
                let ids: Vec<String> = role.keys.iter().map(ToString::to_string).collect();
                outln!(
                    "  {name:<10} {} of {}: {}",
                    role.threshold,
                    role.keys.len(),
                    ids.join(", ")
                );
            }
            let by_root = valid
                .iter()
                .filter(|id| root.root.keys.contains(id))
                .count();
            outln!(
                "  signed by {by_root} of its root keys ({} needed){}",
                root.root.threshold,
                if by_root as u32 >= root.root.threshold {
                    ""
                } else {
                    ": not yet valid"
                }
            );
            Ok(())
        }
    }
}
