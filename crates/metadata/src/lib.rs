//! Cluster metadata as Kafka's KRaft keeps it: an ordered log of records ([`records`]) applied
//! to an in-memory [`image::MetadataImage`]. The log ([`metadata_log`]) lives in the data
//! directory as partition `__cluster_metadata-0`, written through the same log engine as user
//! data, so that a Raft quorum can later replicate it without changing what the records are.

pub mod image;
pub mod metadata_log;
pub mod publisher;
pub mod records;

pub use image::{MetadataImage, PartitionRegistration, TopicImage};
pub use publisher::{MetadataDelta, MetadataPublisher, PublishError};
pub use records::MetadataRecord;
