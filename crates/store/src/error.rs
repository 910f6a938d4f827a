//! Errors of the store.

use std::path::PathBuf;

use warmpool_core::{ContainerId, ContainerState, InvalidTransition};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data dir {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database schema version {found} is newer than this warmpool supports ({supported}); refusing to touch it")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database is not usable: {0}")]
    Corrupt(String),
    #[error("container {0} is not in the store")]
    NotFound(ContainerId),
    #[error("container {id} already exists")]
    Exists { id: ContainerId },
    #[error("container {id} is {found}, expected {expected}")]
    Conflict {
        id: ContainerId,
        expected: ContainerState,
        found: ContainerState,
    },
    /// An extension read an expiry that another one has moved since.
    #[error("the expiry of container {id} moved meanwhile")]
    ExpiryMoved { id: ContainerId },
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
    #[error("store writer has stopped")]
    Closed,
    #[error("sqlite error")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// A change refused for what it asked (no such container, one that exists,
    /// a state or expiry that moved): the store itself is fine. Every other
    /// error of a write is the store's own (I/O, disk full, SQLite).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound(_)
                | StoreError::Exists { .. }
                | StoreError::Conflict { .. }
                | StoreError::ExpiryMoved { .. }
                | StoreError::Transition(_)
        )
    }

    /// The store cannot take writes right now (disk full, read-only, locked, I/O
    /// error): the caller should answer 503 and retry later.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Closed => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DiskFull
                    | ReadOnly
                    | DatabaseBusy
                    | DatabaseLocked
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
            ),
            _ => false,
        }
    }
}
