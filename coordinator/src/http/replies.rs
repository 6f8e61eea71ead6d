//! What the admin API answers besides its documents: [`Failure`] (a status and one line of
//! explanation, as an `ApiError` body) and how store and registry errors map to statuses, and
//! the checks of request fields shared by several routes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use crate::api::ApiError;
use crate::registry::error::RegistryError;
use crate::store::StoreError;

/// A failed call: status and one line of explanation.
#[derive(Debug)]
pub(crate) struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::Immutable { .. } => StatusCode::CONFLICT,
            StoreError::MissingBlob { .. }
            | StoreError::BlobSize { .. }
            | StoreError::ChunkIndex { .. } => StatusCode::BAD_REQUEST,
            StoreError::NoSuchRelease { .. } | StoreError::NoSuchRollout(_) => {
                StatusCode::NOT_FOUND
            }
            StoreError::RolloutConflict(_) | StoreError::StageConflict(_) => StatusCode::CONFLICT,
            _ => {
                warn!("store failure: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Failure(status, e.to_string())
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Store(e) => e.into(),
            // The release is unacceptable, whoever sends it: not a permission matter.
            RegistryError::Verify(_) | RegistryError::Trust(_) => {
                Failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            RegistryError::NoPublisherKeys => Failure(StatusCode::CONFLICT, e.to_string()),
            RegistryError::Invalid(_) => Failure(StatusCode::CONFLICT, e.to_string()),
            RegistryError::Forbidden(m) => Failure(StatusCode::FORBIDDEN, m),
            RegistryError::Busy(m) => Failure(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

/// A 400 naming what was wrong with the request.
pub(crate) fn bad_request(e: impl std::fmt::Display) -> Failure {
    Failure(StatusCode::BAD_REQUEST, e.to_string())
}

/// A JSON reply or a failure.
pub(crate) type ApiResult<T> = Result<Json<T>, Failure>;

/// `bytes` random bytes from the operating system, as hex (token ids and secrets).
pub(crate) fn random_hex(bytes: usize) -> Result<String, Failure> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no randomness: {e}"),
        )
    })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A token's name as given: 1 to 64 printable characters, trimmed.
pub(crate) fn token_name(name: &str) -> Result<&str, Failure> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            "a token name must be 1 to 64 printable characters".into(),
        ));
    }
    Ok(name)
}

/// The longest a token or enrollment token may stay valid: ten years. Past that a client's
/// clock arithmetic overflows (an expiry near `u64::MAX` seconds is no time at all).
pub(crate) const MAX_VALIDITY_SECS: u64 = 10 * 365 * 86_400;

/// `now` plus `count` periods of `unit_secs` (named `field`, in `unit`s; 0: expired at once),
/// refused with 400 past [`MAX_VALIDITY_SECS`].
pub(crate) fn expiry(
    now: u64,
    field: &str,
    count: Option<u64>,
    unit_secs: u64,
    unit: &str,
) -> Result<Option<u64>, Failure> {
    let Some(count) = count else {
        return Ok(None);
    };
    let most = MAX_VALIDITY_SECS / unit_secs;
    if count > most {
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("{field} must be at most {most} {unit} (ten years), not {count}"),
        ));
    }
    Ok(Some(now + count * unit_secs))
}

/// Parses a path or body field, failing with 400.
pub(crate) fn parse<T: std::str::FromStr>(text: &str) -> Result<T, Failure>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(bad_request)
}

/// Parses a device id from a path, failing with 400.
pub(crate) fn device_id(text: &str) -> Result<ferry_shared::wire::DeviceId, Failure> {
    ferry_shared::wire::DeviceId::parse(text).ok_or_else(|| {
        Failure(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a device id"),
        )
    })
}
