//! The error of one agent session, shared by its control stream, its fetch streams and the
//! pushes written to it.

use ferry_shared::wire::io::FrameIoError;

use crate::store::StoreError;

/// Failures of one agent session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Bad frames or a broken stream.
    #[error(transparent)]
    Frame(#[from] FrameIoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The agent broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The session was refused.
    #[error("refused: {0}")]
    Refused(String),
}
