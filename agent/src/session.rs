//! The agent's session with the coordinator: one long-lived QUIC connection with a control
//! stream, re-established with jittered exponential backoff whenever it drops.
//!
//! It introduces the device (identity proof bound to this TLS session, labels, state), then
//! forwards the coordinator's pushes (desired state, acknowledgements) to the daemon and sends
//! the daemon's latest report whenever it changes and at every heartbeat. The open connection
//! is published for downloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_shared::SecretKey;
use ferry_shared::sign::DEVICE_AUTH_CONTEXT;
use ferry_shared::wire::io::{
    FrameIoError, read_frame, read_preamble, write_frame, write_preamble,
};
use ferry_shared::wire::{
    CONDITIONS_SINCE, DEVICE_AUTH_EXPORTER_LABEL, DISTRIBUTIONS_SINCE, DesiredState, DeviceId,
    DeviceReport, Follow, Hello, Refusal, ToAgent, ToCoordinator,
};
use quinn::{Connection, Endpoint};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::backoff;
use crate::conditions::ConditionsProbe;
use crate::config::Config;
use crate::tls::PinnedCert;

/// The longest pause between reconnection attempts while a download is unfinished.
const DOWNLOADING_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What the session tells the daemon.
#[derive(Debug)]
pub enum FromSession {
    /// A session is open.
    Up {
        /// The id the coordinator knows us by.
        device_id: DeviceId,
        /// Events through this sequence are stored.
        events_through: u64,
    },
    /// The coordinator's wish for a model.
    Desired(DesiredState),
    /// Events through this sequence are stored.
    Ack(u64),
    /// The coordinator's rules for this device (its cohort's windows, overrides).
    Policy(ferry_shared::wire::Policy),
    /// The session ended or could not start.
    Down(String),
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Could not connect.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address concerned.
        addr: std::net::SocketAddr,
        /// What was wrong, in words.
        reason: String,
    },
    /// The certificate is not the pinned one.
    #[error(
        "the coordinator's certificate fingerprint is {presented}, not the pinned {pinned}: refusing to talk to it"
    )]
    Fingerprint {
        /// The fingerprint the agent pins (`sha256:…`).
        pinned: String,
        /// The fingerprint of the certificate the coordinator presented.
        presented: String,
    },
    /// The coordinator refused us.
    #[error("the coordinator refused this device ({kind:?}): {message}")]
    Refused {
        /// What kind of refusal it was (enrollment, revocation, protocol).
        kind: ferry_shared::wire::RefusalKind,
        /// The coordinator's explanation, as it sent it.
        message: String,
    },
    /// The connection failed.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Bad frames.
    #[error(transparent)]
    Frame(#[from] FrameIoError),
    /// The coordinator broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Everything a session needs.
pub struct SessionParams {
    /// The agent's configuration.
    pub config: Arc<Config>,
    /// Identity key.
    pub key: Arc<SecretKey>,
    /// The client endpoint.
    pub endpoint: Endpoint,
    /// TLS client configuration.
    pub client: quinn::ClientConfig,
    /// The pinning verifier (for explaining failures).
    pub pinned: Arc<PinnedCert>,
    /// Model metrics from the application, sent with every report.
    pub metrics: Arc<crate::metrics::Intakes>,
    /// The switches the device holds back now (its conditions).
    pub deferred: Arc<std::sync::Mutex<Vec<ferry_shared::wire::Deferral>>>,
}

/// Keeps a session up forever (until the task is dropped).
pub async fn run(
    params: SessionParams,
    reports: watch::Receiver<DeviceReport>,
    to_daemon: mpsc::Sender<FromSession>,
    connection: watch::Sender<Option<Connection>>,
) {
    let mut attempt = 0u32;
    // Which coordinator to try: the same one again after a session that ended, the next
    // one after a failure to reach it.
    let mut turn = 0usize;
    let probe = Arc::new(std::sync::Mutex::new(ConditionsProbe::new(
        params.config.state_dir.clone(),
    )));
    loop {
        let started = Instant::now();
        let addr = params.config.coordinators[turn % params.config.coordinators.len()];
        if let Ok(mut p) = probe.lock() {
            p.forget_sent();
        }
        let link = Link {
            to_daemon: &to_daemon,
            connection: &connection,
            probe: &probe,
        };
        let result = one_session(&params, addr, reports.clone(), link).await;
        if !matches!(result, Ok(())) {
            turn = turn.wrapping_add(1);
        }
        connection.send_replace(None);
        let reason = match result {
            Ok(()) => "the coordinator closed the session".to_owned(),
            Err(e) => e.to_string(),
        };
        if to_daemon.send(FromSession::Down(reason)).await.is_err() {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            attempt = 0;
        }
        attempt = attempt.saturating_add(1);
        // While a download waits for the link, come back within seconds of its return
        // rather than after a backoff grown through the whole cut.
        let downloading = reports.borrow().models.iter().any(|m| {
            matches!(
                m.phase,
                ferry_shared::wire::UpdatePhase::Fetching(_)
                    | ferry_shared::wire::UpdatePhase::Retrying { .. }
            )
        });
        let cap = if downloading {
            params.config.poll_interval.min(DOWNLOADING_BACKOFF_CAP)
        } else {
            params.config.poll_interval
        };
        let pause = backoff::delay(attempt, Duration::from_millis(250), cap);
        tokio::time::sleep(pause).await;
    }
}

/// Sends the metric value distributions when they changed since `sent` (a mark it moves).
async fn send_distributions(
    send: &mut quinn::SendStream,
    metrics: &crate::metrics::Intakes,
    sent: &mut u64,
) -> Result<(), FrameIoError> {
    if let Some((mark, all)) = metrics.distributions_since(*sent) {
        write_frame(send, &ToCoordinator::Distributions(all)).await?;
        *sent = mark;
    }
    Ok(())
}

/// Sends the device's conditions when they are news (measured off the runtime: what the agent
/// holds is walked on disk).
async fn send_conditions(
    send: &mut quinn::SendStream,
    probe: &Arc<std::sync::Mutex<ConditionsProbe>>,
    deferred: &Arc<std::sync::Mutex<Vec<ferry_shared::wire::Deferral>>>,
    installed: bool,
) -> Result<(), FrameIoError> {
    let probe = probe.clone();
    let deferred = deferred.lock().map(|d| d.clone()).unwrap_or_default();
    let news = tokio::task::spawn_blocking(move || {
        probe
            .lock()
            .ok()
            .and_then(|mut p| p.news(&deferred, installed))
    })
    .await
    .ok()
    .flatten();
    if let Some(conditions) = news {
        write_frame(send, &ToCoordinator::Conditions(conditions)).await?;
    }
    Ok(())
}

/// What a session reports through, besides the stream.
struct Link<'a> {
    to_daemon: &'a mpsc::Sender<FromSession>,
    connection: &'a watch::Sender<Option<Connection>>,
    probe: &'a Arc<std::sync::Mutex<ConditionsProbe>>,
}

async fn one_session(
    params: &SessionParams,
    addr: std::net::SocketAddr,
    mut reports: watch::Receiver<DeviceReport>,
    link: Link<'_>,
) -> Result<(), SessionError> {
    let Link {
        to_daemon,
        connection,
        probe,
    } = link;
    let config = &params.config;
    let connect_error = |reason: String| SessionError::Connect { addr, reason };
    let connecting = params
        .endpoint
        .connect_with(params.client.clone(), addr, &config.server_name)
        .map_err(|e| connect_error(e.to_string()))?;
    let conn = match connecting.await {
        Ok(conn) => conn,
        Err(e) => {
            return Err(match params.pinned.last_mismatch() {
                Some(presented) => SessionError::Fingerprint {
                    pinned: params.pinned.pin().to_owned(),
                    presented,
                },
                None => connect_error(e.to_string()),
            });
        }
    };
    let (mut send, mut recv) = conn.open_bi().await?;
    write_preamble(&mut send).await?;
    let mut material = [0u8; 32];
    conn.export_keying_material(&mut material, DEVICE_AUTH_EXPORTER_LABEL, b"")
        .map_err(|_| SessionError::Protocol("TLS keying material unavailable".into()))?;
    let hello = Hello {
        device_key: params.key.public(),
        proof: params.key.sign(DEVICE_AUTH_CONTEXT, &material).to_vec(),
        enrollment_token: config.enrollment_token.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        labels: config.all_labels(),
        follows: config
            .follows()
            .into_iter()
            .map(|(model, alias)| Follow { model, alias })
            .collect(),
        report: DeviceReport {
            metrics: params.metrics.snapshot(),
            ..reports.borrow_and_update().clone()
        },
    };
    write_frame(&mut send, &ToCoordinator::Hello(Box::new(hello))).await?;
    // Whatever version the coordinator speaks, its refusal is variant 0 and readable.
    let their_preamble = read_preamble(&mut recv).await?;
    // Distributions go only to a coordinator that knows the message.
    let sends_distributions = their_preamble.version >= DISTRIBUTIONS_SINCE;
    let sends_conditions = their_preamble.version >= CONDITIONS_SINCE;
    let mut distributions_sent = 0u64;
    let welcome = match read_frame::<_, ToAgent>(&mut recv, "welcome").await? {
        Some(ToAgent::Welcome(w)) => w,
        Some(ToAgent::Refused(Refusal { kind, message })) => {
            return Err(SessionError::Refused { kind, message });
        }
        Some(other) => {
            return Err(SessionError::Protocol(format!(
                "expected welcome, got {other:?}"
            )));
        }
        None => {
            return Err(SessionError::Protocol(
                "the coordinator closed the stream".into(),
            ));
        }
    };
    info!(device = %welcome.device_id, coordinator = %addr, "connected");
    connection.send_replace(Some(conn.clone()));
    if to_daemon
        .send(FromSession::Up {
            device_id: welcome.device_id,
            events_through: welcome.events_through,
        })
        .await
        .is_err()
    {
        return Ok(());
    }

    let forward = to_daemon.clone();
    let mut reader = tokio::spawn(async move {
        loop {
            match read_frame::<_, ToAgent>(&mut recv, "push").await {
                Ok(Some(ToAgent::Desired(d))) => {
                    if forward.send(FromSession::Desired(d)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(Some(ToAgent::Policy(policy))) => {
                    if forward.send(FromSession::Policy(policy)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(Some(ToAgent::Ack { events_through })) => {
                    if forward
                        .send(FromSession::Ack(events_through))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Ok(Some(ToAgent::Refused(r))) => {
                    return Err(SessionError::Refused {
                        kind: r.kind,
                        message: r.message,
                    });
                }
                Ok(Some(ToAgent::Welcome(_))) => {
                    return Err(SessionError::Protocol("second welcome".into()));
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(SessionError::from(e)),
            }
        }
    });
    // The coordinator probes whether this session is alive (when another agent presents this
    // device's identity) with a one-byte stream; drop each, so they never use up the limit.
    let probes = tokio::spawn({
        let conn = conn.clone();
        async move {
            while let Ok(stream) = conn.accept_uni().await {
                drop(stream);
            }
        }
    });
    let mut heartbeat = tokio::time::interval(Duration::from_secs(u64::from(
        welcome.heartbeat_secs.max(1),
    )));
    heartbeat.tick().await;
    let result = loop {
        tokio::select! {
            changed = reports.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                // With the metrics: a version that (re)starts serving starts from zero, and
                // the coordinator must not judge it by figures from before.
                let mut report = reports.borrow_and_update().clone();
                report.metrics = params.metrics.snapshot();
                if sends_distributions {
                    send_distributions(&mut send, &params.metrics, &mut distributions_sent).await?;
                }
                if sends_conditions {
                    send_conditions(&mut send, probe, &params.deferred, true).await?;
                }
                write_frame(&mut send, &ToCoordinator::Report(report)).await?;
            }
            _ = heartbeat.tick() => {
                let mut report = reports.borrow().clone();
                report.metrics = params.metrics.snapshot();
                if sends_distributions {
                    send_distributions(&mut send, &params.metrics, &mut distributions_sent).await?;
                }
                if sends_conditions {
                    send_conditions(&mut send, probe, &params.deferred, false).await?;
                }
                write_frame(&mut send, &ToCoordinator::Report(report)).await?;
            }
            ended = &mut reader => {
                break match ended {
                    Ok(r) => r,
                    Err(e) => Err(SessionError::Protocol(format!("reader task failed: {e}"))),
                };
            }
        }
    };
    reader.abort();
    probes.abort();
    if let Err(e) = &result {
        warn!("session ended: {e}");
    }
    conn.close(0u32.into(), b"bye");
    result
}
