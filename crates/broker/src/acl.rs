//! Kafka's ACL vocabulary as the broker uses it: resource types, operations and which
//! operations apply to which resource type (Kafka's `AclEntry.supportedOperations`), all
//! strom-security's, and the [`Authorizer`] the checks of `authz` ask. Metadata,
//! DescribeCluster, DescribeTopicPartitions, DescribeGroups and ConsumerGroupDescribe report
//! a resource's authorized operations from here, so an authorizer only has to narrow
//! [`authorized_operations`] to what the caller is allowed.
//!
//! The traits live here, below the broker, so that the broker holds an authorizer without
//! importing `authz`, and `authz` checks against whatever holds one without the broker.

use std::sync::Arc;

pub use strom_security::authorizer::{bit_field, AclOperation, ResourceType, OPS_NOT_REQUESTED};

use crate::request::ConnectionInfo;

/// The authorizer in force (`authz::Authz`), as the checks of `authz` ask it.
pub trait Authorizer: Send + Sync {
    /// May this connection perform `operation` on the resource?
    fn authorize(
        &self,
        info: &ConnectionInfo,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool;

    /// Kafka's `authorizeByResourceType`: `operation` on at least one resource of the type.
    fn authorize_any(
        &self,
        info: &ConnectionInfo,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool;

    /// What this connection may do on the resource, as a bit field.
    fn authorized_operations(
        &self,
        info: &ConnectionInfo,
        resource_type: ResourceType,
        name: &str,
    ) -> i32;
}

/// Where the checks of `authz` find the authorizer: `None` when none is configured, and then
/// every action is allowed, as in Kafka. The broker is one; so is a bare authorizer.
pub trait AuthorizerSource {
    fn authorizer(&self) -> Option<&dyn Authorizer>;
}

impl AuthorizerSource for Option<Arc<dyn Authorizer>> {
    fn authorizer(&self) -> Option<&dyn Authorizer> {
        self.as_deref()
    }
}

impl<T: AuthorizerSource + ?Sized> AuthorizerSource for Arc<T> {
    fn authorizer(&self) -> Option<&dyn Authorizer> {
        (**self).authorizer()
    }
}

impl<T: AuthorizerSource + ?Sized> AuthorizerSource for &T {
    fn authorizer(&self) -> Option<&dyn Authorizer> {
        (**self).authorizer()
    }
}

/// The operations the caller may perform on the resource `name` of `resource_type`, as a
/// bit field, with no authorizer: every operation the type supports, as Kafka answers
/// without one.
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
