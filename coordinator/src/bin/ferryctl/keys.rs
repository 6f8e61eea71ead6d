//! `ferryctl keys`: create publisher keys, and manage which ones the coordinator trusts.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ferry_coordinator::api::{KeyView, TrustKey};
use ferry_coordinator::outln;
use ferry_shared::{PublicKey, Release, SecretKey, SignedRelease};

use crate::client::Client;
use crate::output::{Table, ago, json};

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a publisher key pair: KEY (private, mode 0600) and KEY.pub.
    Generate(GenerateArgs),
    /// Trust a publisher key on the coordinator.
    Trust {
        /// A .pub file, or the key text `ed25519:…`.
        key: String,
        /// Name for people (e.g. `ci-release`).
        #[arg(long)]
        name: String,
    },
    /// The offline root ceremony: draft, sign and show root metadata (files only).
    #[command(subcommand)]
    Root(crate::root::RootCommand),
    /// Keys the coordinator trusts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// Where to write the private key; the public key goes to the same path plus `.pub`.
    #[arg(long, default_value = "publisher.key")]
    out: PathBuf,
}

/// Writes a fresh key pair; never overwrites.
pub(crate) fn generate(args: &GenerateArgs) -> Result<()> {
    let key = SecretKey::generate()?;
    let public_path = PathBuf::from(format!("{}.pub", args.out.display()));
    if args.out.exists() || public_path.exists() {
        bail!(
            "{} or {} already exists; refusing to overwrite a key",
            args.out.display(),
            public_path.display()
        );
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    writeln!(file, "{}", key.to_text())?;
    file.sync_all()?;
    std::fs::write(&public_path, format!("{}\n", key.public()))
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    outln!(
        "private key  {} (keep it secret; mode 0600)",
        args.out.display()
    );
    outln!("public key   {}", public_path.display());
    outln!("key id       {}", key.public().key_id());
    outln!("{}", key.public());
    Ok(())
}

/// Reads a public key from a file or takes it literally.
pub(crate) fn public_key_arg(text: &str) -> Result<PublicKey> {
    let path = Path::new(text);
    let literal = if path.exists() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {text}"))?
    } else {
        text.to_owned()
    };
    literal
        .parse()
        .with_context(|| format!("`{text}` is neither a public key file nor a key"))
}

/// Reads a private key file.
pub(crate) fn secret_key_file(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key {}", path.display()))?;
    SecretKey::from_text(&text).with_context(|| format!("{}", path.display()))
}

/// Signs `release` with the private key in every file of `paths` (at least one; a root may
/// require several publishers' signatures).
pub(crate) fn sign_release(release: &Release, paths: &[PathBuf]) -> Result<SignedRelease> {
    let keys = paths
        .iter()
        .map(|p| secret_key_file(p))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&SecretKey> = keys.iter().collect();
    Ok(SignedRelease::sign_all(release, &refs)?)
}

/// The ids of the keys that signed the envelope `signed`, for messages: `a1b2…, c3d4…`.
pub(crate) fn signer_ids(signed: &[u8]) -> String {
    ferry_shared::sign::Envelope::from_bytes(signed)
        .map(|e| {
            e.signatures
                .iter()
                .map(|s| s.key_id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

pub(crate) async fn run(client: &Client, command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Generate(args) => generate(&args),
        KeysCommand::Root(command) => crate::root::run_online(client, command).await,
        KeysCommand::Trust { key, name } => {
            let key = public_key_arg(&key)?;
            let status = client
                .post_json(
                    "/keys",
                    &TrustKey {
                        public_key: key.to_string(),
                        name: name.clone(),
                    },
                )
                .await?;
            let what = if status == reqwest::StatusCode::CREATED {
                "now trusted"
            } else {
                "was already trusted"
            };
            outln!("publisher key {} ({name}) {what}", key.key_id());
            Ok(())
        }
        KeysCommand::List { json: as_json } => {
            let keys: Vec<KeyView> = client.get("/keys").await?;
            if as_json {
                return json(&keys);
            }
            let mut table = Table::new(&["KEY ID", "NAME", "ADDED", "BY"]);
            for k in keys {
                table.row(vec![k.key_id, k.name, ago(k.added_at), k.added_by]);
            }
            table.print();
            Ok(())
        }
    }
}
