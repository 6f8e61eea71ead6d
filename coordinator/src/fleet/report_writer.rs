//! Device reports are merged into their records by one writer thread that takes whatever
//! reports are waiting and commits them in a single transaction. Ten thousand agents
//! answering a push at once then cost a few dozen commits instead of ten thousand, and no
//! session's task blocks a runtime worker on the database. A large fleet's steady heartbeats
//! arrive one by one, though, each alone in its commit: once the writer commits more than
//! [`BUSY_COMMITS`] times a second, each batch first lets more gather for [`LINGER`]
//! (measured with 10,000 simulated agents on three coordinators sharing PostgreSQL, reporting
//! every 15 s: 622 commits/s before, 89 after). A quiet fleet's reports are stored at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use ferry_shared::wire::{Conditions, DeviceId, DeviceReport};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::app::Coordinator;
use crate::fleet::report_queue::Job;
use crate::fleet::summary::{log_events, merge_conditions, merge_report};
use crate::store::StoreError;
use crate::store::records::DeviceRecord;

/// Most reports merged in one transaction.
const BATCH: usize = 1024;

/// How long a batch waits for more reports after its first, once the writer is busy: what
/// one report's acknowledgement may be delayed by, against a commit (an fsync) per report.
pub(crate) const LINGER: Duration = Duration::from_millis(40);

/// Commits in the last second past which the writer lingers.
pub(crate) const BUSY_COMMITS: usize = 20;

/// The writer's recent commits: whether it is busy enough to linger.
#[derive(Default)]
struct Pace {
    /// When the commits of the last second began.
    recent: VecDeque<Instant>,
}

impl Pace {
    /// Records a commit beginning at `now`; whether its batch should linger first.
    fn commit(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        let busy = self.recent.len() >= BUSY_COMMITS;
        self.recent.push_back(now);
        busy
    }
}

/// Merges `report` into `id`'s record; the events acknowledged through, or `None` for a
/// device with no record. Starts the writer on first use.
pub(crate) async fn store_report(
    app: &Arc<Coordinator>,
    id: &DeviceId,
    report: DeviceReport,
    conditions: Option<Conditions>,
    now: u64,
) -> Result<Option<u64>, StoreError> {
    let sender = app.report_queue.sender(|| start(app.clone()));
    let (reply, outcome) = oneshot::channel();
    let job = Job {
        id: id.clone(),
        report,
        conditions,
        now,
        reply,
    };
    sender
        .send(job)
        .await
        .map_err(|_| StoreError::Writer("the report writer stopped".into()))?;
    outcome
        .await
        .map_err(|_| StoreError::Writer("the report writer dropped a report".into()))?
        .map_err(StoreError::Writer)
}

fn start(app: Arc<Coordinator>) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(BATCH * 4);
    let spawned = std::thread::Builder::new()
        .name("ferry-reports".into())
        .spawn(move || {
            let mut pace = Pace::default();
            while let Some(first) = rx.blocking_recv() {
                let mut jobs = vec![first];
                take_waiting(&mut rx, &mut jobs);
                if jobs.len() < BATCH && pace.commit(Instant::now()) {
                    std::thread::sleep(LINGER);
                    take_waiting(&mut rx, &mut jobs);
                }
                let batch: Vec<(DeviceId, DeviceReport, u64)> = jobs
                    .iter()
                    .map(|j| (j.id.clone(), j.report.clone(), j.now))
                    .collect();
                let now_ms = crate::unix_now_ms();
                let conditions: HashMap<&DeviceId, (&Conditions, u64)> = jobs
                    .iter()
                    .filter_map(|j| Some((&j.id, (j.conditions.as_ref()?, j.now))))
                    .collect();
                let merge = |id: &DeviceId, r: &mut DeviceRecord, report: &DeviceReport| {
                    let (events, mut changed) = merge_report(r, report, now_ms);
                    if let Some((c, at)) = conditions.get(id) {
                        changed |= merge_conditions(r, c, *at);
                    }
                    (events, changed)
                };
                let live = app.store.is_shared().then_some(app.node.as_str());
                let values = |id: &DeviceId| app.metrics.values(id);
                match app.store.merge_reports(&batch, merge, live, values) {
                    Ok(results) => {
                        for (job, result) in jobs.into_iter().zip(results) {
                            let acked = result.map(|(events, through)| {
                                log_events(&job.id, &events);
                                app.happened.device_events(&events);
                                through
                            });
                            let _ = job.reply.send(Ok(acked));
                        }
                    }
                    Err(e) => {
                        warn!("storing {} device reports failed: {e}", jobs.len());
                        for job in jobs {
                            let _ = job.reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start the report writer: {e}");
    }
    tx
}

/// Moves the reports waiting in `rx` into `jobs`, up to [`BATCH`].
fn take_waiting(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < BATCH {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_lingers_only_past_its_busy_rate_and_stops_when_the_rate_falls() {
        let mut pace = Pace::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // A quiet fleet: a few commits a second never linger.
        for i in 0..BUSY_COMMITS as u64 {
            assert!(!pace.commit(at(i * 40)), "commit {i} lingered");
        }
        // The next within the same second does.
        assert!(pace.commit(at(800)));
        // A second later the earlier ones have aged out.
        assert!(!pace.commit(at(2500)));
    }
}
