//! One module per Kafka API (or family of admin APIs). Handlers take decoded requests and
//! return response messages; they never see bytes of the wire.

pub mod admin;
pub mod api_versions;
pub mod authorize;
pub mod consumer_group;
pub mod error_codes;
pub mod fetch;
pub mod group;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod registry;
pub mod security;
pub mod topic_admin;
pub mod txn;

use proto_kafka::protocol::StrBytes;

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
