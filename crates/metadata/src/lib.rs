//! Cluster metadata as Kafka's KRaft keeps it: an ordered log of records ([`records`]) applied
//! to an in-memory [`image::MetadataImage`]. The log ([`metadata_log`]) lives in the data
//! directory as partition `__cluster_metadata-0`, written through the same log engine as user
//! data, behind the seam [`log_client::MetadataLogClient`] that a shared log (PostgreSQL, in
//! the cluster) implements as well. The [`controller`] validates changes against the image
//! and commits them through that seam; the [`loader`] swaps the new image in and hands the
//! change to each [`publisher::MetadataPublisher`].

pub mod controller;
pub mod image;
pub mod loader;
pub mod log_client;
pub mod memory_log;
pub mod metadata_log;
pub mod publisher;
pub mod records;
pub mod scram_store;

pub use controller::Controller;
pub use image::{MetadataImage, PartitionRegistration, TopicImage};
pub use loader::MetadataLoader;
pub use log_client::MetadataLogClient;
pub use publisher::{MetadataDelta, MetadataPublisher, PublishError};
pub use records::MetadataRecord;
pub use scram_store::ImageScramCredentialStore;
