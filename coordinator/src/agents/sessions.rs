//! One live session per device identity. Two agents holding the same identity key (a cloned
//! disk image, a copied state directory) would otherwise both be admitted, and their reports
//! would overwrite each other in one device record. When a session arrives for a device that
//! already has one, the older is probed ([`answers`]): alive, the newcomer is refused and a
//! clone alert raised (shown in fleet status and `/metrics`, audited at most every
//! [`AUDIT_EVERY_SECS`]); silent (an agent restarted before its old connection timed out), it
//! is closed and the newcomer takes its place.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferry_shared::wire::DeviceId;
use quinn::Connection;

use crate::agents::fanout::ControlStream;
use crate::api::CloneAlert;

/// How long the older session has to acknowledge a probe before it counts as gone.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A device's repeated clone refusals are audited at most this often.
pub(crate) const AUDIT_EVERY_SECS: u64 = 600;

/// The QUIC application close code of a session replaced by a newer one of its device.
pub(crate) const REPLACED_CODE: u32 = 4;

/// The QUIC application close code of a session cut off because its device was revoked.
pub(crate) const REVOKED_CODE: u32 = 3;

/// Open sessions by device, and the clone alerts raised.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<DeviceId, Open>>,
    next: AtomicU64,
    alerts: Mutex<BTreeMap<DeviceId, Alert>>,
}

/// One open session.
struct Open {
    token: u64,
    conn: Connection,
    control: Arc<ControlStream>,
}

struct Alert {
    first_at: u64,
    last_at: u64,
    refusals: u64,
    remote: SocketAddr,
    audited_at: u64,
}

impl Sessions {
    /// The open session of `id`, if any.
    pub fn live(&self, id: &DeviceId) -> Option<Connection> {
        self.lock_open().get(id).map(|o| o.conn.clone())
    }

    /// Registers `conn` as `id`'s session, pushed to through `control`; returns the token
    /// that closes it.
    pub fn open(&self, id: &DeviceId, conn: Connection, control: Arc<ControlStream>) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock_open().insert(
            id.clone(),
            Open {
                token,
                conn,
                control,
            },
        );
        token
    }

    /// Forgets `id`'s session `token` (not a newer one that replaced it).
    pub fn close(&self, id: &DeviceId, token: u64) {
        let mut open = self.lock_open();
        if open.get(id).is_some_and(|o| o.token == token) {
            open.remove(id);
        }
    }

    /// Closes `id`'s open session, if any: its device was revoked.
    pub fn revoke(&self, id: &DeviceId) {
        if let Some(open) = self.lock_open().get(id) {
            open.conn.close(REVOKED_CODE.into(), b"device revoked");
        }
    }

    /// Every open session's control stream (taken under the lock, used after it).
    pub fn controls(&self) -> Vec<Arc<ControlStream>> {
        self.lock_open()
            .values()
            .map(|o| o.control.clone())
            .collect()
    }

    /// Notes a refused clone of `id` from `remote`; true when the refusal should be audited
    /// (the first, then at most every [`AUDIT_EVERY_SECS`]).
    pub fn clone_refused(&self, id: &DeviceId, remote: SocketAddr, now: u64) -> bool {
        let mut alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        let alert = alerts.entry(id.clone()).or_insert(Alert {
            first_at: now,
            last_at: now,
            refusals: 0,
            remote,
            audited_at: 0,
        });
        alert.last_at = now;
        alert.refusals += 1;
        alert.remote = remote;
        let audit = alert.refusals == 1 || now >= alert.audited_at + AUDIT_EVERY_SECS;
        if audit {
            alert.audited_at = now;
        }
        audit
    }

    /// Every clone alert since start, by device.
    pub fn alerts(&self) -> Vec<CloneAlert> {
        let alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        alerts
            .iter()
            .map(|(id, a)| CloneAlert {
                device: id.to_string(),
                first_at: a.first_at,
                last_at: a.last_at,
                refusals: a.refusals,
                refused_from: a.remote.to_string(),
            })
            .collect()
    }

    fn lock_open(&self) -> MutexGuard<'_, HashMap<DeviceId, Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// True when the peer of `conn` acknowledges a probe within [`PROBE_TIMEOUT`]: a one-byte
/// stream it need not read, since QUIC acknowledges the packet either way.
pub(crate) async fn answers(conn: &Connection) -> bool {
    if conn.close_reason().is_some() {
        return false;
    }
    let probe = async {
        let mut send = conn.open_uni().await.ok()?;
        send.write_all(&[0]).await.ok()?;
        send.finish().ok()?;
        // Resolves once the peer acknowledged all of it, or stopped the stream: alive both.
        let _ = send.stopped().await;
        Some(())
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, probe).await,
        Ok(Some(()))
    )
}
