//! Release versions: semantic versions with the qualifiers model teams use.
//!
//! `1.4.0`, `1.1.0-beta`, `2.0.0-rc.1`, `2.1.0-experiment-attention`. Ordering is semver's:
//! a pre-release sorts below its release, identifiers compare numerically when numeric and
//! lexically otherwise. Build metadata (`+…`) is refused: semver ignores it for ordering, so two
//! releases differing only in it would be "the same version" with different bytes, which
//! immutability forbids. Lineage belongs in the release metadata instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A validated release version.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(semver::Version);

/// The kind of release a version's qualifier marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Qualifier {
    /// No pre-release part: a regular release.
    Release,
    /// `-alpha…`: internal testing.
    Alpha,
    /// `-beta…`: external testing.
    Beta,
    /// `-rc…`: release candidate.
    ReleaseCandidate,
    /// `-experiment-NAME`: an experiment, named.
    Experiment(String),
    /// Any other pre-release text.
    Other(String),
}

/// Why a string is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// Not semantic-version syntax.
    #[error(
        "`{input}` is not a version (expected MAJOR.MINOR.PATCH[-qualifier], e.g. 1.2.0-rc.1): {reason}"
    )]
    Syntax {
        /// The text that was given.
        input: String,
        /// What the parser objected to.
        reason: String,
    },
    /// Build metadata is not allowed in release versions.
    #[error(
        "`{input}` carries build metadata (`+…`), which Ferry refuses: put it in the release metadata"
    )]
    BuildMetadata {
        /// The text that was given.
        input: String,
    },
}

impl Version {
    /// Builds a plain `MAJOR.MINOR.PATCH` release version.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(semver::Version::new(major, minor, patch))
    }

    /// The major component.
    pub fn major(&self) -> u64 {
        self.0.major
    }

    /// The minor component.
    pub fn minor(&self) -> u64 {
        self.0.minor
    }

    /// The patch component.
    pub fn patch(&self) -> u64 {
        self.0.patch
    }

    /// True for `-alpha`, `-rc.1` and every other pre-release.
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// What the qualifier says about this release.
    pub fn qualifier(&self) -> Qualifier {
        let pre = self.0.pre.as_str();
        if pre.is_empty() {
            return Qualifier::Release;
        }
        let first = pre.split('.').next().unwrap_or(pre);
        if let Some(name) = first.strip_prefix("experiment-") {
            return Qualifier::Experiment(name.to_owned());
        }
        match first {
            "alpha" => Qualifier::Alpha,
            "beta" => Qualifier::Beta,
            "rc" => Qualifier::ReleaseCandidate,
            _ => Qualifier::Other(pre.to_owned()),
        }
    }
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.strip_prefix('v').unwrap_or(input);
        let parsed = semver::Version::parse(trimmed).map_err(|e| VersionError::Syntax {
            input: input.to_owned(),
            reason: e.to_string(),
        })?;
        if !parsed.build.is_empty() {
            return Err(VersionError::BuildMetadata {
                input: input.to_owned(),
            });
        }
        Ok(Self(parsed))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parses_qualifiers_from_the_model_docs() {
        assert_eq!(v("1.1.0-beta").qualifier(), Qualifier::Beta);
        assert_eq!(v("2.0.0-rc.1").qualifier(), Qualifier::ReleaseCandidate);
        assert_eq!(v("1.0.0-alpha.3").qualifier(), Qualifier::Alpha);
        assert_eq!(
            v("2.1.0-experiment-attention").qualifier(),
            Qualifier::Experiment("attention".into())
        );
        assert_eq!(v("1.4.0").qualifier(), Qualifier::Release);
        assert!(!v("1.4.0").is_prerelease());
        assert_eq!(v("v1.4.0"), v("1.4.0"), "a leading v is accepted");
    }

    #[test]
    fn orders_per_semver() {
        let ordered = [
            "0.9.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
            "2.0.0-rc.1",
            "2.0.0",
            "2.1.0-experiment-attention",
            "2.1.0",
        ];
        let parsed: Vec<Version> = ordered.iter().map(|s| v(s)).collect();
        for pair in parsed.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
        let mut shuffled = parsed.clone();
        shuffled.reverse();
        shuffled.sort();
        assert_eq!(shuffled, parsed);
    }

    #[test]
    fn parse_errors_name_the_input() {
        for bad in ["1.0", "one.two.three", "1.0.0-", "01.0.0", ""] {
            let err = bad.parse::<Version>().expect_err(bad).to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        let err = "1.0.0+build.5"
            .parse::<Version>()
            .expect_err("build metadata");
        assert!(matches!(err, VersionError::BuildMetadata { .. }), "{err}");
    }

    #[test]
    fn round_trips_through_serde_as_text() {
        let version = v("2.0.0-rc.1");
        let json = serde_json::to_string(&version).unwrap();
        assert_eq!(json, "\"2.0.0-rc.1\"");
        let back: Version = serde_json::from_str(&json).unwrap();
        assert_eq!(back, version);
        let bytes = postcard::to_allocvec(&version).unwrap();
        let back: Version = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, version);
    }
}
