//! What a variant asks of the device beyond its target and accelerator: `cuda >= 12.2`,
//! `compute_capability >= 8.7`, `cpu.avx2`. A requirement names a device fact (a hardware
//! label the agent detects, such as `cuda`, `compute_capability`, `cpu.avx512f`,
//! `memory.gib`, or any label the device announces) and either asks that it be present or
//! compares it. Values that are dotted numbers compare as numbers, part by part (`12.10` is
//! above `12.9`, `8.7` equals `8.7.0`); other values only compare for (in)equality. A fact the
//! device does not report meets no requirement: unknown hardware is not assumed capable.
//!
//! A requirement is written and signed as its text, in one canonical spelling
//! (`fact op value`, single spaces), so the manifest's bytes stay a pure function of it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest fact name or value accepted.
const MAX_PART: usize = 64;

/// One condition a device must meet to run a variant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The fact it is about (a label name).
    pub fact: String,
    /// What it asks of that fact.
    pub test: Test,
}

/// What a requirement asks of its fact.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// The device reports the fact, with any value but `false`.
    Present,
    /// The fact compares to the value as the operator says.
    Compare(Comparison, String),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `<=`
    AtMost,
    /// `<`
    Below,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
}

impl Comparison {
    const ALL: [(Comparison, &'static str); 6] = [
        (Comparison::AtLeast, ">="),
        (Comparison::AtMost, "<="),
        (Comparison::Equal, "=="),
        (Comparison::NotEqual, "!="),
        (Comparison::Above, ">"),
        (Comparison::Below, "<"),
    ];

    fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, s)| s)
    }

    fn holds(self, order: Ordering) -> bool {
        match self {
            Comparison::AtLeast => order.is_ge(),
            Comparison::Above => order.is_gt(),
            Comparison::AtMost => order.is_le(),
            Comparison::Below => order.is_lt(),
            Comparison::Equal => order.is_eq(),
            Comparison::NotEqual => order.is_ne(),
        }
    }
}

/// A requirement's text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requirement {text:?}: {reason} (write e.g. `cuda >= 12.2` or `cpu.avx2`)")]
pub struct RequirementError {
    text: String,
    reason: &'static str,
}

impl Requirement {
    /// Whether a device with these facts meets it.
    pub fn met_by(&self, facts: &BTreeMap<String, String>) -> bool {
        let Some(have) = facts.get(&self.fact) else {
            return false;
        };
        match &self.test {
            Test::Present => have != "false",
            Test::Compare(op, want) => match (dotted(have), dotted(want)) {
                (Some(have), Some(want)) => op.holds(compare_dotted(&have, &want)),
                _ => match op {
                    Comparison::Equal => have == want,
                    Comparison::NotEqual => have != want,
                    _ => false,
                },
            },
        }
    }

    /// Why a device with these facts does not meet it, or `None` when it does.
    pub fn unmet_by(&self, facts: &BTreeMap<String, String>) -> Option<String> {
        if self.met_by(facts) {
            return None;
        }
        Some(match facts.get(&self.fact) {
            None => format!("needs {self}, the device reports no {}", self.fact),
            Some(have) => format!("needs {self}, the device has {} {have}", self.fact),
        })
    }
}

/// How two dotted numbers (`12.10`, `8.7.0`) compare, part by part, a missing part counting
/// as 0; `None` when either is not one.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    Some(compare_dotted(&dotted(a)?, &dotted(b)?))
}

/// `12.2.1` as `[12, 2, 1]`; `None` unless it is digits separated by single dots.
fn dotted(text: &str) -> Option<Vec<u64>> {
    text.split('.')
        .map(|p| {
            if p.is_empty() || p.len() > 18 || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

/// Part by part, a missing part counting as 0.
fn compare_dotted(a: &[u64], b: &[u64]) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn valid_fact(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PART
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_' | b'/')
        })
}

fn valid_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_PART
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
}

impl FromStr for Requirement {
    type Err = RequirementError;

    fn from_str(text: &str) -> Result<Self, RequirementError> {
        let error = |reason| RequirementError {
            text: text.to_owned(),
            reason,
        };
        let trimmed = text.trim();
        let found = Comparison::ALL
            .iter()
            .filter_map(|(op, symbol)| trimmed.find(symbol).map(|at| (at, *op, *symbol)))
            // The leftmost operator; at the same place, the longer (`>=` before `>`), which
            // ALL lists first.
            .min_by_key(|(at, _, _)| *at);
        let (fact, test) = match found {
            None => (trimmed, Test::Present),
            Some((at, op, symbol)) => {
                let value = trimmed[at + symbol.len()..].trim();
                if !valid_value(value) {
                    return Err(error(
                        "the value must be letters, digits, `.`, `-`, `_` or `+`",
                    ));
                }
                (trimmed[..at].trim(), Test::Compare(op, value.to_owned()))
            }
        };
        if !valid_fact(fact) {
            return Err(error(
                "the fact must be a label name: lowercase letters, digits, `.`, `-`, `_`, `/`",
            ));
        }
        Ok(Requirement {
            fact: fact.to_owned(),
            test,
        })
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.test {
            Test::Present => f.write_str(&self.fact),
            Test::Compare(op, value) => write!(f, "{} {} {value}", self.fact, op.symbol()),
        }
    }
}

impl Serialize for Requirement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed: Requirement = text.parse().map_err(serde::de::Error::custom)?;
        // One spelling per requirement: the signed bytes are a function of its meaning.
        if parsed.to_string() != text {
            return Err(serde::de::Error::custom(format!(
                "requirement {text:?} is not written canonically (`{parsed}`)"
            )));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(text: &str) -> Requirement {
        text.parse().unwrap()
    }

    #[test]
    fn versions_compare_as_numbers_part_by_part() {
        let device = facts(&[("cuda", "12.10"), ("compute_capability", "8.7")]);
        assert!(req("cuda >= 12.2").met_by(&device), "12.10 is above 12.2");
        assert!(req("cuda>12.9").met_by(&device));
        assert!(!req("cuda < 12.9").met_by(&device));
        assert!(req("compute_capability >= 8.7").met_by(&device));
        assert!(req("compute_capability == 8.7.0").met_by(&device));
        assert!(!req("compute_capability > 8.7").met_by(&device));
        assert!(req("compute_capability != 9.0").met_by(&device));
        assert!(req("compute_capability <= 9").met_by(&device));
    }

    #[test]
    fn presence_and_missing_facts() {
        let device = facts(&[
            ("cpu.avx2", "true"),
            ("cpu.avx512f", "false"),
            ("gpu", "nvidia"),
        ]);
        assert!(req("cpu.avx2").met_by(&device));
        assert!(!req("cpu.avx512f").met_by(&device), "false is absent");
        assert!(!req("cpu.neon").met_by(&device));
        assert!(req("gpu == nvidia").met_by(&device));
        assert!(!req("gpu >= nvidia").met_by(&device), "words do not order");
        // Unknown hardware is not assumed capable, whatever the operator.
        for text in ["cuda >= 1", "cuda < 99", "cuda != 12.2", "cuda"] {
            assert!(!req(text).met_by(&device), "{text}");
        }
        assert_eq!(
            req("cuda >= 12.2").unmet_by(&facts(&[("cuda", "11.4")])),
            Some("needs cuda >= 12.2, the device has cuda 11.4".into())
        );
        assert_eq!(
            req("cuda >= 12.2").unmet_by(&device),
            Some("needs cuda >= 12.2, the device reports no cuda".into())
        );
    }

    #[test]
    fn one_spelling_and_hostile_text_refused() {
        assert_eq!(req("  cuda>=12.2 ").to_string(), "cuda >= 12.2");
        assert_eq!(req("cpu.avx2").to_string(), "cpu.avx2");
        for bad in [
            "",
            ">= 12",
            "cuda >=",
            "CUDA >= 12",
            "cuda >= 1 2",
            "cuda >= >= 1",
            "cuda = 12",
            "cuda >= 12;rm",
            &"x".repeat(65),
        ] {
            assert!(bad.parse::<Requirement>().is_err(), "{bad:?}");
        }
        // Through serde: only the canonical spelling decodes.
        let bytes = postcard::to_allocvec(&req("cuda >= 12.2")).unwrap();
        assert_eq!(
            postcard::from_bytes::<Requirement>(&bytes).unwrap(),
            req("cuda >= 12.2")
        );
        let sloppy = postcard::to_allocvec("cuda>=12.2").unwrap();
        assert!(postcard::from_bytes::<Requirement>(&sloppy).is_err());
        // A number too long for u64 parts compares as a word, never panics.
        let huge = facts(&[("cuda", "99999999999999999999999")]);
        assert!(!req("cuda >= 12").met_by(&huge));
    }
}
