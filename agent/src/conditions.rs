//! The device's conditions as the agent tells its coordinator (protocol 7): the disk space
//! where its versions live, and the switches it holds back. Sent before a report when they
//! are news ([`Conditions::is_news_after`]), so a coordinator knows which devices cannot take
//! a release before a rollout reaches them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_shared::wire::{Conditions, Deferral};

/// How long the size of what the agent holds is trusted before it is walked again, unless
/// an install changed it.
const HELD_FRESH: Duration = Duration::from_secs(300);

/// Gathers the conditions and remembers what was sent on this session.
pub struct ConditionsProbe {
    state_dir: PathBuf,
    /// What the agent's files took, and when that was measured.
    held: Option<(u64, Instant)>,
    /// What the coordinator was last told on this session.
    sent: Option<Conditions>,
}

impl ConditionsProbe {
    /// A probe of `state_dir`, with nothing sent yet.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            state_dir,
            held: None,
            sent: None,
        }
    }

    /// The conditions now, when they are news to the coordinator (always, the first time on
    /// a session). `installed` says the versions on disk may have changed since the last
    /// look, so what they take is measured again.
    pub fn news(&mut self, deferred: &[Deferral], installed: bool) -> Option<Conditions> {
        let now = Instant::now();
        let known = self.fresh_held(now, installed);
        let disk = crate::space::disk_space(&self.state_dir, known);
        if let (None, Some(d)) = (known, &disk) {
            self.held = Some((d.held, now));
        }
        let current = Conditions {
            disk,
            deferred: deferred.to_vec(),
        };
        let news = self.sent.as_ref().is_none_or(|s| current.is_news_after(s));
        news.then(|| {
            self.sent = Some(current.clone());
            current
        })
    }

    /// A new session: the coordinator has been told nothing.
    pub fn forget_sent(&mut self) {
        self.sent = None;
    }

    fn fresh_held(&self, now: Instant, installed: bool) -> Option<u64> {
        match self.held {
            Some((held, at)) if !installed && now.duration_since(at) < HELD_FRESH => Some(held),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn told_once_per_session_then_only_news() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = ConditionsProbe::new(dir.path().to_owned());
        let first = probe.news(&[], false).expect("the first look is news");
        assert!(first.disk.is_some_and(|d| d.total > 0));
        assert_eq!(probe.news(&[], false), None, "nothing moved");
        std::fs::write(dir.path().join("big"), vec![1u8; 32 << 20]).unwrap();
        // A new session is told again; what the agent holds is not walked again so soon...
        probe.forget_sent();
        let cached = probe.news(&[], false).expect("a new session is told again");
        assert!(cached.disk.unwrap().held < 32 << 20);
        // ...unless an install may have changed it.
        probe.forget_sent();
        let walked = probe.news(&[], true).expect("a new session is told again");
        assert!(walked.disk.unwrap().held >= 32 << 20);
    }
}
