use proto_kafka::ResponseError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SharedStorageError {
    #[error("configuration: {0}")]
    Config(String),
    /// A PUT or GET failed (after the client's retries): retriable.
    #[error("object store: {0}")]
    ObjectStore(String),
    /// PostgreSQL could not be reached or the transaction failed: the outcome of a commit in
    /// flight is unknown, so the client retries (an idempotent producer's retry is answered as
    /// a duplicate if the first attempt did commit).
    #[error("sequencer (PostgreSQL): {0}")]
    Sequencer(String),
    /// Refused with this Kafka error (fencing, sequences, corrupt batches, ranges).
    #[error("rejected: {0:?}")]
    Rejected(ResponseError),
    #[error("the intake has stopped")]
    IntakeStopped,
    #[error("a stored batch does not match its index entry: {0}")]
    Corrupt(String),
}

impl SharedStorageError {
    /// The Kafka error a client is answered with. Both outages are retriable errors, as Kafka
    /// answers a failed disk (KAFKA_STORAGE_ERROR) and a write whose replication did not
    /// finish in time (REQUEST_TIMED_OUT).
    pub fn response_error(&self) -> ResponseError {
        match self {
            SharedStorageError::ObjectStore(_) | SharedStorageError::Corrupt(_) => {
                ResponseError::KafkaStorageError
            }
            SharedStorageError::Sequencer(_) | SharedStorageError::IntakeStopped => {
                ResponseError::RequestTimedOut
            }
            SharedStorageError::Rejected(e) => *e,
            SharedStorageError::Config(_) => ResponseError::InvalidConfig,
        }
    }

    pub fn is_retriable(&self) -> bool {
        self.response_error().is_retriable()
    }
}

impl From<tokio_postgres::Error> for SharedStorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        // tokio-postgres's messages name neither the password nor the URL.
        SharedStorageError::Sequencer(e.to_string())
    }
}

impl From<object_store::Error> for SharedStorageError {
    fn from(e: object_store::Error) -> Self {
        SharedStorageError::ObjectStore(e.to_string())
    }
}
