//! Input/output schema references: `NAME/vN` (`tx-features/v3`), a schema family and its
//! version. Releases declare the schemas they speak; applications on devices declare the
//! ones they send and accept, so a rollout or rollback to a model that no longer fits its
//! application can be refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A schema family and version, `NAME/vN`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaRef {
    /// The family (`tx-features`): lowercase letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Its version.
    pub version: u32,
}

/// A schema reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a schema reference: expected NAME/vN, like tx-features/v3")]
pub struct SchemaError(pub String);

impl FromStr for SchemaRef {
    type Err = SchemaError;

    fn from_str(text: &str) -> Result<Self, SchemaError> {
        let bad = || SchemaError(text.to_owned());
        let (name, version) = text.rsplit_once("/v").ok_or_else(bad)?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        let digits_ok = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit());
        if !name_ok || !digits_ok {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/v{}", self.name, self.version)
    }
}

impl Serialize for SchemaRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        let s: SchemaRef = "tx-features/v3".parse().unwrap();
        assert_eq!((s.name.as_str(), s.version), ("tx-features", 3));
        assert_eq!(s.to_string(), "tx-features/v3");
        for bad in [
            "",
            "tx-features",
            "/v3",
            "tx-features/v",
            "tx-features/v3a",
            "Tx/v1",
            "a b/v1",
            "x/v99999999999",
        ] {
            assert!(bad.parse::<SchemaRef>().is_err(), "{bad}");
        }
    }
}
