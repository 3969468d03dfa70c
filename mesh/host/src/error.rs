//! The host's errors.

use crate::config::ConfigError;
use crate::delivery::DeliveryError;
use crate::keys::KeyError;
use crate::store::StoreError;
use std::fmt;

/// Everything the hosted agent can fail with.
#[derive(Debug)]
pub enum HostError {
    /// The configuration file.
    Config(ConfigError),
    /// The storage key.
    Key(KeyError),
    /// The state store.
    Store(StoreError),
    /// A stored record was refused on restore (rolled back, changed,
    /// sealed under another key, of another agent): nothing was changed
    /// or deleted.
    Restore {
        /// Which record ([`crate::store::record_name`]).
        record: String,
        /// Why the agent refused it.
        error: securemesh::Error,
    },
    /// The agent refused a call.
    Mesh(securemesh::Error),
    /// The delivery service.
    Delivery(DeliveryError),
    /// A socket.
    Io(std::io::Error),
    /// The OS random generator does not answer.
    Random(getrandom::Error),
    /// The agent's task is gone (it stopped or was killed).
    Stopped,
    /// Something the caller named does not exist (an agent, a bundle).
    NotFound(String),
    /// Waited too long.
    Timeout(&'static str),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Config(e) => write!(f, "{e}"),
            HostError::Key(e) => write!(f, "{e}"),
            HostError::Store(e) => write!(f, "{e}"),
            HostError::Restore { record, error } => {
                let why = match error {
                    securemesh::Error::Storage(securemesh_core::Error::Rollback { .. }) => {
                        "it is older than the generation ledger records (a rolled-back file)"
                    }
                    securemesh::Error::Storage(securemesh_core::Error::Decrypt) => {
                        "it does not open under the storage key (a changed or corrupted file, or another key)"
                    }
                    securemesh::Error::WrongRecord => "it belongs to another agent, slot or record file",
                    _ => "it does not decode",
                };
                write!(f, "state record {record} refused: {why} ({error}); nothing was changed")
            }
            HostError::Mesh(e) => write!(f, "agent: {e}"),
            HostError::Delivery(e) => write!(f, "{e}"),
            HostError::Io(e) => write!(f, "{e}"),
            HostError::Random(e) => write!(f, "OS random generator: {e}"),
            HostError::Stopped => write!(f, "the agent stopped"),
            HostError::NotFound(what) => write!(f, "not found: {what}"),
            HostError::Timeout(what) => write!(f, "timed out: {what}"),
        }
    }
}

impl std::error::Error for HostError {}

impl From<ConfigError> for HostError {
    fn from(e: ConfigError) -> Self {
        HostError::Config(e)
    }
}
impl From<KeyError> for HostError {
    fn from(e: KeyError) -> Self {
        HostError::Key(e)
    }
}
impl From<StoreError> for HostError {
    fn from(e: StoreError) -> Self {
        HostError::Store(e)
    }
}
impl From<securemesh::Error> for HostError {
    fn from(e: securemesh::Error) -> Self {
        HostError::Mesh(e)
    }
}
impl From<DeliveryError> for HostError {
    fn from(e: DeliveryError) -> Self {
        HostError::Delivery(e)
    }
}
impl From<std::io::Error> for HostError {
    fn from(e: std::io::Error) -> Self {
        HostError::Io(e)
    }
}
impl From<getrandom::Error> for HostError {
    fn from(e: getrandom::Error) -> Self {
        HostError::Random(e)
    }
}
