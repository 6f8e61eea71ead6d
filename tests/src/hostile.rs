//! A hostile coordinator, for the attack tests. It holds what an attacker who took over the
//! coordinator's host would hold: its TLS identity (so agents connect to it exactly as they
//! connect to the real one, on the same address) and its online snapshot key, but none of the
//! offline root keys and no publisher key. It admits any agent without checking anything,
//! pushes the desired states a test scripts, and records what the agents report.
//!
//! It speaks the real protocol through the real framing code, so what an agent refuses here
//! it refuses from any peer.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use ferry_coordinator::agents::quic;
use ferry_coordinator::secrets;
use ferry_shared::SecretKey;
use ferry_shared::wire::io::{read_frame, read_preamble, write_frame, write_preamble};
use ferry_shared::wire::{DesiredState, DeviceId, DeviceReport, ToAgent, ToCoordinator, Welcome};
use tokio::sync::oneshot;

/// A running hostile coordinator (stopped when dropped).
pub struct HostileCoordinator {
    reports: Arc<Mutex<Vec<DeviceReport>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The coordinator's online snapshot key, as an attacker on its host would read it.
pub fn stolen_snapshot_key(data_dir: &Path) -> Result<SecretKey> {
    let path = data_dir.join("snapshot.key");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(SecretKey::from_text(&text)?)
}

impl HostileCoordinator {
    /// Listens on `listen` with the TLS identity in `data_dir` (the real coordinator must be
    /// stopped), and tells every agent that connects `desired`, in order.
    pub fn start(data_dir: &Path, listen: SocketAddr, desired: Vec<DesiredState>) -> Result<Self> {
        let (tls, _) = secrets::tls_identity(data_dir, &[])?;
        let keys = secrets::restart_keys(data_dir)?;
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let recorded = reports.clone();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let endpoint = match quic::endpoint(listen, &tls, keys) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let desired = Arc::new(desired);
                tokio::select! {
                    () = accept(&endpoint, desired, recorded) => {}
                    _ = stopped => {}
                }
                endpoint.close(0u32.into(), b"bye");
            });
        });
        ready_rx
            .recv()
            .context("the hostile coordinator's thread died")??;
        Ok(Self {
            reports,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Every report received so far (the `Hello`'s included), oldest first.
    pub fn reports(&self) -> Vec<DeviceReport> {
        self.reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for HostileCoordinator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    endpoint: &quinn::Endpoint,
    desired: Arc<Vec<DesiredState>>,
    reports: Arc<Mutex<Vec<DeviceReport>>>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let (desired, reports) = (desired.clone(), reports.clone());
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                // A session that breaks ends; the agent reconnects and is told again.
                let _ = session(conn, &desired, &reports).await;
            }
        });
    }
}

async fn session(
    conn: quinn::Connection,
    desired: &[DesiredState],
    reports: &Mutex<Vec<DeviceReport>>,
) -> Result<()> {
    let record = |report: DeviceReport| {
        reports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(report);
    };
    let (mut send, mut recv) = conn.accept_bi().await?;
    read_preamble(&mut recv).await?;
    let Some(ToCoordinator::Hello(hello)) = read_frame(&mut recv, "hello").await? else {
        anyhow::bail!("no hello");
    };
    write_preamble(&mut send).await?;
    write_frame(
        &mut send,
        &ToAgent::Welcome(Welcome {
            device_id: DeviceId::of(&hello.device_key),
            heartbeat_secs: 1,
            events_through: 0,
        }),
    )
    .await?;
    record(hello.report);
    for state in desired {
        write_frame(&mut send, &ToAgent::Desired(state.clone())).await?;
    }
    while let Some(message) = read_frame::<_, ToCoordinator>(&mut recv, "report").await? {
        if let ToCoordinator::Report(report) = message {
            record(report);
        }
    }
    Ok(())
}
