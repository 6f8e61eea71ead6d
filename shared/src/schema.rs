//! Input/output schema references: `NAME/vN` (`tx-features/v3`), a schema family and its
//! version. Releases declare the schemas they speak; applications on devices declare the
//! ones they send and accept, so a rollout or rollback to a model that no longer fits its
//! application can be refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The device label carrying the input schema its application sends (`NAME/vN`).
pub const SENDS_LABEL: &str = "app.sends";
/// The device label carrying the output schema versions its application reads (a range).
pub const READS_LABEL: &str = "app.reads";

/// The label a device announces one model's schema under (`app.reads@tokenizer`), when its
/// application speaks differently to each model it follows.
pub fn model_label(base: &str, model: &crate::ModelName) -> String {
    format!("{base}@{model}")
}

/// What a device with `labels` announces as `base` (one of [`SENDS_LABEL`], [`READS_LABEL`])
/// for `model`: the model's own label, else the device-wide one.
pub fn announced<'a>(
    labels: &'a std::collections::BTreeMap<String, String>,
    base: &str,
    model: &crate::ModelName,
) -> Option<&'a String> {
    labels
        .get(&model_label(base, model))
        .or_else(|| labels.get(base))
}

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

/// A range of versions of one schema family: `NAME/vN` (exactly N), `NAME/vA..vB` (A to B),
/// `NAME/vA+` (A and every later one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaRange {
    /// The family.
    pub name: String,
    /// The first version in it.
    pub from: u32,
    /// The last (`None`: no end).
    pub to: Option<u32>,
}

impl SchemaRange {
    /// Exactly `schema`.
    pub fn exactly(schema: &SchemaRef) -> Self {
        Self {
            name: schema.name.clone(),
            from: schema.version,
            to: Some(schema.version),
        }
    }

    /// Whether `schema` is in the range.
    pub fn contains(&self, schema: &SchemaRef) -> bool {
        schema.name == self.name
            && schema.version >= self.from
            && self.to.is_none_or(|to| schema.version <= to)
    }
}

impl FromStr for SchemaRange {
    type Err = SchemaError;

    fn from_str(text: &str) -> Result<Self, SchemaError> {
        let bad = || SchemaError(text.to_owned());
        if let Some(open) = text.strip_suffix('+') {
            let start: SchemaRef = open.parse().map_err(|_| bad())?;
            return Ok(Self {
                name: start.name,
                from: start.version,
                to: None,
            });
        }
        match text.split_once("..v") {
            Some((start, end)) => {
                let start: SchemaRef = start.parse().map_err(|_| bad())?;
                let end: u32 = end
                    .parse()
                    .ok()
                    .filter(|e| *e >= start.version && end.chars().all(|c| c.is_ascii_digit()))
                    .ok_or_else(bad)?;
                Ok(Self {
                    name: start.name,
                    from: start.version,
                    to: Some(end),
                })
            }
            None => Ok(Self::exactly(&text.parse().map_err(|_| bad())?)),
        }
    }
}

impl fmt::Display for SchemaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to {
            Some(to) if to == self.from => write!(f, "{}/v{}", self.name, self.from),
            Some(to) => write!(f, "{}/v{}..v{to}", self.name, self.from),
            None => write!(f, "{}/v{}+", self.name, self.from),
        }
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
    fn ranges_parse_print_back_and_contain() {
        let v = |s: &str| s.parse::<SchemaRef>().unwrap();
        for (text, inside, outside) in [
            ("tx/v3", &["tx/v3"][..], &["tx/v2", "tx/v4", "rx/v3"][..]),
            (
                "tx/v2..v4",
                &["tx/v2", "tx/v3", "tx/v4"],
                &["tx/v1", "tx/v5"],
            ),
            ("tx/v2+", &["tx/v2", "tx/v99"], &["tx/v1", "other/v3"]),
        ] {
            let range: SchemaRange = text.parse().unwrap();
            assert_eq!(range.to_string(), text);
            assert!(inside.iter().all(|s| range.contains(&v(s))), "{text}");
            assert!(outside.iter().all(|s| !range.contains(&v(s))), "{text}");
        }
        for bad in ["tx/v4..v2", "tx/v2..", "tx/v2..vx", "tx/v2++", "tx"] {
            assert!(bad.parse::<SchemaRange>().is_err(), "{bad}");
        }
    }

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
