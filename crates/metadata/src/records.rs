//! The metadata records. Each is stored as one JSON-valued record in the metadata log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// DescribeConfigs resource types, as Kafka numbers them.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// A broker announced itself with the endpoints it advertises.
    RegisterBroker {
        node_id: i32,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    /// A partition's replica set and leadership; a new record for an existing partition
    /// replaces it (Kafka's PartitionRecord / PartitionChangeRecord collapsed into one).
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// Sets (`Some`) or removes (`None`) one config of a resource.
    Config {
        resource_type: i8,
        resource_name: String,
        name: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// Producer ids below this are handed out (Kafka's ProducerIdsRecord): ids are allocated
    /// in blocks, so a restart never reuses one.
    ProducerIds {
        next_producer_id: i64,
    },
    /// Kafka's `UserScramCredentialRecord`: one user's salted credential for one SCRAM
    /// mechanism (the wire code of `ScramMechanism`), never the password; a new record for
    /// the same user and mechanism replaces the old one.
    UserScramCredential {
        name: String,
        mechanism: i8,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: i32,
    },
    /// Kafka's `RemoveUserScramCredentialRecord`.
    RemoveUserScramCredential {
        name: String,
        mechanism: i8,
    },
    /// Kafka's `AccessControlEntryRecord`: one ACL binding, by the wire codes of its resource
    /// type, pattern type, operation and permission type, under an id that removal names.
    AccessControlEntry {
        id: Uuid,
        resource_type: i8,
        resource_name: String,
        pattern_type: i8,
        principal: String,
        host: String,
        operation: i8,
        permission_type: i8,
    },
    /// Kafka's `RemoveAccessControlEntryRecord`.
    RemoveAccessControlEntry {
        id: Uuid,
    },
}
