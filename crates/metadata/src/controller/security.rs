//! Credentials and ACLs: AlterUserScramCredentials (KIP-554, Kafka's `ScramControlManager`)
//! and CreateAcls / DeleteAcls (Kafka's `AclControlManager`), validated against the image in
//! force and committed as records. Every valid item of a request commits in one batch.

use std::collections::{BTreeSet, HashSet};

use proto_kafka::ResponseError;
use strom_security::authorizer::{AclBinding, AclBindingFilter};
use strom_security::scram::{
    plan_alter_user_scram_credentials, AlterResult, ScramCredentialChange, ScramDeletion,
    ScramUpsertion, UpsertionError,
};
use uuid::Uuid;

use super::{ApiError, Controller};
use crate::records::MetadataRecord;

/// Kafka's bound on ACLs one cluster keeps (`AclControlManager`'s MAX_ACLS_PER_CLUSTER is
/// not a constant in Kafka; a bound keeps a hostile client from growing the image without end).
pub const MAX_ACLS: usize = 100_000;

/// DeleteAcls filters one request may carry: each is matched against every ACL under the
/// controller's lock, so their number bounds the work a request can ask for.
pub const MAX_ACL_FILTERS: usize = 1_000;

/// AlterUserScramCredentials entries one request may carry (the KIP-554 plan compares
/// entries with each other, so their number bounds its work).
pub const MAX_SCRAM_ALTERATIONS: usize = 1_000;

/// The record of one binding under `id`.
pub fn acl_record(id: Uuid, b: &AclBinding) -> MetadataRecord {
    MetadataRecord::AccessControlEntry {
        id,
        resource_type: b.pattern.resource_type.code(),
        resource_name: b.pattern.name.clone(),
        pattern_type: b.pattern.pattern_type.code(),
        principal: b.entry.principal.to_string(),
        host: b.entry.host.clone(),
        operation: b.entry.operation.code(),
        permission_type: b.entry.permission_type.code(),
    }
}

impl Controller {
    /// AlterUserScramCredentials: one result per user named (an error refuses all of that
    /// user's entries); the valid changes commit together. A failed commit fails them all
    /// with the storage error.
    pub async fn alter_user_scram_credentials(
        &self,
        deletions: Vec<ScramDeletion>,
        upsertions: Vec<ScramUpsertion>,
    ) -> Vec<(String, Result<(), ApiError>)> {
        if deletions.len() + upsertions.len() > MAX_SCRAM_ALTERATIONS {
            let e = ApiError::new(
                ResponseError::InvalidRequest,
                format!("at most {MAX_SCRAM_ALTERATIONS} credential changes per request"),
            );
            let mut users: Vec<String> = deletions
                .into_iter()
                .map(|d| d.name)
                .chain(upsertions.into_iter().map(|u| u.name))
                .collect();
            users.sort_unstable();
            users.dedup();
            return users.into_iter().map(|u| (u, Err(e.clone()))).collect();
        }
        let guard = self.lock().await;
        let image = self.image();
        let (results, changes) =
            plan_alter_user_scram_credentials(&deletions, &upsertions, |user, mechanism| {
                image.scram_credential(user, mechanism).is_some()
            });
        let records: Vec<MetadataRecord> = changes
            .into_iter()
            .map(|c| match c {
                ScramCredentialChange::Upsert { name, credential } => {
                    MetadataRecord::UserScramCredential {
                        name,
                        mechanism: credential.mechanism.type_code(),
                        salt: credential.salt,
                        stored_key: credential.stored_key,
                        server_key: credential.server_key,
                        iterations: credential.iterations as i32,
                    }
                }
                ScramCredentialChange::Remove { name, mechanism } => {
                    MetadataRecord::RemoveUserScramCredential {
                        name,
                        mechanism: mechanism.type_code(),
                    }
                }
            })
            .collect();
        let results: Vec<(String, Result<(), ApiError>)> = results
            .into_iter()
            .map(|AlterResult { user, error }| (user, error.map_or(Ok(()), upsertion_error)))
            .collect();
        let (users, results): (Vec<String>, Vec<_>) = results.into_iter().unzip();
        let results = self
            .commit_all_or_none(guard, records, results, false)
            .await;
        users.into_iter().zip(results).collect()
    }

    /// CreateAcls: each creation already checked (`AclBinding::from_wire`); an ACL equal to
    /// one stored succeeds without a second record, as in Kafka.
    pub async fn create_acls(
        &self,
        creations: Vec<Result<AclBinding, ApiError>>,
    ) -> Vec<Result<(), ApiError>> {
        let guard = self.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        // Sets, so a request of n creations over m ACLs costs n + m look-ups, not n * m.
        let existing: HashSet<&AclBinding> = image.acls.values().collect();
        let mut planned: HashSet<&AclBinding> = HashSet::new();
        let results = creations
            .iter()
            .map(|c| {
                let binding = c.as_ref().map_err(Clone::clone)?;
                if existing.contains(binding) || planned.contains(binding) {
                    return Ok(());
                }
                if image.acls.len() + planned.len() >= MAX_ACLS {
                    return Err(ApiError::new(
                        ResponseError::PolicyViolation,
                        format!("the cluster already has {MAX_ACLS} ACLs"),
                    ));
                }
                planned.insert(binding);
                records.push(acl_record(Uuid::new_v4(), binding));
                Ok(())
            })
            .collect();
        self.commit_all_or_none(guard, records, results, false)
            .await
    }

    /// DeleteAcls: per filter, the ACLs it matches, removed. An ACL two filters match is
    /// removed once and reported under the first.
    pub async fn delete_acls(
        &self,
        filters: Vec<Result<AclBindingFilter, ApiError>>,
    ) -> Vec<Result<Vec<AclBinding>, ApiError>> {
        if filters.len() > MAX_ACL_FILTERS {
            let e = ApiError::new(
                ResponseError::InvalidRequest,
                format!("at most {MAX_ACL_FILTERS} filters per DeleteAcls request"),
            );
            return filters.iter().map(|_| Err(e.clone())).collect();
        }
        let guard = self.lock().await;
        let image = self.image();
        let mut removed: BTreeSet<Uuid> = BTreeSet::new();
        let mut records = Vec::new();
        let results = filters
            .iter()
            .map(|f| {
                let filter = f.as_ref().map_err(Clone::clone)?;
                let mut matched = Vec::new();
                for (id, binding) in image.acls.iter() {
                    if filter.matches(binding) && removed.insert(*id) {
                        records.push(MetadataRecord::RemoveAccessControlEntry { id: *id });
                        matched.push(binding.clone());
                    }
                }
                Ok(matched)
            })
            .collect();
        self.commit_all_or_none(guard, records, results, false)
            .await
    }
}

fn upsertion_error(e: UpsertionError) -> Result<(), ApiError> {
    Err(ApiError {
        code: e.error_code(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use strom_security::authorizer::{AclOperation, AclPermissionType, PatternType, ResourceType};
    use strom_security::scram::{salted_password, ScramMechanism};

    use super::*;
    use crate::controller::{Clock, ConfigValidator, ControllerConfig};
    use crate::image::MetadataImage;
    use crate::loader::MetadataLoader;
    use crate::memory_log::MemoryMetadataLog;
    use crate::MetadataLogClient;

    struct NoConfigs;

    impl ConfigValidator for NoConfigs {
        fn validate_topic(
            &self,
            _: &MetadataImage,
            _: &BTreeMap<String, String>,
        ) -> Result<(), String> {
            Ok(())
        }
        fn topic_list_default(&self, _: &MetadataImage, _: &str) -> Result<Option<String>, String> {
            Ok(None)
        }
        fn broker_list_value(&self, _: &MetadataImage, _: &str) -> Option<String> {
            None
        }
        fn is_dynamic_broker_config(&self, _: &str) -> bool {
            false
        }
        fn pinned_by(&self, _: &str) -> Option<String> {
            None
        }
        fn validate_broker_change(
            &self,
            _: &MetadataImage,
            _: &[String],
            _: bool,
            _: &BTreeMap<String, String>,
            _: &BTreeMap<String, String>,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    struct Zero;
    impl Clock for Zero {
        fn now_ms(&self) -> i64 {
            0
        }
    }

    fn controller() -> (Controller, Arc<MemoryMetadataLog>) {
        let log = Arc::new(MemoryMetadataLog::new());
        let loader = Arc::new(MetadataLoader::new(MetadataImage::empty()));
        let config = ControllerConfig {
            node_id: 0,
            num_partitions: 1,
            default_replication_factor: 1,
            delete_topic_enable: true,
            max_partitions: 10,
            files_per_partition: 1,
            internal_topics: vec![],
        };
        let c = Controller::new(
            config,
            Arc::new(NoConfigs),
            Arc::new(Zero),
            log.clone(),
            loader,
        );
        (c, log)
    }

    fn upsertion(name: &str, iterations: i32) -> ScramUpsertion {
        let salt = b"salty".to_vec();
        ScramUpsertion {
            name: name.into(),
            mechanism: ScramMechanism::Sha256.type_code(),
            iterations,
            salted_password: salted_password(ScramMechanism::Sha256, "pw", &salt, 4096)
                .unwrap_or_default(),
            salt,
        }
    }

    #[tokio::test]
    async fn scram_credentials_commit_and_are_refused_as_kafka() {
        let (c, log) = controller();
        let r = c
            .alter_user_scram_credentials(
                vec![],
                vec![upsertion("alice", 4096), upsertion("bob", 10)],
            )
            .await;
        let by_user: BTreeMap<_, _> = r.into_iter().collect();
        assert!(by_user["alice"].is_ok());
        assert_eq!(
            by_user["bob"].as_ref().unwrap_err().code,
            93,
            "UNACCEPTABLE_CREDENTIAL"
        );
        assert!(c
            .image()
            .scram_credential("alice", ScramMechanism::Sha256)
            .is_some());
        assert!(c.image().scram_credentials.get("bob").is_none());
        assert_eq!(
            log.read(0, 10).unwrap().len(),
            1,
            "one record, no password in it"
        );
        let deletion = |name: &str| ScramDeletion {
            name: name.into(),
            mechanism: ScramMechanism::Sha256.type_code(),
        };
        let r = c
            .alter_user_scram_credentials(vec![deletion("carol")], vec![])
            .await;
        assert_eq!(r[0].1.as_ref().unwrap_err().code, 91, "RESOURCE_NOT_FOUND");
        let r = c
            .alter_user_scram_credentials(vec![deletion("alice")], vec![])
            .await;
        assert!(r[0].1.is_ok());
        assert!(c.image().scram_credentials.is_empty());
        let one = upsertion("u", 4096);
        let many = (0..=MAX_SCRAM_ALTERATIONS)
            .map(|i| ScramUpsertion {
                name: format!("u{i}"),
                ..one.clone()
            })
            .collect();
        let r = c.alter_user_scram_credentials(vec![], many).await;
        assert_eq!(r.len(), MAX_SCRAM_ALTERATIONS + 1);
        assert!(r.iter().all(|(_, x)| x.is_err()));
        assert!(c.image().scram_credentials.is_empty());
    }

    fn binding(name: &str, pattern: PatternType, perm: AclPermissionType) -> AclBinding {
        AclBinding::from_wire(
            ResourceType::Topic.code(),
            name,
            pattern.code(),
            "User:alice",
            "*",
            AclOperation::Read.code(),
            perm.code(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn acls_create_once_and_delete_by_filter() {
        let (c, log) = controller();
        let a = binding("orders", PatternType::Literal, AclPermissionType::Allow);
        let p = binding("ord", PatternType::Prefixed, AclPermissionType::Deny);
        let bad = Err(ApiError::new(ResponseError::InvalidRequest, "bad"));
        let r = c
            .create_acls(vec![Ok(a.clone()), Ok(p.clone()), Ok(a.clone()), bad])
            .await;
        assert!(r[0].is_ok() && r[1].is_ok() && r[2].is_ok());
        assert_eq!(
            r[3].as_ref().unwrap_err().code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(c.image().acls.len(), 2, "the duplicate is not stored twice");
        assert!(c.create_acls(vec![Ok(a.clone())]).await[0].is_ok());
        assert_eq!(
            log.read(0, 10).unwrap().len(),
            2,
            "an existing ACL writes nothing"
        );

        // MATCH on "orders" finds the literal and the prefix; the second filter finds none left.
        let mut matching = AclBindingFilter::any();
        matching.pattern.name = Some("orders".into());
        matching.pattern.pattern_type = PatternType::Match;
        let r = c
            .delete_acls(vec![Ok(matching.clone()), Ok(AclBindingFilter::any())])
            .await;
        let first = r[0].as_ref().unwrap();
        assert_eq!(first.len(), 2);
        assert!(first.contains(&a) && first.contains(&p));
        assert!(r[1].as_ref().unwrap().is_empty());
        assert!(c.image().acls.is_empty());

        let too_many = vec![Ok(AclBindingFilter::any()); MAX_ACL_FILTERS + 1];
        let r = c.delete_acls(too_many).await;
        assert!(r
            .iter()
            .all(|x| x.as_ref().unwrap_err().code == ResponseError::InvalidRequest.code()));
    }
}
