//! What is installed and held, as plain data: the versions the slots name ([`Slots`]; the
//! links themselves are the `slots` module's) and the versions held back ([`Hold`]; stored
//! with the rest of the agent's state by the `state` module).

use ferry_shared::Version;
use serde::{Deserialize, Serialize};

/// Which versions the `current` and `previous` links name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    /// What runs.
    pub current: Option<Version>,
    /// What an instant rollback returns to.
    pub previous: Option<Version>,
}

/// A version the device will not install again until the desired version changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The version held back.
    pub version: Version,
    /// Why it is held (the failure, or the operator's rollback), shown in status and reports.
    pub reason: String,
}
