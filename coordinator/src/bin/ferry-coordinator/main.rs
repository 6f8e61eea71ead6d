//! `ferry-coordinator`: the daemon. Prepares its data directory on first start (TLS
//! certificate, admin and enrollment tokens), then serves agents over QUIC and operators over
//! HTTP until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ferry_coordinator::agents::quic;
use ferry_coordinator::agents::transfer::Transfer;
use ferry_coordinator::app::Coordinator;
use ferry_coordinator::config::Config;
use ferry_coordinator::http::{listen as http_listen, router as http};
use ferry_coordinator::outln;
use ferry_coordinator::secrets;
use ferry_coordinator::store::Store;
use ferry_coordinator::store::deltas::DeltaCache;

/// A line of the start-up banner. A daemon goes on serving when nobody reads its standard
/// output any more (a closed pipe), so a failed write is dropped, never a panic.
mod backup;

macro_rules! banner {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Ferry coordinator: model registry and rollout brain.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (see coordinator.example.toml).
    #[arg(long, env = "FERRY_COORDINATOR_CONFIG", hide_env_values = true)]
    config: Option<PathBuf>,
    /// Data directory (database, chunks, deltas, TLS, tokens). Default: ./ferry-data
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// QUIC address for agents. Default: 127.0.0.1:7400
    #[arg(long)]
    quic_listen: Option<SocketAddr>,
    /// HTTP address of the admin API. Default: 127.0.0.1:7401
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// TLS on the admin API: auto (unless it listens on loopback), on, off. Default: auto
    #[arg(long, value_enum)]
    admin_tls: Option<ferry_coordinator::config::AdminTls>,
    /// Agent heartbeat interval in seconds.
    #[arg(long)]
    heartbeat_secs: Option<u32>,
    /// How often rollouts are evaluated, in milliseconds.
    #[arg(long)]
    rollout_tick_ms: Option<u64>,
    /// How often a sample of the fragmentation is kept for its history, in seconds.
    #[arg(long, alias = "fragmentation-snapshot-secs")]
    fragmentation_sample_secs: Option<u64>,
    /// Walk the audit trail's hash chain in the data directory and exit (1 when broken),
    /// without trusting a running coordinator (stop it first: the database is locked).
    #[arg(long)]
    verify_audit: bool,
    /// With --verify-audit: a head kept from an earlier walk (SEQ:HASH).
    #[arg(long, requires = "verify_audit")]
    anchor: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do instead of serving.
#[derive(Subcommand)]
enum Command {
    /// Write a consistent backup of the data directory (database, chunks, keys, token
    /// hashes, with a manifest of hashes) into a new or empty directory; a running
    /// coordinator writes it while it serves.
    Backup {
        /// The directory to write (on this host).
        #[arg(long)]
        to: PathBuf,
        /// Admin token for a running coordinator [default: DATA_DIR/admin.token]
        #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Bring a backup back into a data directory that holds no database (stop the
    /// coordinator first); every file is checked against the backup's manifest.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
    },
    /// Move an embedded install's records (DATA_DIR/ferry.redb) into an empty PostgreSQL
    /// database, in one transaction, checked by walking the audit chain on both sides (stop
    /// the coordinator first). The embedded database is left as it was.
    Migrate {
        /// The data directory whose database to move.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database (`postgres://USER@HOST:PORT/DATABASE`).
        #[arg(long)]
        to: String,
        /// A file whose first line is the database password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The certificate authority (PEM) of the database server's certificate: connect
        /// over TLS and verify it.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
}

/// Arenas for all threads: the encode workers allocate windows and indexes side by side.
const ALLOCATOR_ARENAS: u8 = 2;

fn main() -> ExitCode {
    ferry_shared::allocator::configure(ALLOCATOR_ARENAS);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| "info,quinn=warn,rustls=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-coordinator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(addr) = args.quic_listen {
        config.quic_listen = addr;
    }
    if let Some(addr) = args.http_listen {
        config.http_listen = addr;
    }
    if let Some(tls) = args.admin_tls {
        config.admin_tls = tls;
    }
    if let Some(secs) = args.heartbeat_secs {
        config.heartbeat_secs = secs;
    }
    if let Some(ms) = args.rollout_tick_ms {
        config.rollout_tick_ms = ms;
    }
    if let Some(secs) = args.fragmentation_sample_secs {
        config.fragmentation_sample_secs = secs;
    }
    config.validate()?;
    match args.command {
        Some(Command::Backup { to, token }) => return backup::backup(&config, &to, token),
        Some(Command::Restore { from }) => return backup::restore(&config, &from),
        Some(Command::Migrate {
            from,
            to,
            password_file,
            ca_file,
        }) => return migrate(&from, to, password_file, ca_file),
        None => {}
    }
    if args.verify_audit {
        return verify_audit(&config, args.anchor.as_deref());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> Result<()> {
    let dir = config.data_dir.clone();
    create_private_dir(&dir)?;
    let (tls, tls_created) = secrets::tls_identity(&dir, &config.server_names)?;
    let admin_path = dir.join("admin.token");
    let enroll_path = dir.join("enrollment.token");
    let (admin_token, admin_created) = secrets::token(&admin_path)?;
    let viewer_path = dir.join("viewer.token");
    let (viewer_token, viewer_created) = secrets::token(&viewer_path)?;
    let (enrollment_token, enroll_created) = secrets::token(&enroll_path)?;
    let snapshot_path = dir.join("snapshot.key");
    let (snapshot_key, snapshot_created) = secrets::snapshot_key(&snapshot_path)?;
    let store = open_store(&config)?;
    banner!("records: {}", store.describe());
    let chunks = ferry_coordinator::stores::open_chunks(&config)?;
    banner!("chunks: {}", chunks.describe());
    let transfer = Transfer::new(
        chunks,
        DeltaCache::new(dir.join("deltas"))
            .with_context(|| format!("cannot open the delta cache in {}", dir.display()))?,
        config.delta_level,
        config.encode_workers,
    );
    let config_keys = config
        .trusted_publishers
        .iter()
        .map(|k| {
            k.parse()
                .with_context(|| format!("trusted_publishers: `{k}`"))
        })
        .collect::<Result<Vec<_>>>()?;

    let endpoint = quic::endpoint(config.quic_listen, &tls, secrets::restart_keys(&dir)?)?;
    let quic_addr = endpoint
        .local_addr()
        .context("QUIC endpoint has no address")?;
    let listener = http::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let admin_tls = admin_acceptor(&config, &tls)?;
    let scheme = if admin_tls.is_some() { "https" } else { "http" };
    if admin_tls.is_none() && !http_addr.ip().is_loopback() {
        tracing::warn!(
            "the admin API speaks plain HTTP on {http_addr}: bearer tokens cross the network in clear text (admin_tls = \"off\")"
        );
    }

    let created = |yes: bool| if yes { " (created now)" } else { "" };
    let token_file = |file: secrets::TokenFile| match file {
        secrets::TokenFile::Created => {
            " (created now: store it elsewhere; the coordinator needs only its hash)"
        }
        secrets::TokenFile::Kept => "",
        secrets::TokenFile::Removed => " (removed; its hash admits it)",
    };
    banner!("ferry-coordinator {}", env!("CARGO_PKG_VERSION"));
    banner!("  data directory    {}", dir.display());
    banner!(
        "  admin token       {}{}",
        admin_path.display(),
        token_file(admin_created)
    );
    banner!(
        "  viewer token      {}{} (read-only: dashboard, /metrics)",
        viewer_path.display(),
        token_file(viewer_created)
    );
    banner!(
        "  enrollment token  {}{}",
        enroll_path.display(),
        token_file(enroll_created)
    );
    banner!(
        "  snapshot key      {}{} (online; name {} in the root metadata)",
        snapshot_path.display(),
        created(snapshot_created),
        snapshot_key.public()
    );
    banner!(
        "  TLS certificate   {}{}",
        tls.cert_path.display(),
        created(tls_created)
    );
    banner!("  fingerprint       {}", tls.fingerprint);
    banner!("  agents (QUIC)     {quic_addr}");
    banner!("  admin API         {scheme}://{http_addr}");
    banner!("  dashboard         {scheme}://{http_addr}/");
    banner!(
        "ready quic={quic_addr} http={http_addr} admin={scheme}://{http_addr} fingerprint={}",
        tls.fingerprint
    );

    let app = Arc::new(Coordinator::new(
        config,
        store,
        transfer,
        ferry_coordinator::app::Tokens {
            snapshot_key,
            admin: admin_token,
            viewer: viewer_token,
            enrollment: enrollment_token,
        },
        config_keys,
    ));
    // What this node sent each device before it restarted: the device page goes on from it.
    // (Off the runtime's workers: the PostgreSQL client blocks.)
    let reader = app.clone();
    match tokio::task::spawn_blocking(move || reader.store.transfers_by(&reader.node)).await {
        Ok(Ok(rows)) => app.transfers_by_device.restore(rows),
        Ok(Err(e)) => tracing::warn!("cannot read what devices were sent before: {e}"),
        Err(e) => tracing::warn!("reading what devices were sent before panicked: {e}"),
    }
    let quic_task = tokio::spawn(quic::serve(endpoint.clone(), app.clone()));
    let http_task = tokio::spawn(http::serve(listener, admin_tls, app.clone()));
    let warm_task = tokio::spawn(ferry_coordinator::agents::warm::warm_on_alias_moves(
        app.clone(),
    ));
    let trim_task = tokio::spawn(ferry_coordinator::agents::trim::trim_when_idle(app.clone()));
    let rollout_task = tokio::spawn(ferry_coordinator::rollout::run::drive(
        app.clone(),
        std::time::Duration::from_millis(app.config.rollout_tick_ms),
    ));
    let lifecycle_task = ferry_coordinator::automatic_moves::interval(&app)
        .map(|tick| tokio::spawn(ferry_coordinator::automatic_moves::drive(app.clone(), tick)));
    let sample_task = tokio::spawn(ferry_coordinator::fleet::views::keep_samples(app.clone()));
    let transfers_task = tokio::spawn(ferry_coordinator::fleet::transfers_writer::keep_written(
        app.clone(),
    ));
    let follow_task = tokio::spawn(ferry_coordinator::agents::follow::follow_changes(
        app.clone(),
    ));
    // Under systemd (Type=notify) the unit is started once both listeners are bound; elsewhere
    // there is no NOTIFY_SOCKET and this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot tell systemd the coordinator is ready: {e}");
    }
    shutdown_signal().await?;
    tracing::info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    sample_task.abort();
    follow_task.abort();
    endpoint.close(0u32.into(), b"coordinator shutting down");
    http_task.abort();
    transfers_task.abort();
    let writer = app.clone();
    let written = tokio::task::spawn_blocking(move || {
        writer
            .transfers_by_device
            .flush(&writer.store, &writer.node)
    })
    .await;
    if let Ok(Err(e)) = written {
        tracing::warn!("cannot store what devices were sent: {e}");
    }
    warm_task.abort();
    trim_task.abort();
    rollout_task.abort();
    if let Some(task) = lifecycle_task {
        task.abort();
    }
    if app.store.is_shared() {
        // Another coordinator takes over at once instead of waiting for the leases to lapse.
        let app = app.clone();
        let released = tokio::task::spawn_blocking(move || {
            for lease in [
                ferry_coordinator::rollout::run::DRIVER_LEASE,
                ferry_coordinator::fleet::views::SAMPLES_LEASE,
                ferry_coordinator::automatic_moves::LEASE,
            ] {
                app.store.release_lease(lease, &app.node)?;
            }
            Ok::<_, ferry_coordinator::store::StoreError>(())
        })
        .await;
        if let Ok(Err(e)) = released {
            tracing::warn!("cannot give the leases up: {e}");
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint.wait_idle()).await;
    quic_task.abort();
    Ok(())
}

/// The admin API's TLS acceptor, when it speaks TLS: the configured PEM certificate and key,
/// or the coordinator's own certificate (the one agents pin).
fn admin_acceptor(
    config: &Config,
    own: &secrets::TlsIdentity,
) -> Result<Option<tokio_rustls::TlsAcceptor>> {
    if !config.admin_speaks_tls() {
        return Ok(None);
    }
    let (chain, key) = match (&config.admin_tls_cert, &config.admin_tls_key) {
        (Some(cert), Some(key)) => http_listen::read_pem(cert, key)?,
        _ => (vec![own.cert.clone()], own.key.clone_key()),
    };
    Ok(Some(http_listen::acceptor(chain, key)?))
}

/// The store the configuration names: PostgreSQL when `[store] metadata` is set, else the
/// embedded database in the data directory.
fn open_store(config: &Config) -> Result<Store> {
    Ok(ferry_coordinator::stores::open_records(config)?)
}

/// `migrate`: an embedded install's records into PostgreSQL.
fn migrate(
    from: &std::path::Path,
    to: String,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
) -> Result<()> {
    let path = from.join("ferry.redb");
    anyhow::ensure!(path.exists(), "no database at {}", path.display());
    let source = Store::open(&path).with_context(|| {
        format!(
            "cannot open {} (is the coordinator running?)",
            path.display()
        )
    })?;
    let settings = ferry_coordinator::config::StoreSettings {
        metadata: Some(to),
        metadata_password_file: password_file,
        metadata_ca_file: ca_file,
        ..Default::default()
    };
    let (url, access) = settings
        .postgres()?
        .context("no PostgreSQL database named")?;
    let target =
        Store::open_postgres(&url, &access).context("cannot open the PostgreSQL database")?;
    let moved = source.move_into(&target)?;
    outln!(
        "moved {} records from {} into {}; audit trail intact up to {}",
        moved.records,
        source.describe(),
        target.describe(),
        moved
            .head
            .map_or_else(|| "(empty)".to_owned(), |h| h.to_string())
    );
    outln!(
        "chunks stay in {}: point every coordinator's data_dir at them, or at shared storage",
        from.join("chunks").display()
    );
    Ok(())
}

/// `--verify-audit`: the chain in the configured database itself.
fn verify_audit(config: &Config, anchor: Option<&str>) -> Result<()> {
    let anchor = anchor
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if config.store.metadata.is_none() {
        let path = config.data_dir.join("ferry.redb");
        anyhow::ensure!(path.exists(), "no database at {}", path.display());
    }
    let store = open_store(config)?;
    let found = store.verify_audit(anchor)?;
    outln!("{found}");
    if let Some(broken) = found.broken {
        anyhow::bail!("the audit trail is broken at entry {}", broken.seq);
    }
    Ok(())
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    /// Renamed flags keep working in the units and scripts written for older builds.
    #[test]
    fn the_older_fragmentation_flag_still_parses() {
        for flag in [
            "--fragmentation-sample-secs",
            "--fragmentation-snapshot-secs",
        ] {
            let args = Args::try_parse_from(["ferry-coordinator", flag, "7"]).unwrap();
            assert_eq!(args.fragmentation_sample_secs, Some(7), "{flag}");
        }
    }
}
