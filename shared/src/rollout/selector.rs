//! Cohort selectors: which devices a rollout covers, by their labels.
//!
//! A selector is a comma-separated list of terms, all of which must hold:
//! `accelerator=gpu`, `region!=eu`, `arch in (aarch64, armv7)`, `arch not in (x86_64)`,
//! `canary` (the label is present) and `!canary` (it is absent). The empty selector matches
//! every device. Parsing is strict: an unknown shape is an error naming the term.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One condition on a device's labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Term {
    /// `key=value`.
    Equals(String, String),
    /// `key!=value` (true when the label is absent too).
    NotEquals(String, String),
    /// `key in (a, b)`.
    In(String, Vec<String>),
    /// `key not in (a, b)` (true when the label is absent too).
    NotIn(String, Vec<String>),
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    Absent(String),
}

/// All of its terms must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The terms.
    pub terms: Vec<Term>,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cohort selector term {term:?}: {reason}")]
pub struct SelectorError {
    /// The offending term.
    pub term: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Selector {
    /// Every device.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses `text` (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for raw in split_terms(text) {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let bad = |reason| SelectorError {
                term: term.to_owned(),
                reason,
            };
            let parsed = if let Some((key, list)) = split_keyword(term, " not in ") {
                Term::NotIn(
                    label(key).ok_or(bad("bad label name"))?,
                    values(list).ok_or(bad("expected (a, b, …)"))?,
                )
            } else if let Some((key, list)) = split_keyword(term, " in ") {
                Term::In(
                    label(key).ok_or(bad("bad label name"))?,
                    values(list).ok_or(bad("expected (a, b, …)"))?,
                )
            } else if let Some((key, value)) = term.split_once("!=") {
                Term::NotEquals(
                    label(key).ok_or(bad("bad label name"))?,
                    value_of(value).ok_or(bad("bad value"))?,
                )
            } else if let Some((key, value)) = term.split_once('=') {
                Term::Equals(
                    label(key).ok_or(bad("bad label name"))?,
                    value_of(value).ok_or(bad("bad value"))?,
                )
            } else if let Some(key) = term.strip_prefix('!') {
                Term::Absent(label(key).ok_or(bad("bad label name"))?)
            } else {
                Term::Exists(label(term).ok_or(bad("bad label name"))?)
            };
            terms.push(parsed);
        }
        Ok(Self { terms })
    }

    /// True when every term holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Equals(k, v) => labels.get(k) == Some(v),
            Term::NotEquals(k, v) => labels.get(k) != Some(v),
            Term::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Term::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                Term::Equals(k, v) => format!("{k}={v}"),
                Term::NotEquals(k, v) => format!("{k}!={v}"),
                Term::In(k, vs) => format!("{k} in ({})", vs.join(", ")),
                Term::NotIn(k, vs) => format!("{k} not in ({})", vs.join(", ")),
                Term::Exists(k) => k.clone(),
                Term::Absent(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&terms.join(", "))
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn split_keyword<'a>(term: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let at = term.find(keyword)?;
    Some((&term[..at], &term[at + keyword.len()..]))
}

/// A label name: letters, digits, `-`, `_`, `.`, `/`.
fn label(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    .then(|| t.to_owned())
}

fn value_of(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && !t.contains(['(', ')', ',', '=', '!'])).then(|| t.to_owned())
}

fn values(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(value_of)
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn terms_parse_print_and_match() {
        let s = Selector::parse("accelerator=gpu, arch in (aarch64, armv7), region!=eu, !canary")
            .unwrap();
        assert_eq!(
            s.to_string(),
            "accelerator=gpu, arch in (aarch64, armv7), region!=eu, !canary"
        );
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
        let gpu_arm = labels(&[("accelerator", "gpu"), ("arch", "armv7"), ("region", "us")]);
        assert!(s.matches(&gpu_arm));
        let mut in_eu = gpu_arm.clone();
        in_eu.insert("region".into(), "eu".into());
        assert!(!s.matches(&in_eu));
        let mut canary = gpu_arm.clone();
        canary.insert("canary".into(), "yes".into());
        assert!(!s.matches(&canary));
        assert!(!s.matches(&labels(&[("accelerator", "gpu"), ("arch", "x86_64")])));
        let not_in = Selector::parse("arch not in (x86_64), canary").unwrap();
        assert!(not_in.matches(&labels(&[("canary", "1")])));
        assert!(!not_in.matches(&labels(&[("canary", "1"), ("arch", "x86_64")])));
        assert!(Selector::parse("").unwrap().matches(&BTreeMap::new()));
    }

    #[test]
    fn malformed_terms_are_named() {
        for bad in [
            "arch in aarch64",
            "arch in ()",
            "=gpu",
            "a b=c",
            "region=",
            "x in (a,,b)",
        ] {
            let err = Selector::parse(bad).unwrap_err();
            assert_eq!(err.term, bad.trim(), "{bad}");
        }
    }
}
