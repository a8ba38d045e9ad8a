//! Administration: topics, configs, cluster description.

use proto_kafka::messages::create_partitions_request::CreatePartitionsTopic;
use proto_kafka::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use proto_kafka::messages::delete_topics_request::DeleteTopicState;
use proto_kafka::messages::describe_configs_request::DescribeConfigsResource;
use proto_kafka::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use proto_kafka::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, TopicName,
};
use proto_kafka::protocol::StrBytes;
use uuid::Uuid;

use crate::client::{BrokerMeta, Client};
use crate::error::{Error, Result};

/// Resource type of a topic in DescribeConfigs / IncrementalAlterConfigs.
pub const RESOURCE_TOPIC: i8 = 2;
/// Resource type of a broker.
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's topic ids are shown base64url-encoded without padding (as
/// `Uuid.toString()` in Kafka's Java client), e.g. `9wHa3G8jQqmaLw8N9ZVi6g`.
pub fn topic_id_string(id: &Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in id.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// A topic to create.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's default (num.partitions).
    pub partitions: i32,
    /// -1: the broker's default (default.replication.factor).
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// What CreateTopics reported for one created topic.
#[derive(Clone, Debug)]
pub struct CreatedTopic {
    pub name: String,
    /// Nil before CreateTopics v7.
    pub id: Uuid,
    /// -1 before CreateTopics v5.
    pub partitions: i32,
    pub replication_factor: i16,
}

/// One configuration entry of a resource.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    /// The layers under the value in force, highest precedence first (only
    /// when asked for with `include_synonyms`).
    pub synonyms: Vec<ConfigSynonym>,
    /// Only when asked for with `include_documentation`.
    pub documentation: Option<String>,
}

/// A synonym of a config: the value one layer (dynamic per-broker,
/// dynamic cluster default, static, default) gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
}

/// Config sources (DescribeConfigs' `config_source`).
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;

impl ConfigEntry {
    /// Kafka's name of the config source.
    pub fn source_name(&self) -> &'static str {
        config_source_name(self.source)
    }

    /// Set on the resource itself (a dynamic topic config).
    pub fn is_override(&self) -> bool {
        self.source == 1
    }
}

pub fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// An IncrementalAlterConfigs operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
}

#[derive(Clone, Debug)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMeta>,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(ToString::to_string)
}

impl Client {
    /// CreateTopics; one result per topic, in order.
    pub async fn create_topics(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<Result<CreatedTopic>>> {
        let conn = self.controller().await?;
        let version = conn.version::<CreateTopicsRequest>()?;
        let timeout_ms = i32::try_from(self.request_timeout().as_millis()).unwrap_or(i32::MAX);
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_validate_only(validate_only)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = conn.send(version, &req).await?;
        Ok(topics
            .iter()
            .map(|t| {
                let r = resp
                    .topics
                    .iter()
                    .find(|r| r.name.0.as_str() == t.name)
                    .ok_or_else(|| {
                        Error::Other(format!("the broker did not answer for topic {}", t.name))
                    })?;
                if r.error_code != 0 {
                    return Err(Error::kafka(
                        format!("create topic {}", t.name),
                        r.error_code,
                        opt_string(&r.error_message),
                    ));
                }
                Ok(CreatedTopic {
                    name: t.name.clone(),
                    id: r.topic_id,
                    partitions: if version >= 5 {
                        r.num_partitions
                    } else {
                        t.partitions
                    },
                    replication_factor: if version >= 5 {
                        r.replication_factor
                    } else {
                        t.replication_factor
                    },
                })
            })
            .collect())
    }

    /// DeleteTopics by name; one result per topic, in order.
    pub async fn delete_topics(&self, names: &[String]) -> Result<Vec<Result<()>>> {
        let conn = self.controller().await?;
        let version = conn.version::<DeleteTopicsRequest>()?;
        let timeout_ms = i32::try_from(self.request_timeout().as_millis()).unwrap_or(i32::MAX);
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
        if version >= 6 {
            req = req.with_topics(
                names
                    .iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                    .collect(),
            );
        } else {
            req = req.with_topic_names(names.iter().map(|n| topic_name(n)).collect());
        }
        let resp = conn.send(version, &req).await?;
        Ok(names
            .iter()
            .map(|n| {
                let r = resp
                    .responses
                    .iter()
                    .find(|r| r.name.as_ref().is_some_and(|x| x.0.as_str() == n))
                    .ok_or_else(|| {
                        Error::Other(format!("the broker did not answer for topic {n}"))
                    })?;
                if r.error_code != 0 {
                    return Err(Error::kafka(
                        format!("delete topic {n}"),
                        r.error_code,
                        opt_string(&r.error_message),
                    ));
                }
                Ok(())
            })
            .collect())
    }

    /// DescribeConfigs of resources of one type (topics: [`RESOURCE_TOPIC`]).
    pub async fn describe_configs(
        &self,
        resource_type: i8,
        names: &[String],
    ) -> Result<Vec<Result<Vec<ConfigEntry>>>> {
        let conn = self.any_broker().await?;
        let query = ConfigQuery::default();
        describe_configs_on(&conn, resource_type, names, &query).await
    }

    /// DescribeConfigs of one resource, with the options of
    /// `kafka-configs.sh --describe`. A broker resource with an id goes to
    /// that broker (as Kafka's admin client does: only it knows its own
    /// settings); anything else to any broker.
    pub async fn describe_resource_configs(
        &self,
        resource_type: i8,
        name: &str,
        query: &ConfigQuery,
    ) -> Result<Vec<ConfigEntry>> {
        let conn = self.config_connection(resource_type, name).await?;
        let names = [name.to_string()];
        describe_configs_on(&conn, resource_type, &names, query)
            .await?
            .pop()
            .ok_or_else(|| Error::Other(format!("the broker did not describe {name}")))?
    }

    async fn config_connection(
        &self,
        resource_type: i8,
        name: &str,
    ) -> Result<std::sync::Arc<crate::Connection>> {
        match (resource_type, name.parse::<i32>()) {
            (RESOURCE_BROKER, Ok(id)) => self.broker(id).await,
            (RESOURCE_BROKER, Err(_)) => self.any_broker().await,
            _ => self.controller().await,
        }
    }

    /// CreatePartitions: grow `topic` to `count` partitions.
    pub async fn create_partitions(&self, topic: &str, count: i32) -> Result<()> {
        let conn = self.controller().await?;
        let version = conn.version::<CreatePartitionsRequest>()?;
        let timeout_ms = i32::try_from(self.request_timeout().as_millis()).unwrap_or(i32::MAX);
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None)]);
        let resp = conn.send(version, &req).await?;
        let r = resp
            .results
            .iter()
            .find(|r| r.name.0.as_str() == topic)
            .ok_or_else(|| Error::Other(format!("the broker did not answer for topic {topic}")))?;
        if r.error_code != 0 {
            return Err(Error::kafka(
                format!("set the partition count of {topic} to {count}"),
                r.error_code,
                opt_string(&r.error_message),
            ));
        }
        Ok(())
    }

    /// IncrementalAlterConfigs of one resource (a broker resource with an
    /// id goes to that broker, as with Kafka's admin client).
    pub async fn incremental_alter_configs(
        &self,
        resource_type: i8,
        name: &str,
        ops: &[ConfigOp],
    ) -> Result<()> {
        let conn = self.config_connection(resource_type, name).await?;
        let version = conn.version::<IncrementalAlterConfigsRequest>()?;
        let configs = ops
            .iter()
            .map(|op| match op {
                ConfigOp::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                ConfigOp::Delete(k) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(configs),
        ]);
        let resp = conn.send(version, &req).await?;
        let r = resp
            .responses
            .iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| Error::Other(format!("the broker did not answer for {name}")))?;
        if r.error_code != 0 {
            let what = if name.is_empty() {
                "the cluster-wide defaults".to_string()
            } else if resource_type == RESOURCE_BROKER {
                format!("broker {name}")
            } else {
                name.to_string()
            };
            return Err(Error::kafka(
                format!("alter configs of {what}"),
                r.error_code,
                opt_string(&r.error_message),
            ));
        }
        Ok(())
    }

    /// DescribeCluster, or Metadata where the broker lacks it.
    pub async fn describe_cluster(&self) -> Result<ClusterInfo> {
        let conn = self.any_broker().await?;
        if let Ok(version) = conn.version::<DescribeClusterRequest>() {
            let resp = conn
                .send(version, &DescribeClusterRequest::default())
                .await?;
            if resp.error_code != 0 {
                return Err(Error::kafka(
                    "DescribeCluster",
                    resp.error_code,
                    opt_string(&resp.error_message),
                ));
            }
            let mut brokers: Vec<BrokerMeta> = resp
                .brokers
                .iter()
                .map(|b| BrokerMeta {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: opt_string(&b.rack),
                })
                .collect();
            brokers.sort_by_key(|b| b.node_id);
            return Ok(ClusterInfo {
                cluster_id: Some(resp.cluster_id.to_string()),
                controller_id: resp.controller_id.0,
                brokers,
            });
        }
        let md = self.metadata(Some(&[]), false).await?;
        let mut brokers = md.brokers;
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterInfo {
            cluster_id: md.cluster_id,
            controller_id: md.controller_id,
            brokers,
        })
    }
}

/// What DescribeConfigs should return besides the values.
#[derive(Clone, Debug, Default)]
pub struct ConfigQuery {
    /// Only these keys (`None`: all).
    pub keys: Option<Vec<String>>,
    pub include_synonyms: bool,
    pub include_documentation: bool,
}

async fn describe_configs_on(
    conn: &crate::Connection,
    resource_type: i8,
    names: &[String],
    query: &ConfigQuery,
) -> Result<Vec<Result<Vec<ConfigEntry>>>> {
    let version = conn.version::<DescribeConfigsRequest>()?;
    let keys = query.keys.as_ref().map(|ks| {
        ks.iter()
            .map(|k| StrBytes::from_string(k.clone()))
            .collect::<Vec<_>>()
    });
    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(query.include_synonyms && version >= 1)
        .with_include_documentation(query.include_documentation && version >= 3)
        .with_resources(
            names
                .iter()
                .map(|n| {
                    DescribeConfigsResource::default()
                        .with_resource_type(resource_type)
                        .with_resource_name(StrBytes::from_string(n.clone()))
                        .with_configuration_keys(keys.clone())
                })
                .collect(),
        );
    let resp = conn.send(version, &req).await?;
    Ok(names
        .iter()
        .map(|n| {
            let r = resp
                .results
                .iter()
                .find(|r| r.resource_name.as_str() == n && r.resource_type == resource_type)
                .ok_or_else(|| Error::Other(format!("the broker did not describe {n}")))?;
            if r.error_code != 0 {
                let what = if n.is_empty() {
                    "the cluster-wide defaults".to_string()
                } else {
                    n.clone()
                };
                return Err(Error::kafka(
                    format!("describe configs of {what}"),
                    r.error_code,
                    opt_string(&r.error_message),
                ));
            }
            let mut entries: Vec<ConfigEntry> = r
                .configs
                .iter()
                .map(|c| ConfigEntry {
                    name: c.name.to_string(),
                    value: opt_string(&c.value),
                    source: c.config_source,
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                    synonyms: c
                        .synonyms
                        .iter()
                        .map(|s| ConfigSynonym {
                            name: s.name.to_string(),
                            value: opt_string(&s.value),
                            source: s.source,
                        })
                        .collect(),
                    documentation: opt_string(&c.documentation),
                })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_as_kafka_does() {
        // Kafka: Uuid(0x5e7f3e24a2f14f3e, 0x9f0c5c2bd2f0d8a7).toString()
        let id = Uuid::from_u64_pair(0x5e7f_3e24_a2f1_4f3e, 0x9f0c_5c2b_d2f0_d8a7);
        let s = topic_id_string(&id);
        assert_eq!(s.len(), 22);
        assert_eq!(s, "Xn8-JKLxTz6fDFwr0vDYpw");
        assert_eq!(topic_id_string(&Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
    }
}
