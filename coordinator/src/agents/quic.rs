//! The agents' QUIC endpoint.
//!
//! Each connection carries one control stream (opened first by the agent) and any number of
//! fetch streams. The control stream admits the device (identity proof bound to this TLS
//! session, enrollment token on first contact), records its reports, acknowledges its events
//! and pushes the desired state whenever an alias it follows moves. Fetch streams are served
//! by [`crate::agents::fetch`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_shared::sign::DEVICE_AUTH_CONTEXT;
use ferry_shared::wire::io::{FrameReader, read_frame, read_preamble, write_frame, write_preamble};
use ferry_shared::wire::{
    ALPN, DEVICE_AUTH_EXPORTER_LABEL, DeviceId, Follow, Hello, OLDEST_PROTOCOL_VERSION,
    PROTOCOL_VERSION, Refusal, RefusalKind, ToAgent, ToCoordinator, Welcome, serves,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tracing::{debug, info, warn};

use crate::agents::fanout::ControlStream;
use crate::agents::session_error::SessionError;
use crate::agents::sessions::REVOKED_CODE;
use crate::app::Coordinator;
use crate::fleet::summary::{log_events, merge_report};
use crate::secrets::{RestartKeys, TlsIdentity};
use crate::store::StoreError;
use crate::store::enrollment::Admission;
use crate::store::records::DeviceRecord;
use crate::unix_now;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures setting up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS configuration.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Starting the thread that reads the socket ([`receive_runtime`]).
    #[error("cannot start the QUIC receive thread: {0}")]
    ReceiveThread(std::io::Error),
    /// Binding the UDP socket.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address the endpoint was to listen on.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// Binds the agents' endpoint with the coordinator's certificate and its persistent
/// restart keys (see [`crate::secrets::restart_keys`]).
pub fn endpoint(
    listen: SocketAddr,
    tls: &TlsIdentity,
    keys: RestartKeys,
) -> Result<Endpoint, EndpointError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| EndpointError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(crate::agents::device_tls::DeviceCerts::new(
            Arc::new(rustls::crypto::ring::default_provider()),
        )))
        .with_single_cert(vec![tls.cert.clone()], tls.key.clone_key())
        .map_err(|e| EndpointError::Tls(e.to_string()))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        Duration::from_secs(30)
            .try_into()
            .map_err(|_| EndpointError::Tls("idle timeout out of range".into()))?,
    ));
    // An agent uses one control stream and one fetch stream at a time; two more allow a fetch
    // stream to open while the last is still closing. An agent wanting more waits for one to
    // close. quinn keeps a slot per allowed stream in every connection: at 16 they cost each
    // session over a kilobyte.
    transport.max_concurrent_bidi_streams(4u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    // What one device's fetch stream may have in flight (see the constant).
    transport.send_window(u64::from(ferry_shared::wire::FETCH_STREAM_WINDOW));
    server.transport_config(Arc::new(transport));
    let bind_err = |source| EndpointError::Bind {
        addr: listen,
        source,
    };
    let socket = udp_socket(listen).map_err(bind_err)?;
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(keys.reset));
    let cid_key = keys.cid;
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    // Created inside the receive runtime: quinn spawns the endpoint's driver, which reads the
    // socket for every connection, where the endpoint is created, and each connection's own
    // driver where that connection is accepted (the sessions' runtime).
    let receive = receive_runtime().map_err(EndpointError::ReceiveThread)?;
    let _inside = receive.enter();
    let runtime = quinn::default_runtime()
        .ok_or_else(|| EndpointError::Tls("no async runtime for QUIC".into()))?;
    Endpoint::new(endpoint_config, Some(server), socket, runtime).map_err(bind_err)
}

/// The runtime, on a thread of its own, where the endpoint's driver reads the UDP socket (one
/// per process, started on first use; an endpoint created inside it (`Handle::enter`) has
/// its driver there).
///
/// On the sessions' runtime the driver reads for at most 50 µs per turn (quinn's bound) and
/// then waits behind every runnable task. When an alias moves, every session and every
/// connection driver is runnable at once: at 20,000 devices a turn took long enough for a
/// third of the incoming datagrams (the agents' acknowledgements and reports) to be dropped
/// from a full socket buffer, each drop costing its session a loss-recovery timeout. On its
/// own thread the driver gets the operating system's fair share of a core however many
/// sessions are busy; what it reads waits in quinn's per-connection queues, not the kernel's.
///
/// The price: every acknowledgement crosses from this thread to its connection's driver. A
/// single 1 GiB download on loopback measured 5.3–5.5 s with it against 4.7–4.8 s without.
pub fn receive_runtime() -> std::io::Result<tokio::runtime::Handle> {
    static RECEIVE: std::sync::Mutex<Option<tokio::runtime::Handle>> = std::sync::Mutex::new(None);
    let mut started = RECEIVE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = started.as_ref() {
        return Ok(handle.clone());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("ferry-quic-recv".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    *started = Some(handle.clone());
    Ok(handle)
}

/// What the QUIC socket asks the kernel for, each way. The default (about 200 KiB) drops
/// datagrams when thousands of sessions answer at once, say when an alias move reaches
/// them all: the fleet simulator saw 170,000 receive-buffer drops in one run, each costing
/// its session a loss-recovery timeout.
pub const UDP_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// A UDP socket bound to `addr` with buffers of up to [`UDP_BUFFER_BYTES`]; the kernel may
/// grant less (`net.core.rmem_max` / `wmem_max`), which is logged.
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let bound = ferry_shared::udp::bind(addr, UDP_BUFFER_BYTES)?;
    if bound.receive_buffer < UDP_BUFFER_BYTES {
        tracing::info!(
            granted = bound.receive_buffer,
            wanted = UDP_BUFFER_BYTES,
            "the UDP receive buffer is smaller than asked for (raise net.core.rmem_max for large fleets)"
        );
    }
    Ok(bound.socket)
}

/// Accepts connections until the endpoint closes.
pub async fn serve(endpoint: Endpoint, app: Arc<Coordinator>) {
    let fanout = tokio::spawn(crate::agents::push::run(app.clone()));
    while let Some(incoming) = endpoint.accept().await {
        let app = app.clone();
        let remote = incoming.remote_address();
        // Accepted here rather than awaited inside the task: the task would otherwise carry
        // the `Incoming` (about 500 bytes) for the session's whole life.
        let connecting = incoming.accept();
        tokio::spawn(async move {
            match async { connecting?.await }.await {
                Ok(conn) => {
                    if let Err(e) = session(&app, conn).await {
                        debug!(%remote, "session ended: {e}");
                    }
                }
                Err(e) => debug!(%remote, "handshake failed: {e}"),
            }
        });
    }
    fanout.abort();
}

async fn session(app: &Arc<Coordinator>, conn: Connection) -> Result<(), SessionError> {
    // The handshake's futures (the hello under its timeout, the clone probe, a refusal) are
    // done with once the device is admitted. Boxed, they are freed then; inline they would
    // stay in every session's task for its life: 3.5 KiB per session where the control loop
    // needs under 1 KiB.
    let Admitted {
        id,
        protocol,
        follows,
        acked,
        send,
        recv,
        now,
    } = Box::pin(handshake(app, &conn)).await?;
    app.presence.connected(&id, now);
    record_session(app, &id, true);
    // Registered before the first push, so no announcement falls between the two.
    let control = Arc::new(ControlStream::new(id, follows, send, protocol));
    let id = &control.id;
    let token = app.sessions.open(id, conn.clone(), control.clone());
    let session = Session {
        conn: &conn,
        acked,
        control: &control,
    };
    let result = control_loop(app, session, recv).await;
    app.sessions.close(id, token);
    app.presence.disconnected(id, unix_now());
    record_session(app, id, false);
    info!(device = %id, "agent disconnected");
    result
}

/// With coordinators sharing the database, writes there that `id`'s session on this node
/// opened or closed, so every node's fleet view and rollout engine see it (see
/// [`crate::store::live`]). In the background: awaited in the session, what the session
/// holds meanwhile would grow every session's future. Should a close land before its open,
/// the device's next report on another node puts it right, or the record ages out. A failure
/// is logged: the next report writes it again.
fn record_session(app: &Arc<Coordinator>, id: &DeviceId, connected: bool) {
    if !app.store.is_shared() {
        return;
    }
    let (app, id) = (app.clone(), id.clone());
    tokio::task::spawn_blocking(move || {
        let now = crate::unix_now_ms();
        if let Err(e) = app.store.record_session(&id, &app.node, connected, now) {
            warn!("cannot record a session in the shared database: {e}");
        }
    });
}

/// A device admitted by [`handshake`]: what its session goes on using, and no more (at fifty
/// thousand sessions every byte held per session is fifty kilobytes).
struct Admitted {
    id: DeviceId,
    /// The protocol version the agent speaks.
    protocol: u16,
    follows: Vec<Follow>,
    /// The highest event sequence number the agent has been told is stored.
    acked: u64,
    send: SendStream,
    recv: RecvStream,
    /// When it was admitted.
    now: u64,
}

/// The control stream's opening: the agent's hello, the clone check, admission and the
/// welcome. A refusal is written to the agent and returned as [`SessionError::Refused`].
async fn handshake(app: &Coordinator, conn: &Connection) -> Result<Admitted, SessionError> {
    let (mut send, mut recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| SessionError::Protocol("no control stream opened in time".into()))??;
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_hello(&mut recv))
        .await
        .map_err(|_| SessionError::Protocol("no hello in time".into()))?;
    write_preamble(&mut send).await?;
    let (hello, protocol) = match hello {
        Ok(hello) => hello,
        Err(refusal) => return Err(refuse(app, conn, &mut send, refusal).await),
    };
    let now = unix_now();
    if let Some(refusal) = refuse_clone(app, conn, now).await? {
        return Err(refuse(app, conn, &mut send, refusal).await);
    }
    let (id, mut record) = match admit(app, conn, &hello, now)? {
        Ok(admitted) => admitted,
        Err(refusal) => return Err(refuse(app, conn, &mut send, refusal).await),
    };
    info!(device = %id, remote = %conn.remote_address(), "agent connected");
    write_frame(
        &mut send,
        &ToAgent::Welcome(Welcome {
            device_id: id.clone(),
            heartbeat_secs: app.config.heartbeat_secs,
            events_through: record.events_through,
        }),
    )
    .await?;
    Ok(Admitted {
        id,
        protocol,
        follows: std::mem::take(&mut record.follows),
        acked: record.events_through,
        send,
        recv,
        now,
    })
}

/// A refusal when the device this connection's certificate names already has a live
/// session (see [`crate::agents::sessions`]); a silent older session is closed instead.
async fn refuse_clone(
    app: &Coordinator,
    conn: &Connection,
    now: u64,
) -> Result<Option<Refusal>, StoreError> {
    let Some(key) = crate::agents::device_tls::device_key(conn) else {
        return Ok(None); // admit() refuses it
    };
    let id = DeviceId::of(&key);
    let Some(older) = app.sessions.live(&id) else {
        return Ok(None);
    };
    if !crate::agents::sessions::answers(&older).await {
        info!(device = %id, "closing the device's older session, which no longer answers");
        older.close(
            crate::agents::sessions::REPLACED_CODE.into(),
            b"replaced by a newer session of this device",
        );
        return Ok(None);
    }
    let (remote, first) = (conn.remote_address(), older.remote_address());
    warn!(device = %id, %remote, live = %first, "refused a second live session of one device: a cloned identity?");
    if app.sessions.clone_refused(&id, remote, now) {
        app.store.record(crate::store::audit::Change {
            at: now,
            actor: "coordinator",
            action: "device.clone-refused",
            subject: id.to_string(),
            detail: format!(
                "a second agent with this identity connected from {remote} while the device's session from {first} was live; refused"
            ),
        })?;
    }
    Ok(Some(Refusal {
        kind: RefusalKind::Identity,
        message: format!(
            "device {id} already has a live session (from {first}): a second agent with the same identity key is refused; give each device its own identity (delete identity.key on the copy)"
        ),
    }))
}

async fn read_hello(recv: &mut RecvStream) -> Result<(Hello, u16), Refusal> {
    let refusal = |kind, message: String| Refusal { kind, message };
    let preamble = read_preamble(recv)
        .await
        .map_err(|e| refusal(RefusalKind::BadRequest, e.to_string()))?;
    if !serves(preamble.version) {
        return Err(refusal(
            RefusalKind::ProtocolVersion,
            format!(
                "this coordinator speaks protocol versions {OLDEST_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; the agent speaks {}",
                preamble.version
            ),
        ));
    }
    match read_frame::<_, ToCoordinator>(recv, "hello").await {
        Ok(Some(ToCoordinator::Hello(hello))) => Ok((*hello, preamble.version)),
        Ok(_) => Err(refusal(RefusalKind::BadRequest, "expected a hello".into())),
        Err(e) => Err(refusal(RefusalKind::BadRequest, e.to_string())),
    }
}

/// Tells the agent why it is refused and closes the connection; the error the session ends
/// with.
async fn refuse(
    app: &Coordinator,
    conn: &Connection,
    send: &mut SendStream,
    refusal: Refusal,
) -> SessionError {
    app.happened.refused(refusal.kind);
    warn!(remote = %conn.remote_address(), "refused agent: {}", refusal.message);
    let message = refusal.message.clone();
    if let Err(e) = write_frame(send, &ToAgent::Refused(refusal)).await {
        return e.into();
    }
    let _ = send.finish();
    // Give the refusal time to arrive before the connection goes.
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    conn.close(1u32.into(), b"refused");
    SessionError::Refused(message)
}

/// Checks the identity proof and enrollment; stores the device's announced state.
fn admit(
    app: &Coordinator,
    conn: &Connection,
    hello: &Hello,
    now: u64,
) -> Result<Result<(DeviceId, DeviceRecord), Refusal>, StoreError> {
    let mut material = [0u8; 32];
    if conn
        .export_keying_material(&mut material, DEVICE_AUTH_EXPORTER_LABEL, b"")
        .is_err()
        || !hello
            .device_key
            .verify(DEVICE_AUTH_CONTEXT, &material, &hello.proof)
    {
        return Ok(Err(Refusal {
            kind: RefusalKind::Identity,
            message: "the device did not prove it holds its identity key on this session".into(),
        }));
    }
    // The session belongs to the key of the device's TLS client certificate; a hello for any
    // other device is refused, so a device can only ever speak and report for itself.
    if crate::agents::device_tls::device_key(conn) != Some(hello.device_key) {
        return Ok(Err(Refusal {
            kind: RefusalKind::Identity,
            message: "the TLS client certificate is not this device's identity key".into(),
        }));
    }
    let id = DeviceId::of(&hello.device_key);
    if let Some(revoked) = app.store.device_revocation(&id)? {
        return Ok(Err(Refusal {
            kind: RefusalKind::Revoked,
            message: format!(
                "device {id} was revoked by {}: {}",
                revoked.by, revoked.reason
            ),
        }));
    }
    let existing = app.store.device(&id)?;
    let enrolling = existing.is_none();
    let admission = match hello.enrollment_token.as_deref() {
        _ if !enrolling => None,
        Some(t) if app.enrollment_token.matches(t) => Some(Admission::Bootstrap),
        Some(t) => Some(Admission::Token(t)),
        None => {
            return Ok(Err(Refusal {
                kind: RefusalKind::Enrollment,
                message: format!("device {id} is not enrolled and has no enrollment token"),
            }));
        }
    };
    let mut record = existing.unwrap_or_else(|| DeviceRecord::new(&hello.device_key, now));
    record.last_seen = now;
    record.agent_version = hello.agent_version.clone();
    record.labels = hello.labels.clone();
    record.follows = hello.follows.clone();
    let (new_events, _) = merge_report(&mut record, &hello.report, crate::unix_now_ms());
    let enrolled = admission.is_some();
    if let Some(admission) = admission {
        if let Err(why) = app.store.enroll(&id, &record, admission, now)? {
            return Ok(Err(Refusal {
                kind: RefusalKind::Enrollment,
                message: format!("device {id} is not enrolled: {why}"),
            }));
        }
        info!(device = %id, "device enrolled");
    }
    // Enrollment stored the record as it is; a second transaction (under the writer lock
    // every coordinator on a shared database waits for) only when there are events to audit.
    if !enrolled || !new_events.is_empty() {
        app.store.update_device(&id, &record, &new_events, now)?;
    }
    app.metrics.update(&id, hello.report.metrics.clone());
    log_events(&id, &new_events);
    Ok(Ok((id, record)))
}

/// One accepted session's particulars.
struct Session<'a> {
    conn: &'a Connection,
    /// Where the session and the fanout write to the agent; names the device and the aliases
    /// it follows.
    control: &'a ControlStream,
    /// The highest event sequence number the agent has been told is stored.
    acked: u64,
}

async fn control_loop(
    app: &Arc<Coordinator>,
    session: Session<'_>,
    mut recv: RecvStream,
) -> Result<(), SessionError> {
    let Session {
        conn,
        control,
        mut acked,
    } = session;
    let id = &control.id;
    // The session is registered by now, so a revocation after this look closes it.
    if app.store.device_revocation(id)?.is_some() {
        conn.close(REVOKED_CODE.into(), b"device revoked");
        return Ok(());
    }
    // The push, the report's store and the acknowledgement (with its message) are boxed:
    // inline, their futures (400, 490 and 380 bytes) would be part of every session's task
    // for its whole life, though each runs for moments; boxed, they take memory only while
    // they run. There is no `closed()` branch below: `accept_bi` ends with the connection.
    for follow in &control.follows {
        let records = crate::agents::desired::Records::Store;
        Box::pin(crate::agents::push::push(app, control, follow, &records)).await?;
    }
    let mut reports = FrameReader::default();
    // Conditions wait for the report that follows them, to be stored in its transaction.
    let mut conditions = None;
    loop {
        tokio::select! {
            frame = reports.next::<_, ToCoordinator>(&mut recv, "report") => match frame {
                Ok(Some(ToCoordinator::Report(report))) => {
                    let now = unix_now();
                    app.presence.seen(id, now);
                    app.metrics.update(id, report.metrics.clone());
                    let stored = Box::pin(crate::fleet::report_writer::store_report(
                        app,
                        id,
                        report,
                        conditions.take(),
                        now,
                    ))
                    .await?;
                    let Some(events_through) = stored else {
                        break Err(SessionError::Protocol("device record vanished".into()));
                    };
                    // Only news is acknowledged: at ten thousand sessions, an Ack per
                    // heartbeat is a packet each way per device for nothing.
                    if events_through > acked {
                        let ack = ToAgent::Ack { events_through };
                        Box::pin(async move { control.write(&ack).await }).await?;
                        acked = events_through;
                    }
                }
                Ok(Some(ToCoordinator::Distributions(values))) => {
                    // Kept until the next report writes them (a shared store's live row).
                    app.metrics.update_values(id, values);
                }
                Ok(Some(ToCoordinator::Conditions(mut heard))) => {
                    crate::fleet::conditions::sanitize(&mut heard);
                    conditions = Some(heard);
                }
                Ok(Some(ToCoordinator::Hello(_))) => {
                    break Err(SessionError::Protocol("second hello on one session".into()));
                }
                Err(e) => break Err(e.into()),
                Ok(None) => break Ok(()),
            },
            fetch = conn.accept_bi() => match fetch {
                Ok((send, recv)) => crate::agents::fetch::serve_fetch(app.clone(), id.clone(), send, recv),
                Err(_) => break Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams waiting in the kernel's receive queue of the loopback UDP socket on `port`.
    fn queued(port: u16) -> Option<u64> {
        let table = std::fs::read_to_string("/proc/net/udp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, p) = local.split_once(':')?;
            if u16::from_str_radix(p, 16).ok()? != port {
                return None;
            }
            let (_, rx) = fields.get(4)?.split_once(':')?;
            u64::from_str_radix(rx, 16).ok()
        })
    }

    /// The bug: the endpoint's driver ran on the sessions' runtime, where it read the socket
    /// for 50 µs per turn and then waited behind every runnable session. Here that runtime is
    /// never run at all, the extreme of busy: the socket must still be read.
    #[test]
    fn the_endpoint_reads_its_socket_while_the_sessions_runtime_is_busy() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (tls, _) = crate::secrets::tls_identity(dir.path(), &[]).expect("tls identity");
        let keys = crate::secrets::restart_keys(dir.path()).expect("restart keys");
        let sessions = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _inside = sessions.enter();
        let endpoint =
            endpoint("127.0.0.1:0".parse().expect("address"), &tls, keys).expect("endpoint");
        let port = endpoint.local_addr().expect("address").port();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer socket");
        for _ in 0..200 {
            // Not QUIC: quinn reads and drops them.
            peer.send_to(&[0x40; 100], ("127.0.0.1", port))
                .expect("send");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while queued(port).is_some_and(|q| q > 0) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            queued(port),
            Some(0),
            "the endpoint's socket is not read while the sessions' runtime is busy"
        );
    }

    /// The size of the future a function returns, without running it.
    fn future_size<A, B, F, Fut>(_: F) -> usize
    where
        F: FnOnce(A, B) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// At 50,000 devices every byte of a session's task is 50 KB of the coordinator. The
    /// control loop kept its rare work inline: the first push (400 bytes), the report's store
    /// (490), the acknowledgement, and a `closed()` branch that `accept_bi` already covers, so
    /// the session's future was 1,008 bytes where the loop waiting for a frame needs about
    /// 600. Coordinator memory measured 32.2 KiB per device against a goal of 32.
    #[test]
    fn a_sessions_future_holds_only_what_its_wait_needs() {
        let session = future_size::<&'static Arc<Coordinator>, Connection, _, _>(session);
        assert!(
            session <= 768,
            "a session's future is {session} bytes: box the rare work it awaits (see control_loop)"
        );
    }
}
