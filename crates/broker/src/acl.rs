//! Kafka's ACL vocabulary: resource types, operations, and which operations apply to which
//! resource type (Kafka's `AclEntry.supportedOperations`). Metadata, DescribeCluster,
//! DescribeTopicPartitions, DescribeGroups and ConsumerGroupDescribe report a resource's
//! authorized operations from here, so an authorizer only has to narrow
//! [`authorized_operations`] to what the caller is allowed.

/// Kafka's `AclOperation` codes, as they appear on the wire and as bit positions of an
/// authorized-operations field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

/// The concrete resource types of Kafka's ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

/// "Authorized operations were not requested" (the schema's default, Integer.MIN_VALUE).
pub const OPS_NOT_REQUESTED: i32 = i32::MIN;

use AclOperation as Op;

const TOPIC_OPS: &[AclOperation] = &[
    Op::Read,
    Op::Write,
    Op::Create,
    Op::Delete,
    Op::Alter,
    Op::Describe,
    Op::DescribeConfigs,
    Op::AlterConfigs,
];
/// Kafka 4 added the configs operations with per-group configs (KIP-848); clients check for
/// five operations against a 4.x broker.
const GROUP_OPS: &[AclOperation] = &[
    Op::Read,
    Op::Delete,
    Op::Describe,
    Op::DescribeConfigs,
    Op::AlterConfigs,
];
const CLUSTER_OPS: &[AclOperation] = &[
    Op::Create,
    Op::Alter,
    Op::Describe,
    Op::ClusterAction,
    Op::DescribeConfigs,
    Op::AlterConfigs,
    Op::IdempotentWrite,
];
const TRANSACTIONAL_ID_OPS: &[AclOperation] = &[Op::Write, Op::Describe];
const DELEGATION_TOKEN_OPS: &[AclOperation] = &[Op::Describe];
const USER_OPS: &[AclOperation] = &[Op::CreateTokens, Op::DescribeTokens];

impl ResourceType {
    /// The operations an ACL on this resource type can grant (Kafka's supportedOperations).
    pub fn supported_operations(self) -> &'static [AclOperation] {
        match self {
            ResourceType::Topic => TOPIC_OPS,
            ResourceType::Group => GROUP_OPS,
            ResourceType::Cluster => CLUSTER_OPS,
            ResourceType::TransactionalId => TRANSACTIONAL_ID_OPS,
            ResourceType::DelegationToken => DELEGATION_TOKEN_OPS,
            ResourceType::User => USER_OPS,
        }
    }
}

/// Kafka's 32-bit field of operations: bit `code` set for each.
pub fn bit_field(ops: &[AclOperation]) -> i32 {
    ops.iter().fold(0, |bits, op| bits | (1 << (*op as u8)))
}

/// The operations the caller may perform on the resource `name` of `resource_type`, as a
/// bit field. With no authorizer (there is none yet) that is every operation the type
/// supports, as Kafka answers without one.
pub fn authorized_operations(resource_type: ResourceType, _name: &str) -> i32 {
    bit_field(resource_type.supported_operations())
}

/// [`authorized_operations`] when the request asked for them, else the "not requested" value.
pub fn authorized_operations_if(requested: bool, resource_type: ResourceType, name: &str) -> i32 {
    if requested {
        authorized_operations(resource_type, name)
    } else {
        OPS_NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops_of(bits: i32) -> Vec<u8> {
        (0..32).filter(|b| bits & (1 << b) != 0).collect()
    }

    #[test]
    fn kafkas_operation_sets() {
        // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS: no
        // CLUSTER_ACTION on a topic.
        assert_eq!(
            ops_of(authorized_operations(ResourceType::Topic, "t")),
            vec![3, 4, 5, 6, 7, 8, 10, 11]
        );
        // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS
        // IDEMPOTENT_WRITE: no READ, WRITE or DELETE on the cluster.
        assert_eq!(
            ops_of(authorized_operations(
                ResourceType::Cluster,
                "kafka-cluster"
            )),
            vec![5, 7, 8, 9, 10, 11, 12]
        );
        // READ DELETE DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS.
        assert_eq!(
            ops_of(authorized_operations(ResourceType::Group, "g")),
            vec![3, 6, 8, 10, 11]
        );
        assert_eq!(
            ops_of(authorized_operations(ResourceType::TransactionalId, "x")),
            vec![4, 8]
        );
        assert_eq!(
            ops_of(authorized_operations(ResourceType::DelegationToken, "x")),
            vec![8]
        );
        assert_eq!(
            ops_of(authorized_operations(ResourceType::User, "x")),
            vec![13, 14]
        );
    }

    #[test]
    fn not_requested_is_kafkas_sentinel() {
        assert_eq!(
            authorized_operations_if(false, ResourceType::Topic, "t"),
            i32::MIN
        );
        assert_eq!(
            authorized_operations_if(true, ResourceType::Topic, "t"),
            authorized_operations(ResourceType::Topic, "t")
        );
    }
}
