//! `strom-client`: a small async client of the Kafka protocol, used by the
//! `strom` command-line tools. It speaks to any Kafka-compatible broker.
//!
//! - [`Connection`]: one TCP connection, size-prefixed frames, correlation
//!   ids, pipelining, ApiVersions negotiation, typed round trips over
//!   proto-kafka's messages, request timeouts and a response size bound.
//! - [`Client`]: bootstrap, a metadata cache, a connection per broker,
//!   leader routing (ListOffsets, Fetch, Produce) and coordinator lookup
//!   (group APIs).
//! - [`Producer`]: batching, partitioning (Kafka's murmur2 / sticky),
//!   compression, retries.
//! - [`Membership`]: a consumer group member (classic protocol, `range`).

pub mod admin;
pub mod client;
pub mod connection;
pub mod error;
pub mod fetch;
pub mod groups;
pub mod log_admin;
pub mod member;
pub mod partitioner;
pub mod producer;
pub mod send;
pub mod transactions;

pub use admin::{
    topic_id_string, ClusterInfo, ConfigEntry, ConfigOp, ConfigQuery, ConfigSynonym, CreatedTopic,
    NewTopic,
};
pub use client::{
    parse_bootstrap, BrokerMeta, Client, ClientConfig, Metadata, PartitionMeta, TopicMeta,
};
pub use connection::{ClientSecurity, Connection, ConnectionConfig};
pub use error::{Error, KafkaCode, Result};
pub use fetch::{FetchTarget, FetchedPartition, ListedOffset, OffsetSpec};
pub use groups::{CommittedOffsets, Committer, GroupDescription, GroupMember, ListedGroup};
pub use log_admin::{LogDirInfo, LogDirPartition, DELETE_TO_HIGH_WATERMARK};
pub use member::{MemberAssignment, Membership};
pub use partitioner::{murmur2, partition_for_key, StickyPartitioner};
pub use producer::{ProduceRecord, Producer, ProducerConfig, ProducerStats};
pub use proto_kafka::records::{Compression, Record};
pub use send::encode_records;
pub use transactions::{ListedTransaction, TransactionDescription};
