//! The error of every registry operation (publish, alias moves, stages, rollouts, gc): why it
//! was refused, for the API to turn into a status and a message.

use ferry_shared::sign::VerifyError;

use crate::store::StoreError;

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The release's signature or manifest is not acceptable.
    #[error("release refused: {0}")]
    Verify(#[from] VerifyError),
    /// The release is not signed as the root requires (its publishers' threshold).
    #[error("release refused: {0}")]
    Trust(#[from] ferry_shared::trust::TrustError),
    /// No publisher key is trusted yet.
    #[error("no publisher key is trusted yet: add one with `ferryctl keys trust KEY.pub`")]
    NoPublisherKeys,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request that cannot be carried out as asked (a bad plan, an action the state forbids).
    #[error("{0}")]
    Invalid(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Another coordinator's work keeps this out for now; retrying later succeeds.
    #[error("{0}")]
    Busy(String),
}
