use std::sync::Arc;

use proto_kafka::messages::metadata_request::MetadataRequestTopic;
use proto_kafka::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use proto_kafka::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use proto_kafka::ResponseError;

use super::str_bytes;
use crate::acl::{self, ResourceType};
use crate::authz::{self, AclOperation as Op, ResourceType as Rt};
use crate::broker::Broker;
use crate::controller::{self, validate_topic_name};
use crate::metadata::{MetadataImage, TopicImage};
use crate::request::RequestContext;

/// The resource name of the cluster in Kafka's ACLs.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The brokers the image has registered, each by its endpoint on the listener the client came
/// in on (Kafka's metadata cache: a broker without such a listener is left out). Metadata and
/// DescribeCluster both answer with these. In a cluster, only the live unfenced ones.
pub fn brokers(broker: &Broker, listener: &str) -> Vec<MetadataResponseBroker> {
    live_only(broker, brokers_in(&broker.image(), listener))
}

fn live_only(broker: &Broker, all: Vec<MetadataResponseBroker>) -> Vec<MetadataResponseBroker> {
    match broker.cluster().map(|c| c.live_brokers()) {
        Some(live) if !live.is_empty() => all
            .into_iter()
            .filter(|b| live.contains(&b.node_id.0))
            .collect(),
        _ => all,
    }
}

fn brokers_in(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter_map(|b| {
            let ep = b.endpoints.iter().find(|e| e.name == listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.node_id))
                    .with_host(str_bytes(&ep.host))
                    .with_port(ep.port as i32)
                    .with_rack(b.rack.as_deref().map(str_bytes)),
            )
        })
        .collect()
}

pub fn describe_topic(topic: &TopicImage, include_ops: bool) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|(p, reg)| {
            MetadataResponsePartition::default()
                .with_partition_index(*p)
                .with_leader_id(BrokerId(reg.leader))
                .with_leader_epoch(reg.leader_epoch)
                .with_replica_nodes(reg.replicas.iter().map(|b| BrokerId(*b)).collect())
                .with_isr_nodes(reg.isr.iter().map(|b| BrokerId(*b)).collect())
                .with_offline_replicas(Vec::new())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(acl::authorized_operations_if(
            include_ops,
            ResourceType::Topic,
            &topic.name,
        ))
}

/// A topic answered with an error. Kafka reports the operations of every topic it answers by
/// name, known or not, and none for an unknown topic id.
fn topic_error(
    name: Option<&str>,
    id: uuid::Uuid,
    e: ResponseError,
    include_ops: bool,
) -> MetadataResponseTopic {
    let ops = match name {
        Some(n) => acl::authorized_operations_if(include_ops, ResourceType::Topic, n),
        None => acl::OPS_NOT_REQUESTED,
    };
    MetadataResponseTopic::default()
        .with_error_code(e.code())
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(ops)
}

/// The topics a request names, each answered once (Kafka takes the list as a set: a list
/// repeating a topic of many partitions must not multiply the response), auto-creating where
/// allowed (`allow_auto`: the request's flag). Returns them with the image after any creation.
async fn describe_named(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    (requested, allow_auto): (Vec<MetadataRequestTopic>, bool),
    mut image: Arc<MetadataImage>,
    include_ops: bool,
) -> (Vec<MetadataResponseTopic>, Arc<MetadataImage>) {
    // Before v4 there was no flag and auto-creation always applied.
    let allow_auto = (ctx.version < 4 || allow_auto) && broker.config.auto_create_topics_enable;
    let mut topics = Vec::new();
    let mut seen_names = std::collections::HashSet::new();
    let mut seen_ids = std::collections::HashSet::new();
    for t in requested {
        let name = t.name.as_ref().map(|n| n.0.to_string());
        let fresh = match &name {
            Some(n) => seen_names.insert(n.clone()),
            None => seen_ids.insert(t.topic_id),
        };
        if !fresh {
            continue;
        }
        let may_describe =
            |n: &str| authz::authorize(broker, &ctx.info, Op::Describe, Rt::Topic, n);
        let Some(name) = name else {
            topics.push(match image.topic_by_id(&t.topic_id) {
                Some(topic) if !may_describe(&topic.name) => topic_error(
                    None,
                    t.topic_id,
                    ResponseError::TopicAuthorizationFailed,
                    false,
                ),
                Some(topic) => describe_topic(topic, include_ops),
                None => topic_error(None, t.topic_id, ResponseError::UnknownTopicId, false),
            });
            continue;
        };
        // Kafka: a named topic the principal may not describe is TOPIC_AUTHORIZATION_FAILED,
        // whether it exists or not, so its existence is not given away.
        if !may_describe(&name) {
            topics.push(topic_error(
                Some(&name),
                uuid::Uuid::nil(),
                ResponseError::TopicAuthorizationFailed,
                include_ops,
            ));
            continue;
        }
        if let Some(topic) = image.topic(&name) {
            topics.push(describe_topic(topic, include_ops));
            continue;
        }
        let may_create = || {
            authz::authorize_cluster(broker, &ctx.info, Op::Create)
                || authz::authorize(broker, &ctx.info, Op::Create, Rt::Topic, &name)
        };
        let refusal = if validate_topic_name(&name).is_err() {
            Some(ResponseError::InvalidTopicException)
        } else if !allow_auto {
            Some(ResponseError::UnknownTopicOrPartition)
        } else if !may_create() {
            Some(ResponseError::TopicAuthorizationFailed)
        } else {
            None
        };
        if let Some(code) = refusal {
            topics.push(topic_error(
                Some(&name),
                uuid::Uuid::nil(),
                code,
                include_ops,
            ));
            continue;
        }
        let (topic, created) = auto_create(broker, &name, include_ops).await;
        if created {
            image = broker.image();
        }
        topics.push(topic);
    }
    (topics, image)
}

/// Creates a topic a Metadata request named; the answer, and whether it was created.
async fn auto_create(
    broker: &Arc<Broker>,
    name: &str,
    include_ops: bool,
) -> (MetadataResponseTopic, bool) {
    // The offsets topic is made by the group coordinator, with its own partition count and
    // configs, never with the defaults of an ordinary topic.
    let created = if name == crate::group::OFFSETS_TOPIC {
        match broker.groups.ensure_offsets_topic().await {
            Ok(()) => broker.image().topic(name).cloned().ok_or_else(|| {
                controller::ApiError::new(
                    ResponseError::CoordinatorNotAvailable,
                    "offsets topic not created",
                )
            }),
            Err(e) => Err(controller::ApiError::new(e, "offsets topic not created")),
        }
    } else {
        controller::auto_create_topic(broker, name).await
    };
    match created {
        Ok(topic) => {
            tracing::info!(topic = %name, partitions = topic.partitions.len(), "auto-created topic");
            (describe_topic(&topic, include_ops), true)
        }
        Err(e) => {
            let code =
                ResponseError::try_from_code(e.code).unwrap_or(ResponseError::UnknownServerError);
            (
                topic_error(Some(name), uuid::Uuid::nil(), code, include_ops),
                false,
            )
        }
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: MetadataRequest,
) -> MetadataResponse {
    let include_ops = req.include_topic_authorized_operations;
    let mut image: Arc<MetadataImage> = broker.image();
    // v0: an empty list means all topics; v1+: null means all and empty means none.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    let mut topics = Vec::new();
    if all {
        let mut names: Vec<&String> = image.topics.keys().collect();
        names.sort();
        // Every topic means every topic the principal may describe; the others are left out.
        for n in names {
            if authz::authorize(broker, &ctx.info, Op::Describe, Rt::Topic, n) {
                topics.push(describe_topic(&image.topics[n], include_ops));
            }
        }
    } else {
        let requested = (
            req.topics.unwrap_or_default(),
            req.allow_auto_topic_creation,
        );
        (topics, image) = describe_named(broker, ctx, requested, image, include_ops).await;
    }
    if include_ops && broker.authz.is_some() {
        for t in &mut topics {
            if let Some(n) = &t.name {
                t.topic_authorized_operations =
                    authz::authorized_operations(broker, &ctx.info, Rt::Topic, n);
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(live_only(
            broker,
            brokers_in(&image, &ctx.info.listener_name),
        ))
        .with_cluster_id(Some(str_bytes(&broker.cluster_id)))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics)
        // The field exists up to v10 only; later versions ask DescribeCluster.
        .with_cluster_authorized_operations(authz::authorized_operations_if(
            broker,
            &ctx.info,
            req.include_cluster_authorized_operations,
            Rt::Cluster,
            CLUSTER_NAME,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::BrokerEndpoint;
    use crate::metadata::MetadataRecord;

    /// Metadata (and DescribeCluster) list every broker the image registered, by its endpoint
    /// on the client's listener, not only this node.
    #[test]
    fn brokers_are_the_images_registered_ones() {
        let mut image = MetadataImage::empty();
        let endpoint = |name: &str, port| BrokerEndpoint {
            name: name.into(),
            host: format!("host-{port}"),
            port,
        };
        let registrations = [
            (0, vec![endpoint("PLAINTEXT", 9092)], None),
            (
                1,
                vec![endpoint("INTERNAL", 19093), endpoint("PLAINTEXT", 9093)],
                Some("rack-b".to_string()),
            ),
            (2, vec![endpoint("INTERNAL", 19094)], None),
        ];
        for (i, (node_id, endpoints, rack)) in registrations.into_iter().enumerate() {
            let record = MetadataRecord::RegisterBroker {
                node_id,
                endpoints,
                rack,
            };
            image.apply(i as i64, &record).unwrap();
        }
        let listed = brokers_in(&image, "PLAINTEXT");
        let ids: Vec<i32> = listed.iter().map(|b| b.node_id.0).collect();
        assert_eq!(ids, vec![0, 1], "node 2 has no PLAINTEXT endpoint");
        assert_eq!(listed[1].port, 9093);
        assert_eq!(listed[1].host.as_str(), "host-9093");
        assert_eq!(listed[1].rack.as_deref(), Some("rack-b"));
        assert_eq!(brokers_in(&image, "INTERNAL").len(), 2);
        assert!(brokers_in(&MetadataImage::empty(), "PLAINTEXT").is_empty());
    }
}
