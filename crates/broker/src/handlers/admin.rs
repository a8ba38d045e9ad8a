//! Admin APIs: CreateTopics, DeleteTopics, DescribeConfigs, DescribeCluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use proto_kafka::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use proto_kafka::messages::delete_topics_response::DeletableTopicResult;
use proto_kafka::messages::describe_cluster_response::DescribeClusterBroker;
use proto_kafka::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use proto_kafka::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, TopicName,
};
use proto_kafka::ResponseError;

use super::str_bytes;

/// DescribeConfigs' config type of a PASSWORD setting (Kafka's `ConfigType.PASSWORD`).
const PASSWORD_CONFIG_TYPE: i8 = 9;
use crate::authz::{self, AclOperation};
use crate::broker::Broker;
use crate::config::topic::TopicConfig;
use crate::config::{ConfigSource, BROKER_CONFIGS};
use crate::controller::{self, ApiError, TopicRef, TopicRequest};
use crate::metadata::records::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::request::RequestContext;

pub async fn create_topics(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    // A name given twice in one request is refused for every copy, as Kafka does.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut requests = Vec::new();
    let mut slots: Vec<Result<usize, ApiError>> = Vec::new();
    // Kafka: CREATE on the cluster, or on each topic.
    let cluster_create = authz::authorize_cluster(broker, &ctx.info, AclOperation::Create);
    for t in &req.topics {
        let name = t.name.0.to_string();
        if !cluster_create
            && !authz::authorize(
                broker,
                &ctx.info,
                AclOperation::Create,
                authz::ResourceType::Topic,
                &name,
            )
        {
            slots.push(Err(ApiError::new(
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.",
            )));
            continue;
        }
        if counts[&name] > 1 {
            slots.push(Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Create topics request from client contains a duplicate topic {name}"),
            )));
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    bad_config = Some(ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("Null value not supported for topic config {}", &*c.name),
                    ))
                }
            }
        }
        if let Some(e) = bad_config {
            slots.push(Err(e));
            continue;
        }
        slots.push(Ok(requests.len()));
        requests.push(TopicRequest {
            name,
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs,
        });
    }
    let configs_of: Vec<BTreeMap<String, String>> =
        requests.iter().map(|r| r.configs.clone()).collect();
    let mut results: Vec<Option<Result<controller::CreatedTopic, ApiError>>> =
        controller::create_topics(broker, requests, req.validate_only)
            .await
            .into_iter()
            .map(Some)
            .collect();
    // Once per request: it validates the dynamic settings each time.
    let raw = broker.raw_config();
    let topics = req
        .topics
        .iter()
        .zip(slots)
        .map(|(t, slot)| {
            let base = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_message(None);
            let outcome = slot.and_then(|i| {
                let configs = configs_of[i].clone();
                results[i]
                    .take()
                    .unwrap_or_else(|| {
                        Err(ApiError::new(
                            ResponseError::UnknownServerError,
                            "missing result",
                        ))
                    })
                    .map(|c| (c, configs))
            });
            match outcome {
                Ok((created, overrides)) => {
                    let rows = TopicConfig::describe(&raw, &overrides).unwrap_or_default();
                    base.with_topic_id(if req.validate_only {
                        uuid::Uuid::nil()
                    } else {
                        created.topic_id
                    })
                    .with_num_partitions(created.num_partitions)
                    .with_replication_factor(created.replication_factor)
                    .with_configs((ctx.version >= 5).then(|| {
                        rows.into_iter()
                            .map(|r| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(r.name))
                                    .with_value(r.value.map(|v| str_bytes(&v)))
                                    .with_read_only(false)
                                    .with_config_source(r.source)
                                    .with_is_sensitive(false)
                            })
                            .collect()
                    }))
                }
                Err(e) => base
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
                    .with_configs(None),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let refs: Vec<TopicRef> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => TopicRef::Name(n.0.to_string()),
                None => TopicRef::Id(t.topic_id),
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| TopicRef::Name(n.0.to_string()))
            .collect()
    };
    let names: Vec<(Option<String>, uuid::Uuid)> = refs
        .iter()
        .map(|r| match r {
            TopicRef::Name(n) => (Some(n.clone()), uuid::Uuid::nil()),
            TopicRef::Id(id) => (None, *id),
        })
        .collect();
    // Kafka: DELETE on each topic; the refused never reach the controller.
    let image = broker.image();
    let denied: Vec<bool> = refs
        .iter()
        .map(|r| {
            let name = match r {
                TopicRef::Name(n) => Some(n.as_str()),
                TopicRef::Id(id) => image.topic_by_id(id).map(|t| t.name.as_str()),
            };
            name.is_some_and(|n| {
                !authz::authorize(
                    broker,
                    &ctx.info,
                    AclOperation::Delete,
                    authz::ResourceType::Topic,
                    n,
                )
            })
        })
        .collect();
    let allowed_refs = refs
        .into_iter()
        .zip(&denied)
        .filter(|(_, d)| !**d)
        .map(|(r, _)| r)
        .collect();
    let mut done = controller::delete_topics(broker, allowed_refs)
        .await
        .into_iter();
    let results: Vec<_> = denied
        .iter()
        .map(|d| {
            if *d {
                Err(ApiError::new(
                    ResponseError::TopicAuthorizationFailed,
                    "Authorization failed.",
                ))
            } else {
                done.next().unwrap_or_else(|| {
                    Err(ApiError::new(
                        ResponseError::UnknownServerError,
                        "missing result",
                    ))
                })
            }
        })
        .collect();
    let responses = results
        .into_iter()
        .zip(names)
        .map(|(r, (name, id))| match r {
            Ok((name, id)) => DeletableTopicResult::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_topic_id(id)
                .with_error_message(None),
            Err(e) => DeletableTopicResult::default()
                .with_name(name.map(|n| TopicName(str_bytes(&n))))
                .with_topic_id(id)
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(&e.message))),
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// The configuration keys a resource asks for, as a set: a long key list costs one look-up per
/// setting, not the product of the two lengths.
fn wanted_keys(keys: &Option<Vec<proto_kafka::protocol::StrBytes>>) -> Option<HashSet<&str>> {
    keys.as_ref().map(|k| k.iter().map(|k| &**k).collect())
}

fn wanted(keys: &Option<HashSet<&str>>, name: &str) -> bool {
    keys.as_ref().is_none_or(|k| k.contains(name))
}

pub fn describe_configs(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let with_synonyms = ctx.version >= 1 && req.include_synonyms;
    // A resource named again is described once (its first entry): a list repeating the
    // broker's sixty settings must not multiply the response.
    let mut seen = HashSet::new();
    let raw = broker.raw_config_for(&image);
    let results = req
        .resources
        .iter()
        .filter(|res| seen.insert((res.resource_type, res.resource_name.clone())))
        .map(|res| {
            let keys = wanted_keys(&res.configuration_keys);
            let name = res.resource_name.to_string();
            let base = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone())
                .with_error_message(None);
            match res.resource_type {
                RESOURCE_TOPIC => {
                    if image.topic(&name).is_none() {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "Topic {name} does not exist"
                            ))));
                    }
                    let overrides = image.topic_configs(&name);
                    let rows = match TopicConfig::describe(&raw, &overrides) {
                        Ok(r) => r,
                        Err(e) => {
                            return base
                                .with_error_code(ResponseError::InvalidConfig.code())
                                .with_error_message(Some(str_bytes(&e.to_string())))
                        }
                    };
                    let configs = rows
                        .into_iter()
                        .filter(|r| wanted(&keys, r.name))
                        .map(|r| {
                            let mut synonyms = Vec::new();
                            if with_synonyms {
                                if r.source == crate::config::topic::SOURCE_DYNAMIC_TOPIC {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(r.name))
                                            .with_value(r.value.as_deref().map(str_bytes))
                                            .with_source(r.source),
                                    );
                                }
                                if let Some((n, v, s)) = &r.broker_synonym {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(n))
                                            .with_value(Some(str_bytes(v)))
                                            .with_source(*s),
                                    );
                                }
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(r.name))
                                .with_value(r.value.as_deref().map(str_bytes))
                                .with_read_only(false)
                                .with_config_source(r.source)
                                .with_is_sensitive(false)
                                .with_synonyms(synonyms)
                                .with_config_type(r.ty as i8)
                                .with_documentation(None)
                        })
                        .collect();
                    base.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    if !name.is_empty() && name != broker.node_id().to_string() {
                        return base
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "Unexpected broker id, expected {} but received {name}",
                                broker.node_id()
                            ))));
                    }
                    // The layers under the value in force, for synonyms (Kafka lists them
                    // in order of precedence).
                    let layers = [
                        (
                            image.broker_configs(&broker.node_id().to_string()),
                            ConfigSource::DynamicBroker,
                        ),
                        (image.broker_configs(""), ConfigSource::DynamicDefaultBroker),
                    ];
                    let configs = BROKER_CONFIGS
                        .iter()
                        .filter(|d| wanted(&keys, d.name))
                        .map(|d| {
                            let value = raw.get(d.name).map(str_bytes);
                            let source = raw.source(d.name) as i8;
                            let mut synonyms = Vec::new();
                            if with_synonyms {
                                for (layer, src) in &layers {
                                    if let Some(v) = layer.get(d.name) {
                                        synonyms.push(
                                            DescribeConfigsSynonym::default()
                                                .with_name(str_bytes(d.name))
                                                .with_value(Some(str_bytes(v)))
                                                .with_source(*src as i8),
                                        );
                                    }
                                }
                                let fixed = broker.config.raw.get(d.name).map(str_bytes);
                                if fixed.is_some() {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(str_bytes(d.name))
                                            .with_value(fixed)
                                            .with_source(broker.config.raw.source(d.name) as i8),
                                    );
                                }
                            }
                            let sensitive = crate::config::is_sensitive(d.name);
                            if sensitive {
                                synonyms.iter_mut().for_each(|s| s.value = None);
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(d.name))
                                .with_value(if sensitive { None } else { value })
                                // Topic defaults change with AlterConfigs; the rest need a restart.
                                .with_read_only(!crate::config::is_dynamic_broker_config(d.name))
                                .with_config_source(source)
                                .with_is_sensitive(sensitive)
                                .with_synonyms(synonyms)
                                // Kafka's PASSWORD type for a secret, whatever its text is.
                                .with_config_type(if sensitive {
                                    PASSWORD_CONFIG_TYPE
                                } else {
                                    d.ty as i8
                                })
                                .with_documentation(if req.include_documentation {
                                    Some(str_bytes(d.doc))
                                } else {
                                    None
                                })
                        })
                        .collect();
                    base.with_configs(configs)
                }
                other => base
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "resource type {other} is not supported"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

pub fn describe_cluster(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let brokers = super::metadata::brokers(broker, &ctx.info.listener_name)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id.0))
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_error_message(None)
        .with_endpoint_type(req.endpoint_type.max(1))
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authz::authorized_operations_if(
            broker,
            &ctx.info,
            req.include_cluster_authorized_operations,
            authz::ResourceType::Cluster,
            super::metadata::CLUSTER_NAME,
        ))
}
