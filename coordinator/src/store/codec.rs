//! Encoding of stored records: one format byte, then postcard. Each record type names the
//! format it writes ([`Record::FORMAT`]) and reads the formats older builds wrote through
//! [`Record::from_older`]; a record written by a newer format is refused by name rather than
//! misread.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// A record type the store keeps, with the formats it can be read from.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// The format this build writes.
    const FORMAT: u8 = 1;

    /// Reads `body`, written by an older build in `format`; `None` when this build cannot.
    fn from_older(format: u8, body: &[u8]) -> Option<Result<Self, postcard::Error>> {
        let _ = (format, body);
        None
    }
}

/// Declares record types still in their first format; each file that defines a record type
/// declares its format beside it.
macro_rules! first_format {
    ($($t:ty),* $(,)?) => {$( impl $crate::store::codec::Record for $t {} )*};
}
pub(crate) use first_format;

/// Encodes a record for storage.
pub(crate) fn encode<T: Record>(value: &T) -> Vec<u8> {
    let mut out = vec![T::FORMAT];
    // Serialising plain data into a Vec cannot fail.
    out.extend(postcard::to_allocvec(value).unwrap_or_default());
    out
}

/// Decodes a stored record in any format this build reads, naming where it came from on
/// failure.
pub(crate) fn decode<T: Record>(
    table: &'static str,
    key: &dyn std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table,
        key: key.to_string(),
        reason,
    };
    let Some((&format, body)) = bytes.split_first() else {
        return Err(corrupt("empty record".into()));
    };
    let decoded = if format == T::FORMAT {
        postcard::from_bytes(body)
    } else {
        match T::from_older(format, body) {
            Some(result) => result,
            None if format > T::FORMAT => {
                return Err(corrupt(format!(
                    "record format {format} was written by a newer Ferry (this build reads up to {})",
                    T::FORMAT
                )));
            }
            None => return Err(corrupt(format!("unknown record format {format}"))),
        }
    };
    decoded.map_err(|e| corrupt(format!("format {format}: {e}")))
}
