//! The artifacts being uploaded right now, one attempt each: a second upload of an artifact
//! while one runs is refused (409) rather than interleaved into the same spool.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::http::StatusCode;
use ferry_shared::Digest;

use crate::http::replies::Failure;

/// The artifacts being uploaded right now.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<Digest>>);

/// One artifact's upload, under way until dropped.
pub(crate) struct Attempt<'a> {
    in_flight: &'a InFlight,
    hash: Digest,
}

impl InFlight {
    /// The upload of `hash`, unless another is under way.
    pub(crate) fn begin(&self, hash: Digest) -> Result<Attempt<'_>, Failure> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(hash) {
            return Err(Failure(
                StatusCode::CONFLICT,
                format!("an upload of {hash} is already under way"),
            ));
        }
        Ok(Attempt {
            in_flight: self,
            hash,
        })
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut set = self.in_flight.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_attempt_per_artifact_runs_at_a_time() {
        let in_flight = InFlight::default();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let first = in_flight.begin(a).ok().unwrap();
        let refused = in_flight.begin(a).err().unwrap();
        assert_eq!(refused.0, StatusCode::CONFLICT, "{}", refused.1);
        assert!(in_flight.begin(b).is_ok(), "another artifact may upload");
        drop(first);
        assert!(in_flight.begin(a).is_ok(), "free again once the first ends");
    }
}
