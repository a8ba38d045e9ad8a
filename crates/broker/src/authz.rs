//! Authorization of every API, as Kafka's `KafkaApis` asks its `Authorizer`: the
//! StandardAuthorizer (`strom_security::authorizer`) over the ACLs of the metadata image,
//! kept in line with each committed change as a [`MetadataPublisher`].
//!
//! Handlers ask through the free functions here with whatever holds the authorizer
//! ([`AuthorizerSource`]: the broker, or a bare authorizer in tests) and the request's
//! connection: with no authorizer configured (`authorizer.class.name` empty) every action is
//! allowed, as in Kafka. Other crates' handlers (the transaction APIs) use the same calls:
//! `authz::authorize(broker, &ctx.info, AclOperation::Write, ResourceType::TransactionalId, id)`.
//! The wiring builds the [`Authz`] and hands it to the broker as an [`Authorizer`].

use std::sync::{Arc, RwLock, RwLockReadGuard};

use strom_metadata::{
    MetadataDelta, MetadataImage, MetadataPublisher, MetadataRecord, PublishError,
};
pub use strom_security::authorizer::{AclOperation, ResourceType, CLUSTER_NAME, OPS_NOT_REQUESTED};
use strom_security::authorizer::{AuthorizationResult, AuthorizerConfig, StandardAuthorizer};

pub use crate::acl::{Authorizer, AuthorizerSource};
use crate::request::ConnectionInfo;

/// The StandardAuthorizer with the ACLs of the image in force.
pub struct Authz {
    acls: RwLock<StandardAuthorizer>,
}

impl Authz {
    /// The authorizer of `config` over the ACLs of `image` (the replayed metadata).
    pub fn new(config: AuthorizerConfig, image: &MetadataImage) -> Self {
        let mut acls = StandardAuthorizer::new(config);
        for (id, binding) in image.acls.iter() {
            acls.add_acl(*id, binding.clone());
        }
        Authz {
            acls: RwLock::new(acls),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, StandardAuthorizer> {
        match self.acls.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl Authorizer for Authz {
    fn authorize(
        &self,
        info: &ConnectionInfo,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.read().authorize(
            info.principal(),
            &info.host(),
            operation,
            resource_type,
            name,
        ) == AuthorizationResult::Allowed
    }

    fn authorize_any(
        &self,
        info: &ConnectionInfo,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> bool {
        self.read().authorize_by_resource_type(
            info.principal(),
            &info.host(),
            operation,
            resource_type,
        ) == AuthorizationResult::Allowed
    }

    fn authorized_operations(
        &self,
        info: &ConnectionInfo,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        self.read()
            .authorized_operations(info.principal(), &info.host(), resource_type, name)
    }
}

impl MetadataPublisher for Authz {
    fn name(&self) -> &'static str {
        "authorizer"
    }

    fn on_metadata_update(
        &self,
        delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        let mut acls = match self.acls.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for record in &delta.records {
            match record {
                MetadataRecord::AccessControlEntry { id, .. } => {
                    // The image holds the checked binding; an id the image no longer has was
                    // removed later in the same delta.
                    match image.acls.get(id) {
                        Some(binding) => acls.add_acl(*id, binding.clone()),
                        None => {
                            acls.remove_acl(*id);
                        }
                    }
                }
                MetadataRecord::RemoveAccessControlEntry { id } => {
                    acls.remove_acl(*id);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// May this connection perform `operation` on the resource? Always, with no authorizer.
pub fn authorize(
    authz: &(impl AuthorizerSource + ?Sized),
    info: &ConnectionInfo,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    authz
        .authorizer()
        .is_none_or(|a| a.authorize(info, operation, resource_type, name))
}

/// `operation` on the cluster resource.
pub fn authorize_cluster(
    authz: &(impl AuthorizerSource + ?Sized),
    info: &ConnectionInfo,
    operation: AclOperation,
) -> bool {
    authorize(authz, info, operation, ResourceType::Cluster, CLUSTER_NAME)
}

/// Kafka's `authorizeByResourceType`: `operation` on at least one resource of the type.
pub fn authorize_any(
    authz: &(impl AuthorizerSource + ?Sized),
    info: &ConnectionInfo,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool {
    authz
        .authorizer()
        .is_none_or(|a| a.authorize_any(info, operation, resource_type))
}

/// The authorized-operations field of a describe answer: what this connection may do on the
/// resource (every supported operation with no authorizer), or "not requested".
pub fn authorized_operations_if(
    authz: &(impl AuthorizerSource + ?Sized),
    info: &ConnectionInfo,
    requested: bool,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    if !requested {
        return OPS_NOT_REQUESTED;
    }
    authorized_operations(authz, info, resource_type, name)
}

/// What this connection may do on the resource, as a bit field.
pub fn authorized_operations(
    authz: &(impl AuthorizerSource + ?Sized),
    info: &ConnectionInfo,
    resource_type: ResourceType,
    name: &str,
) -> i32 {
    match authz.authorizer() {
        Some(a) => a.authorized_operations(info, resource_type, name),
        None => crate::acl::authorized_operations(resource_type, name),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use strom_metadata::controller::acl_record;
    use strom_security::authorizer::{AclBinding, AclPermissionType, PatternType};
    use strom_security::KafkaPrincipal;
    use uuid::Uuid;

    use super::*;
    use crate::request::WaitCancel;

    fn binding(
        name: &str,
        pattern: PatternType,
        op: AclOperation,
        perm: AclPermissionType,
    ) -> AclBinding {
        AclBinding::from_wire(
            ResourceType::Topic.code(),
            name,
            pattern.code(),
            "User:ANONYMOUS",
            "*",
            op.code(),
            perm.code(),
        )
        .unwrap()
    }

    /// Applies `records` to `image` and hands the delta to `authz`, as the loader does.
    fn publish(authz: &Authz, image: &mut Arc<MetadataImage>, records: Vec<MetadataRecord>) {
        let previous = image.clone();
        let mut next = (**image).clone();
        for (i, r) in records.iter().enumerate() {
            next.apply(previous.offset + 1 + i as i64, r).unwrap();
        }
        let next = Arc::new(next);
        authz
            .on_metadata_update(&MetadataDelta { previous, records }, &next)
            .unwrap();
        *image = next;
    }

    #[test]
    fn follows_the_acls_of_each_committed_change() {
        let (_tx, cancel) = WaitCancel::new();
        let anon = ConnectionInfo::new("PLAINTEXT".into(), ([127, 0, 0, 1], 1).into(), cancel);
        let mut image = Arc::new(MetadataImage::empty());
        let authz = Authz::new(AuthorizerConfig::default(), &image);
        assert!(!authz.authorize(&anon, AclOperation::Read, ResourceType::Topic, "t"));
        let allow = Uuid::new_v4();
        let deny = Uuid::new_v4();
        publish(
            &authz,
            &mut image,
            vec![
                acl_record(
                    allow,
                    &binding(
                        "t",
                        PatternType::Prefixed,
                        AclOperation::Read,
                        AclPermissionType::Allow,
                    ),
                ),
                acl_record(
                    deny,
                    &binding(
                        "t-secret",
                        PatternType::Literal,
                        AclOperation::Read,
                        AclPermissionType::Deny,
                    ),
                ),
            ],
        );
        assert!(authz.authorize(&anon, AclOperation::Read, ResourceType::Topic, "t-1"));
        assert!(authz.authorize(&anon, AclOperation::Describe, ResourceType::Topic, "t-1"));
        assert!(!authz.authorize(&anon, AclOperation::Write, ResourceType::Topic, "t-1"));
        assert!(!authz.authorize(&anon, AclOperation::Read, ResourceType::Topic, "t-secret"));
        publish(
            &authz,
            &mut image,
            vec![MetadataRecord::RemoveAccessControlEntry { id: deny }],
        );
        assert!(authz.authorize(&anon, AclOperation::Read, ResourceType::Topic, "t-secret"));

        // A restart builds the same authorizer from the replayed image; super users pass.
        let config = AuthorizerConfig {
            super_users: HashSet::from([KafkaPrincipal::user("admin")]),
            allow_everyone_if_no_acl_found: false,
        };
        let rebuilt = Authz::new(config, &image);
        assert!(rebuilt.authorize(&anon, AclOperation::Read, ResourceType::Topic, "t-secret"));
        assert!(!rebuilt.authorize(
            &anon,
            AclOperation::Alter,
            ResourceType::Cluster,
            CLUSTER_NAME
        ));
        anon.set_principal(KafkaPrincipal::user("admin")).unwrap();
        assert!(rebuilt.authorize(
            &anon,
            AclOperation::Alter,
            ResourceType::Cluster,
            CLUSTER_NAME
        ));
        assert!(
            anon.set_principal(KafkaPrincipal::user("eve")).is_err(),
            "set once"
        );
    }

    /// The checks ask whatever holds the authorizer, no broker needed: with none every
    /// action is allowed and every supported operation reported, as Kafka does.
    #[test]
    fn checks_ask_the_authorizer_in_force_or_allow_without_one() {
        let (_tx, cancel) = WaitCancel::new();
        let anon = ConnectionInfo::new("PLAINTEXT".into(), ([127, 0, 0, 1], 1).into(), cancel);
        let none: Option<Arc<dyn Authorizer>> = None;
        assert!(authorize(
            &none,
            &anon,
            AclOperation::Write,
            ResourceType::Topic,
            "t"
        ));
        assert!(authorize_cluster(&none, &anon, AclOperation::Alter));
        assert!(authorize_any(
            &none,
            &anon,
            AclOperation::Write,
            ResourceType::Topic
        ));
        assert_eq!(
            authorized_operations(&none, &anon, ResourceType::Group, "g"),
            crate::acl::authorized_operations(ResourceType::Group, "g")
        );
        assert_eq!(
            authorized_operations_if(&none, &anon, false, ResourceType::Group, "g"),
            OPS_NOT_REQUESTED
        );

        // An authorizer with no ACLs and allow.everyone.if.no.acl.found off denies all.
        let image = MetadataImage::empty();
        let strict: Option<Arc<dyn Authorizer>> =
            Some(Arc::new(Authz::new(AuthorizerConfig::default(), &image)));
        assert!(!authorize(
            &strict,
            &anon,
            AclOperation::Write,
            ResourceType::Topic,
            "t"
        ));
        assert!(!authorize_cluster(&strict, &anon, AclOperation::Alter));
        assert!(!authorize_any(
            &strict,
            &anon,
            AclOperation::Write,
            ResourceType::Topic
        ));
        assert_eq!(
            authorized_operations(&strict, &anon, ResourceType::Group, "g"),
            0
        );
        // Through an Arc, as handlers hold the broker.
        let shared = Arc::new(strict);
        assert!(!authorize(
            &shared,
            &anon,
            AclOperation::Read,
            ResourceType::Topic,
            "t"
        ));
    }

    #[test]
    fn authorizer_settings_by_kafkas_names() {
        use crate::config::{BrokerConfig, RawConfig, STANDARD_AUTHORIZER};
        let with = |pairs: &[(&str, &str)]| {
            let mut raw = RawConfig::defaults();
            for (k, v) in pairs {
                raw.set(k, v, "test").unwrap();
            }
            BrokerConfig::from_raw(raw)
        };
        assert!(with(&[]).unwrap().authorizer.is_none());
        let c = with(&[
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "User:admin; User:ops"),
        ])
        .unwrap()
        .authorizer
        .unwrap();
        assert!(c.super_users.contains(&KafkaPrincipal::user("ops")));
        assert!(!c.allow_everyone_if_no_acl_found);
        let e = with(&[(
            "authorizer.class.name",
            "kafka.security.authorizer.AclAuthorizer",
        )])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("authorizer.class.name") && e.contains("AclAuthorizer"),
            "{e}"
        );
        assert!(with(&[
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "admin"),
        ])
        .is_err());
    }
}
