use strom_metadata::metadata_log::MetadataLogError;
use thiserror::Error;

/// Errors of the PostgreSQL metadata store. No variant's text carries the password of
/// `cluster.metadata.url` (server and driver messages are scrubbed before they get here).
#[derive(Debug, Error)]
pub enum PgMetadataError {
    #[error("cluster.metadata.url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The server cannot be reached or the connection broke. Retriable: the next call
    /// reconnects.
    #[error("PostgreSQL at {target} is unavailable (retriable): {reason}")]
    Unavailable { target: String, reason: String },
    /// The server refused a statement for a reason a retry does not change.
    #[error("PostgreSQL at {target}: {reason}")]
    Database { target: String, reason: String },
    #[error(
        "the metadata schema in PostgreSQL is at version {found}, newer than this binary knows ({known}): upgrade strom"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("metadata log record at offset {offset} is unreadable: {reason}")]
    Corrupt { offset: i64, reason: String },
    #[error(
        "metadata log: an append expected to start at offset {expected}, but the log ends at {end}"
    )]
    Conflict { expected: i64, end: i64 },
    #[error(
        "metadata log: the append was fenced: controller epoch {epoch} is not current ({reason})"
    )]
    Fenced { epoch: i64, reason: String },
    #[error(
        "the controller lease is held by node {holder} (epoch {epoch}) for {remaining_ms} ms more"
    )]
    LeaseHeld {
        holder: i32,
        epoch: i64,
        remaining_ms: i64,
    },
    /// A renew or release by a holder whose lease expired or was taken over.
    #[error("node {node_id} no longer holds the controller lease of epoch {epoch}")]
    LeaseLost { node_id: i32, epoch: i64 },
    #[error("invalid lease time-to-live {ttl_ms} ms: it must be between 1 and {max_ms}")]
    InvalidTtl { ttl_ms: i64, max_ms: i64 },
    /// Kafka's DUPLICATE_BROKER_REGISTRATION: the id belongs to another live broker.
    #[error(
        "node id {node_id} is registered by another live broker (incarnation {incarnation_id})"
    )]
    DuplicateRegistration {
        node_id: i32,
        incarnation_id: uuid::Uuid,
    },
    #[error("node id {node_id} is invalid: {reason}")]
    InvalidNodeId { node_id: i32, reason: String },
    /// Kafka's STALE_BROKER_EPOCH / a fenced broker: it must register again.
    #[error("broker {node_id} (incarnation {incarnation_id}) is not registered or was fenced: register again")]
    NotRegistered {
        node_id: i32,
        incarnation_id: uuid::Uuid,
    },
    #[error("no node id is free to allocate")]
    NodeIdsExhausted,
    #[error("metadata log is closed")]
    Closed,
}

impl PgMetadataError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, PgMetadataError::Unavailable { .. })
    }
}

impl From<PgMetadataError> for MetadataLogError {
    fn from(e: PgMetadataError) -> Self {
        match e {
            PgMetadataError::Conflict { expected, end } => {
                MetadataLogError::Conflict { expected, end }
            }
            PgMetadataError::Fenced { epoch, reason } => MetadataLogError::Fenced { epoch, reason },
            PgMetadataError::Corrupt { offset, reason } => {
                MetadataLogError::Corrupt { offset, reason }
            }
            PgMetadataError::Closed => MetadataLogError::Closed,
            e @ PgMetadataError::Unavailable { .. } => MetadataLogError::Unavailable(e.to_string()),
            e => MetadataLogError::Io(std::io::Error::other(e.to_string())),
        }
    }
}
