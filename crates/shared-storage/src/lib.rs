//! The cluster's shared-storage partition (issue 11, the data half): record batches live in
//! an S3-compatible object store, and PostgreSQL is the sequencer that gives them offsets.
//!
//! - **Produce**: [`SharedPartition::append`] checks the batches (header, CRC) and hands them
//!   to the broker-wide intake, which gathers every partition's batches for up to
//!   `object.store.produce.linger.ms` or `object.store.produce.max.bytes`, PUTs one object,
//!   then in one PostgreSQL transaction checks each partition's leader epoch (a fenced
//!   leader's append is refused with NOT_LEADER_OR_FOLLOWER), assigns offsets, checks
//!   idempotent producers' epochs and sequences (a retry gets its first offsets back) and
//!   records the batch index. Only then does the append resolve. Up to
//!   `object.store.produce.max.in.flight.objects` objects are in flight: the next ones
//!   gather and upload while earlier ones commit, commits keep sealing order, and a failed
//!   PUT or commit fails the objects sealed behind it. An object no committed row
//!   points into is recorded in `shared_storage_orphan_objects` for later collection.
//! - **Fetch**: [`SharedPartition::read`] serves whole batches from the cached index, byte
//!   ranges from a bounded cache (the leader's own writes are already there) or range GETs,
//!   with base offsets and leader epochs patched in as they go out (no re-encoding).
//!   Other brokers' commits arrive by NOTIFY plus a catch-up read, and wake long-polls.
//! - **Faults**: an object store failure is KAFKA_STORAGE_ERROR, a PostgreSQL failure (the
//!   commit's outcome unknown) REQUEST_TIMED_OUT; both retriable, and nothing is acknowledged
//!   that is not committed. Connections come back by themselves.
//!
//! The broker hosts these partitions behind its partition seam (`strom_broker::shared_partition`)
//! when `object.store.url` is set: `PartitionLog::start_append` resolves to the offsets once
//! committed ([`SharedPartition::submit`] hands the batches over in request order), and
//! `PartitionLog::read_bytes` carries the bytes (no sendfile).

pub mod cache;
pub mod config;
pub mod error;
pub mod partition;
pub mod schema;
pub mod sequencer;
mod shared;
pub mod storage;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use config::{Credentials, ObjectStoreConfig};
pub use error::SharedStorageError;
pub use partition::{MarkerListener, SharedPartition, SharedRead};
pub use sequencer::{Committed, IndexEntry};
pub use storage::SharedStorage;
