//! ferryctl's exit codes: what went wrong, told apart without parsing messages.
//!
//! Errors that decide the code are typed ([`ApiFailure`], [`Unreachable`], [`Usage`],
//! [`CheckFailed`]) and travel inside `anyhow` chains; [`code_of`] finds the first of them.
//! The table is part of ferryctl's interface: scripts rely on it, so codes are only ever added.

use std::process::ExitCode;

use reqwest::StatusCode;

/// The exit codes, as documented in `ferryctl --help` and the README.
pub(crate) const TABLE: &str = "\
Exit codes:
  0  success
  1  any other failure (a local file, a key, an unreadable answer)
  2  usage: bad flags or arguments (also a --url without http:// or https://)
  3  the coordinator cannot be reached (connection, TLS, certificate pin, timeout)
  4  not authenticated or not permitted (HTTP 401, 403)
  5  not found (HTTP 404)
  6  conflict: refused by the registry's state or rules (HTTP 409), e.g. a gate or check
  7  invalid request (HTTP 400, 413, 422)
  8  the coordinator failed (HTTP 5xx)
  9  a verification ran and failed (e.g. audit --verify found the chain broken)";

const OTHER: u8 = 1;
const USAGE: u8 = 2;
const UNREACHABLE: u8 = 3;
const AUTH: u8 = 4;
const NOT_FOUND: u8 = 5;
const CONFLICT: u8 = 6;
const INVALID: u8 = 7;
const SERVER: u8 = 8;
const CHECK_FAILED: u8 = 9;

/// The coordinator answered with an error status; `message` is its `{"error": …}` text.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({status})")]
pub(crate) struct ApiFailure {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

/// No answer came back: the coordinator at `base` could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the coordinator at {base}")]
pub(crate) struct Unreachable {
    pub(crate) base: String,
}

/// Flags or arguments that clap accepted but that make no sense.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub(crate) String);

/// A verification the user asked for ran and did not pass.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct CheckFailed(pub(crate) String);

/// The exit code for `error`: the first typed cause in its chain decides.
pub(crate) fn code_of(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(number_of(error))
}

fn number_of(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Unreachable>().is_some() {
        return UNREACHABLE;
    }
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<ApiFailure>() {
            return of_status(failure.status);
        }
        if cause.is::<Usage>() {
            return USAGE;
        }
        if cause.is::<CheckFailed>() {
            return CHECK_FAILED;
        }
    }
    OTHER
}

fn of_status(status: StatusCode) -> u8 {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => AUTH,
        StatusCode::NOT_FOUND => NOT_FOUND,
        StatusCode::CONFLICT => CONFLICT,
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNPROCESSABLE_ENTITY => INVALID,
        s if s.is_server_error() => SERVER,
        _ => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn api(status: StatusCode) -> anyhow::Error {
        anyhow::Error::new(ApiFailure {
            status,
            message: "no".into(),
        })
        .context("while doing something")
    }

    #[test]
    fn statuses_map_to_distinct_codes() {
        assert_eq!(number_of(&api(StatusCode::UNAUTHORIZED)), AUTH);
        assert_eq!(number_of(&api(StatusCode::FORBIDDEN)), AUTH);
        assert_eq!(number_of(&api(StatusCode::NOT_FOUND)), NOT_FOUND);
        assert_eq!(number_of(&api(StatusCode::CONFLICT)), CONFLICT);
        assert_eq!(number_of(&api(StatusCode::BAD_REQUEST)), INVALID);
        assert_eq!(number_of(&api(StatusCode::PAYLOAD_TOO_LARGE)), INVALID);
        assert_eq!(number_of(&api(StatusCode::SERVICE_UNAVAILABLE)), SERVER);
        assert_eq!(number_of(&api(StatusCode::IM_A_TEAPOT)), OTHER);
    }

    #[test]
    fn unreachable_usage_and_checks_have_their_own_codes() {
        let cut: Result<(), std::io::Error> = Err(std::io::ErrorKind::ConnectionRefused.into());
        let cut = cut
            .context(Unreachable {
                base: "https://x".into(),
            })
            .unwrap_err();
        assert_eq!(number_of(&cut), UNREACHABLE);
        assert_eq!(number_of(&Usage("bad".into()).into()), USAGE);
        assert_eq!(
            number_of(&CheckFailed("broken".into()).into()),
            CHECK_FAILED
        );
        assert_eq!(number_of(&anyhow::anyhow!("disk")), OTHER);
    }

    #[test]
    fn the_documented_table_lists_every_code() {
        for code in 0..=CHECK_FAILED {
            assert!(
                TABLE.contains(&format!("\n  {code}  ")),
                "code {code} undocumented"
            );
        }
    }
}
