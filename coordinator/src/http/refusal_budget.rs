//! How many refusals each caller may write to the audit trail. A caller holding any valid
//! token could otherwise fill the trail, and the disk under it, with refused requests. Every
//! refusal is still answered and logged; past the budget it is not audited, and the next one
//! audited says how many were not. Pure: the caller passes the time.

use std::collections::HashMap;

/// Refusals of one caller audited per minute.
pub const AUDITED_PER_MINUTE: u32 = 20;

/// Callers remembered before the quiet ones are forgotten (they are token holders, so few).
const MAX_CALLERS: usize = 4096;

/// Per-caller budgets.
#[derive(Debug, Default)]
pub struct DenialBudget {
    callers: HashMap<String, Window>,
}

#[derive(Debug)]
struct Window {
    minute: u64,
    audited: u32,
    /// Refusals not audited since the last one that was.
    skipped: u64,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalOutcome {
    /// Audit it, noting the refusals of this caller that were not audited before it.
    Audit {
        /// Refusals skipped since the last audited one.
        skipped_before: u64,
    },
    /// Over budget: log it only.
    Skip,
}

impl DenialBudget {
    /// Decides for a refusal of `caller` at `now` (Unix seconds).
    pub fn judge(&mut self, caller: &str, now: u64) -> RefusalOutcome {
        let minute = now / 60;
        if self.callers.len() >= MAX_CALLERS && !self.callers.contains_key(caller) {
            self.callers
                .retain(|_, w| w.minute == minute || w.skipped > 0);
        }
        let window = self.callers.entry(caller.to_owned()).or_insert(Window {
            minute,
            audited: 0,
            skipped: 0,
        });
        if window.minute != minute {
            window.minute = minute;
            window.audited = 0;
        }
        if window.audited < AUDITED_PER_MINUTE {
            window.audited += 1;
            RefusalOutcome::Audit {
                skipped_before: std::mem::take(&mut window.skipped),
            }
        } else {
            window.skipped += 1;
            RefusalOutcome::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_budget_per_minute_and_the_next_audit_counts_what_was_skipped() {
        let mut budget = DenialBudget::default();
        let t = 6_000;
        for _ in 0..AUDITED_PER_MINUTE {
            assert_eq!(
                budget.judge("mallory", t),
                RefusalOutcome::Audit { skipped_before: 0 }
            );
        }
        for _ in 0..500 {
            assert_eq!(budget.judge("mallory", t + 30), RefusalOutcome::Skip);
        }
        // Another caller is not held back by mallory.
        assert_eq!(
            budget.judge("alice", t + 30),
            RefusalOutcome::Audit { skipped_before: 0 }
        );
        // The next minute: audited again, with the count of what was not.
        assert_eq!(
            budget.judge("mallory", t + 60),
            RefusalOutcome::Audit {
                skipped_before: 500
            }
        );
        assert_eq!(
            budget.judge("mallory", t + 61),
            RefusalOutcome::Audit { skipped_before: 0 }
        );
    }

    #[test]
    fn memory_is_bounded_by_forgetting_quiet_callers() {
        let mut budget = DenialBudget::default();
        for i in 0..(MAX_CALLERS * 3) {
            budget.judge(&format!("caller-{i}"), (i as u64 / 100) * 60);
        }
        assert!(
            budget.callers.len() <= MAX_CALLERS + 100,
            "{}",
            budget.callers.len()
        );
    }
}
