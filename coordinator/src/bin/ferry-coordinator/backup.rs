//! `ferry-coordinator backup --to DIR` and `restore --from DIR`. A backup of a running
//! coordinator is written by that coordinator (it holds the database open), asked over its
//! admin API with the admin token; with none running on an embedded store, this process opens
//! the database and writes it itself. On shared stores a running node always writes it: it
//! holds the fleet-wide garbage-collection fence meanwhile. Restore runs with no coordinator
//! on the stores it fills (a data directory without a database, or an empty shared
//! database), and walks the restored audit chain before it reports success.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ferry_coordinator::api::BackupSummary;
use ferry_coordinator::api::{ApiError, BackupRequest};
use ferry_coordinator::config::Config;
use ferry_coordinator::outln;
use ferry_coordinator::store::backup;
use ferry_coordinator::store::{Store, StoreError};
use ferry_coordinator::stores;

/// Writes a backup of the data directory `config` names into `to`.
pub(crate) fn backup(config: &Config, to: &Path, token: Option<String>) -> Result<()> {
    let to = std::path::absolute(to).with_context(|| format!("{}", to.display()))?;
    if stores::records_are_shared(config) {
        let summary = ask_running(config, &to, token).context(
            "on shared stores a running coordinator writes the backup (it holds the fleet-wide garbage-collection fence): run backup with a running node's configuration",
        )?;
        print_backup(&summary, "the shared stores");
        return Ok(());
    }
    let path = stores::embedded_path(config);
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let summary = match Store::open(&path) {
        Ok(store) => {
            let chunks = stores::open_chunks(config)?;
            backup::write(
                &store,
                &chunks,
                &config.data_dir,
                &to,
                ferry_coordinator::unix_now(),
            )?
        }
        Err(StoreError::Database(redb::Error::DatabaseAlreadyOpen)) => {
            outln!("the coordinator is running: asking it to write the backup");
            ask_running(config, &to, token)?
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    print_backup(&summary, &config.data_dir.display().to_string());
    Ok(())
}

fn print_backup(summary: &BackupSummary, of: &str) {
    outln!(
        "backup of {of} written to {}: {} files, {} bytes, {} records, {:.1} s",
        summary.dir.display(),
        summary.files,
        summary.bytes,
        summary.records,
        summary.secs
    );
}

/// Restores the backup in `from` into the data directory `config` names.
pub(crate) fn restore(config: &Config, from: &Path) -> Result<()> {
    // Into the stores the configuration names; the embedded default, exactly as it was.
    let (summary, store) = if stores::records_are_shared(config) || config.store.chunks.is_some() {
        let store = stores::open_records(config)?;
        let chunks = stores::open_chunks(config)?;
        let summary = backup::restore_into(from, &store, &chunks, &config.data_dir)?;
        outln!(
            "moved {} records into {}; chunks into {}",
            summary.records,
            store.describe(),
            chunks.describe()
        );
        (summary, store)
    } else {
        let summary = backup::restore(from, &config.data_dir)?;
        let store = Store::open(&stores::embedded_path(config))
            .context("cannot open the restored database")?;
        (summary, store)
    };
    let audit = store.verify_audit(None)?;
    if let Some(broken) = &audit.broken {
        bail!(
            "restored, but the audit trail is broken at entry {}: {}",
            broken.seq,
            audit
        );
    }
    outln!(
        "restored {} files ({} bytes) from {} into {} in {:.1} s",
        summary.files,
        summary.bytes,
        from.display(),
        config.data_dir.display(),
        summary.secs
    );
    outln!("{audit}");
    Ok(())
}

/// Asks the coordinator running on `config`'s data directory to write the backup.
fn ask_running(config: &Config, to: &Path, token: Option<String>) -> Result<BackupSummary> {
    let token = match token {
        Some(t) => t,
        None => {
            let file = config.data_dir.join("admin.token");
            std::fs::read_to_string(&file)
                .with_context(|| {
                    format!(
                        "no admin token: pass --token or FERRY_TOKEN (cannot read {})",
                        file.display()
                    )
                })?
                .trim()
                .to_owned()
        }
    };
    let mut addr = config.http_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let tls = config.admin_speaks_tls();
    let url = format!(
        "{}://{addr}/api/v1/backup",
        if tls { "https" } else { "http" }
    );
    let mut client = reqwest::Client::builder();
    if tls {
        client = client.use_preconfigured_tls(pinned_tls(config)?);
    }
    let client = client.build().context("cannot set up the HTTP client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let response = client
            .post(&url)
            .bearer_auth(token)
            .json(&BackupRequest { to: to.to_owned() })
            .send()
            .await
            .with_context(|| format!("cannot reach the running coordinator at {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<ApiError>(&body).map_or(body, |e| e.error);
            bail!("the coordinator refused the backup: {message} ({status})");
        }
        serde_json::from_str(&body).context("unreadable answer from the coordinator")
    })
}

/// TLS trusting exactly the certificate the admin API presents (its PEM leaf, or the
/// coordinator's own certificate).
fn pinned_tls(config: &Config) -> Result<rustls::ClientConfig> {
    let cert = match &config.admin_tls_cert {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::CertificateDer::pem_file_iter(pem)
                .with_context(|| format!("{}", pem.display()))?
                .next()
                .with_context(|| format!("{} holds no certificate", pem.display()))?
                .with_context(|| format!("{}", pem.display()))?
                .to_vec()
        }
        None => {
            let der: PathBuf = config.data_dir.join("tls").join("cert.der");
            std::fs::read(&der).with_context(|| format!("cannot read {}", der.display()))?
        }
    };
    let pin = ferry_shared::fingerprint::fingerprint(&cert);
    let (tls, _) = ferry_shared::pinned::https_client_config(&pin).context("TLS is unavailable")?;
    Ok(tls)
}
