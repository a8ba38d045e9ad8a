//! The metadata image: the state that results from applying every metadata record in order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use strom_security::authorizer::AclBinding;
use strom_security::scram::{ScramCredential, ScramMechanism};
use thiserror::Error;
use uuid::Uuid;

use super::records::{BrokerEndpoint, MetadataRecord, RESOURCE_BROKER, RESOURCE_TOPIC};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic id {0} is unknown")]
    UnknownTopicId(Uuid),
    #[error("producer id block would move backwards to {0}")]
    ProducerIdsBackwards(i64),
    #[error("partition {partition} of {topic_id} has leader epoch {epoch}, older than {current}")]
    StaleEpoch {
        topic_id: Uuid,
        partition: i32,
        epoch: i32,
        current: i32,
    },
    #[error("SCRAM credential of user {name:?}: {reason}")]
    BadScramCredential { name: String, reason: String },
    #[error("no {mechanism} credential of user {name:?} to remove")]
    UnknownScramCredential { name: String, mechanism: String },
    #[error("ACL {id}: {reason}")]
    BadAcl { id: Uuid, reason: String },
    #[error("ACL id {0} is unknown")]
    UnknownAcl(Uuid),
}

/// SCRAM credentials by user, then mechanism.
pub type ScramCredentials = HashMap<String, HashMap<ScramMechanism, ScramCredential>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRegistration {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// Cheap to clone: topics are shared behind `Arc`, so a change copies only what it touches.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Offset of the last record applied, -1 for an empty log.
    pub offset: i64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: HashMap<String, Arc<TopicImage>>,
    pub topic_names: HashMap<Uuid, String>,
    pub configs: HashMap<(i8, String), BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Ids of the topics a replayed RemoveTopic deleted: only their directories may be
    /// removed (a directory the metadata does not mention is kept as a stray).
    pub deleted_topic_ids: Arc<HashSet<Uuid>>,
    /// SCRAM credentials (salted, never passwords), shared until a change touches them.
    pub scram_credentials: Arc<ScramCredentials>,
    /// ACL bindings by the id of their record, shared until a change touches them.
    pub acls: Arc<BTreeMap<Uuid, AclBinding>>,
}

impl MetadataImage {
    pub fn empty() -> Self {
        MetadataImage {
            offset: -1,
            ..Default::default()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_names.get(id).and_then(|n| self.topics.get(n))
    }

    pub fn topic_configs(&self, name: &str) -> BTreeMap<String, String> {
        self.configs
            .get(&(RESOURCE_TOPIC, name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Dynamic broker settings: `""` for the cluster-wide defaults, a node id for one broker.
    pub fn broker_configs(&self, resource_name: &str) -> BTreeMap<String, String> {
        self.configs
            .get(&(RESOURCE_BROKER, resource_name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// A user's stored SCRAM credential for one mechanism.
    pub fn scram_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<&ScramCredential> {
        self.scram_credentials.get(user)?.get(&mechanism)
    }

    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// Applies one record; a record that contradicts the image is an error and changes nothing.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) -> Result<(), ImageError> {
        match record {
            MetadataRecord::RegisterBroker {
                node_id,
                endpoints,
                rack,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                    },
                );
            }
            MetadataRecord::Topic { name, topic_id } => self.add_topic(name, *topic_id)?,
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => self.set_partition(
                *topic_id,
                *partition,
                PartitionRegistration {
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                },
            )?,
            MetadataRecord::Config {
                resource_type,
                resource_name,
                name,
                value,
            } => self.set_config(*resource_type, resource_name, name, value.as_ref()),
            MetadataRecord::ProducerIds { next_producer_id } => {
                if *next_producer_id < self.next_producer_id {
                    return Err(ImageError::ProducerIdsBackwards(*next_producer_id));
                }
                self.next_producer_id = *next_producer_id;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self
                    .topic_names
                    .remove(topic_id)
                    .ok_or(ImageError::UnknownTopicId(*topic_id))?;
                self.topics.remove(&name);
                self.configs.remove(&(RESOURCE_TOPIC, name));
                Arc::make_mut(&mut self.deleted_topic_ids).insert(*topic_id);
            }
            MetadataRecord::UserScramCredential {
                name,
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations,
            } => {
                let bad = |reason: String| ImageError::BadScramCredential {
                    name: name.clone(),
                    reason,
                };
                let mechanism = ScramMechanism::from_type_code(*mechanism)
                    .ok_or_else(|| bad(format!("unknown mechanism code {mechanism}")))?;
                let iterations = u32::try_from(*iterations)
                    .map_err(|_| bad(format!("negative iterations {iterations}")))?;
                let credential = ScramCredential {
                    mechanism,
                    salt: salt.clone(),
                    stored_key: stored_key.clone(),
                    server_key: server_key.clone(),
                    iterations,
                };
                // A damaged record must not become a credential any proof matches.
                credential.validate().map_err(|e| bad(e.to_string()))?;
                if name.is_empty() {
                    return Err(bad("empty user name".into()));
                }
                Arc::make_mut(&mut self.scram_credentials)
                    .entry(name.clone())
                    .or_default()
                    .insert(mechanism, credential);
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                let unknown = || ImageError::UnknownScramCredential {
                    name: name.clone(),
                    mechanism: mechanism.to_string(),
                };
                let mechanism = ScramMechanism::from_type_code(*mechanism).ok_or_else(unknown)?;
                if self.scram_credential(name, mechanism).is_none() {
                    return Err(unknown());
                }
                let creds = Arc::make_mut(&mut self.scram_credentials);
                if let Some(by_mechanism) = creds.get_mut(name) {
                    by_mechanism.remove(&mechanism);
                    if by_mechanism.is_empty() {
                        creds.remove(name);
                    }
                }
            }
            MetadataRecord::AccessControlEntry {
                id,
                resource_type,
                resource_name,
                pattern_type,
                principal,
                host,
                operation,
                permission_type,
            } => {
                let binding = AclBinding::from_wire(
                    *resource_type,
                    resource_name,
                    *pattern_type,
                    principal,
                    host,
                    *operation,
                    *permission_type,
                )
                .map_err(|e| ImageError::BadAcl {
                    id: *id,
                    reason: e.to_string(),
                })?;
                Arc::make_mut(&mut self.acls).insert(*id, binding);
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                if !self.acls.contains_key(id) {
                    return Err(ImageError::UnknownAcl(*id));
                }
                Arc::make_mut(&mut self.acls).remove(id);
            }
        }
        self.offset = offset;
        Ok(())
    }

    fn add_topic(&mut self, name: &str, topic_id: Uuid) -> Result<(), ImageError> {
        if self.topics.contains_key(name) || self.topic_names.contains_key(&topic_id) {
            return Err(ImageError::TopicExists(name.to_string()));
        }
        self.topic_names.insert(topic_id, name.to_string());
        self.topics.insert(
            name.to_string(),
            Arc::new(TopicImage {
                name: name.to_string(),
                id: topic_id,
                partitions: BTreeMap::new(),
            }),
        );
        Ok(())
    }

    /// A partition's registration; a leader epoch never goes backwards.
    fn set_partition(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        reg: PartitionRegistration,
    ) -> Result<(), ImageError> {
        let name = self
            .topic_names
            .get(&topic_id)
            .ok_or(ImageError::UnknownTopicId(topic_id))?;
        let topic = self
            .topics
            .get_mut(name)
            .ok_or(ImageError::UnknownTopicId(topic_id))?;
        if let Some(current) = topic.partitions.get(&partition) {
            if reg.leader_epoch < current.leader_epoch {
                return Err(ImageError::StaleEpoch {
                    topic_id,
                    partition,
                    epoch: reg.leader_epoch,
                    current: current.leader_epoch,
                });
            }
        }
        Arc::make_mut(topic).partitions.insert(partition, reg);
        Ok(())
    }

    fn set_config(
        &mut self,
        resource_type: i8,
        resource: &str,
        name: &str,
        value: Option<&String>,
    ) {
        let key = (resource_type, resource.to_string());
        match value {
            Some(v) => {
                self.configs
                    .entry(key)
                    .or_default()
                    .insert(name.to_string(), v.clone());
            }
            None => {
                if let Some(m) = self.configs.get_mut(&key) {
                    m.remove(name);
                    if m.is_empty() {
                        self.configs.remove(&key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.to_string(),
            topic_id: id,
        }
    }

    fn part(id: Uuid, p: i32, epoch: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: id,
            partition: p,
            replicas: vec![0],
            isr: vec![0],
            leader: 0,
            leader_epoch: epoch,
            partition_epoch: epoch,
        }
    }

    #[test]
    fn topics_partitions_configs_and_removal() {
        let id = Uuid::new_v4();
        let mut img = MetadataImage::empty();
        img.apply(0, &topic("t", id)).unwrap();
        img.apply(1, &part(id, 0, 0)).unwrap();
        img.apply(2, &part(id, 1, 0)).unwrap();
        img.apply(
            3,
            &MetadataRecord::Config {
                resource_type: RESOURCE_TOPIC,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
            },
        )
        .unwrap();
        assert_eq!(img.partition_count(), 2);
        assert_eq!(
            img.topic_configs("t")
                .get("retention.ms")
                .map(String::as_str),
            Some("5")
        );
        assert_eq!(
            img.apply(4, &topic("t", Uuid::new_v4())),
            Err(ImageError::TopicExists("t".into()))
        );
        assert_eq!(img.offset, 3, "a rejected record leaves the offset alone");
        assert!(matches!(img.apply(4, &part(id, 0, 0)), Ok(())));
        img.apply(5, &part(id, 0, 3)).unwrap();
        assert!(matches!(
            img.apply(6, &part(id, 0, 2)),
            Err(ImageError::StaleEpoch { .. })
        ));
        img.apply(6, &MetadataRecord::RemoveTopic { topic_id: id })
            .unwrap();
        assert!(img.topic("t").is_none());
        assert!(img.topic_configs("t").is_empty());
        assert!(img.deleted_topic_ids.contains(&id));
        assert!(img.apply(7, &part(id, 0, 9)).is_err());
    }

    #[test]
    fn clone_shares_untouched_topics() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let mut img = MetadataImage::empty();
        img.apply(0, &topic("a", a)).unwrap();
        img.apply(1, &topic("b", b)).unwrap();
        let before = img.clone();
        img.apply(2, &part(a, 0, 0)).unwrap();
        assert!(Arc::ptr_eq(&before.topics["b"], &img.topics["b"]));
        assert!(before.topics["a"].partitions.is_empty());
    }

    #[test]
    fn scram_credentials_are_checked_and_replaced() {
        let c = ScramCredential::generate(ScramMechanism::Sha512, "pw", 4096).unwrap();
        let rec = |name: &str, c: &ScramCredential| MetadataRecord::UserScramCredential {
            name: name.into(),
            mechanism: c.mechanism.type_code(),
            salt: c.salt.clone(),
            stored_key: c.stored_key.clone(),
            server_key: c.server_key.clone(),
            iterations: c.iterations as i32,
        };
        let mut img = MetadataImage::empty();
        let before = img.clone();
        img.apply(0, &rec("u", &c)).unwrap();
        assert!(before.scram_credentials.is_empty(), "copy on write");
        assert_eq!(img.scram_credential("u", ScramMechanism::Sha512), Some(&c));
        let mut empty_key = c.clone();
        empty_key.stored_key.clear();
        assert!(matches!(
            img.apply(1, &rec("v", &empty_key)),
            Err(ImageError::BadScramCredential { .. })
        ));
        assert!(img.apply(1, &rec("", &c)).is_err());
        let c2 = ScramCredential::generate(ScramMechanism::Sha512, "pw2", 8192).unwrap();
        img.apply(1, &rec("u", &c2)).unwrap();
        assert_eq!(img.scram_credential("u", ScramMechanism::Sha512), Some(&c2));
        let remove = |m: ScramMechanism| MetadataRecord::RemoveUserScramCredential {
            name: "u".into(),
            mechanism: m.type_code(),
        };
        assert!(img.apply(2, &remove(ScramMechanism::Sha256)).is_err());
        img.apply(2, &remove(ScramMechanism::Sha512)).unwrap();
        assert!(img.scram_credentials.is_empty());
    }

    #[test]
    fn acls_are_validated_and_removed_by_id() {
        let acl = |id: Uuid, resource_type: i8, name: &str| MetadataRecord::AccessControlEntry {
            id,
            resource_type,
            resource_name: name.into(),
            pattern_type: 3,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        };
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut img = MetadataImage::empty();
        img.apply(0, &acl(a, 2, "t")).unwrap();
        assert_eq!(img.acls[&a].pattern.name, "t");
        // ANY (1) is a filter's resource type, never a stored ACL's.
        assert!(matches!(
            img.apply(1, &acl(b, 1, "t")),
            Err(ImageError::BadAcl { .. })
        ));
        assert!(img.apply(1, &acl(b, 4, "not-the-cluster")).is_err());
        assert_eq!(
            img.apply(1, &MetadataRecord::RemoveAccessControlEntry { id: b }),
            Err(ImageError::UnknownAcl(b))
        );
        img.apply(1, &MetadataRecord::RemoveAccessControlEntry { id: a })
            .unwrap();
        assert!(img.acls.is_empty());
    }
}
