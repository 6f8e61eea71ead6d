//! The formats of the JSON files the agent keeps in its state directory: `state.json`,
//! `trust.json` and each model's `metrics.json`. Each carries `"format": N` beside its
//! fields; a file without one is format 1, written before formats were counted. A build
//! reads every format up to its own (migrating older ones as it reads them, and writing its
//! own) and refuses a file from a newer build by name instead of misreading it.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format of `state.json` this build writes.
pub const STATE_FORMAT: u64 = 1;
/// The format of `trust.json` this build writes.
pub const TRUST_FORMAT: u64 = 1;
/// The format of `metrics.json` this build writes.
pub const METRICS_FORMAT: u64 = 1;
/// `handover.json` (a self-update on trial, see `handover`).
pub const TRIAL_FORMAT: u64 = 1;

const FORMAT_KEY: &str = "format";

/// A stored file this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Not the JSON of the expected record.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Written by a newer build.
    #[error(
        "written by a newer ferry-agent (format {found}; this build reads up to {supported}): \
         run that build, or move the file away to start over"
    )]
    TooNew {
        /// The file's format.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
}

/// `value` as JSON carrying `format`.
pub fn encode<T: Serialize>(value: &T, format: u64) -> Result<Vec<u8>, serde_json::Error> {
    let mut json = serde_json::to_value(value)?;
    if let serde_json::Value::Object(fields) = &mut json {
        fields.insert(FORMAT_KEY.into(), format.into());
    }
    serde_json::to_vec_pretty(&json)
}

/// Reads a record written in any format up to `supported`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], supported: u64) -> Result<T, FormatError> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes)?;
    let found = match &mut json {
        serde_json::Value::Object(fields) => fields
            .remove(FORMAT_KEY)
            .and_then(|f| f.as_u64())
            .unwrap_or(1),
        _ => 1,
    };
    if found > supported {
        return Err(FormatError::TooNew { found, supported });
    }
    Ok(serde_json::from_value(json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Record {
        n: u32,
    }

    #[test]
    fn a_record_round_trips_with_its_format_and_one_without_is_format_one() {
        let bytes = encode(&Record { n: 7 }, 1).expect("encodes");
        assert!(String::from_utf8_lossy(&bytes).contains("\"format\": 1"));
        assert_eq!(
            decode::<Record>(&bytes, 1).expect("decodes"),
            Record { n: 7 }
        );
        assert_eq!(
            decode::<Record>(br#"{"n": 3}"#, 1).expect("old"),
            Record { n: 3 }
        );
    }

    #[test]
    fn a_record_from_a_newer_build_is_refused_by_name() {
        let err = decode::<Record>(br#"{"n": 3, "format": 2}"#, 1).expect_err("refused");
        assert!(matches!(
            err,
            FormatError::TooNew {
                found: 2,
                supported: 1
            }
        ));
        assert!(err.to_string().contains("newer ferry-agent"), "{err}");
    }
}
