//! The client: bootstrap, a metadata cache, and one connection per broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto_kafka::messages::metadata_request::MetadataRequestTopic;
use proto_kafka::messages::{MetadataRequest, TopicName};
use proto_kafka::protocol::StrBytes;
use uuid::Uuid;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, KafkaCode, Result};

/// Settings of a [`Client`].
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    pub connection: ConnectionConfig,
}

impl ClientConfig {
    pub fn request_timeout(&self) -> Duration {
        self.connection.request_timeout
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerMeta {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerMeta {
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMeta {
    pub partition: i32,
    /// Non-zero: the broker's error for this partition (e.g. LEADER_NOT_AVAILABLE).
    pub error_code: i16,
    /// -1 when there is no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub internal: bool,
    /// Non-zero: the broker's error for this topic (e.g. UNKNOWN_TOPIC_OR_PARTITION).
    pub error_code: i16,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMeta>,
}

impl TopicMeta {
    pub fn partition(&self, p: i32) -> Option<&PartitionMeta> {
        self.partitions.iter().find(|m| m.partition == p)
    }

    /// The replication factor (replicas of partition 0), 0 if unknown.
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .first()
            .map(|p| p.replicas.len())
            .unwrap_or(0)
    }

    /// Ready to be produced to / fetched from: no error and a leader for
    /// every partition.
    pub fn is_ready(&self) -> bool {
        self.error_code == 0
            && !self.partitions.is_empty()
            && self.partitions.iter().all(|p| p.leader >= 0)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMeta>,
    pub topics: Vec<TopicMeta>,
}

impl Metadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.iter().find(|t| t.name == name)
    }
}

#[derive(Default)]
struct Cache {
    brokers: HashMap<i32, BrokerMeta>,
    topics: HashMap<String, TopicMeta>,
    controller_id: i32,
}

/// A Kafka client: connections to the bootstrap brokers and to every broker
/// it learns of from metadata.
pub struct Client {
    config: ClientConfig,
    bootstrap: Vec<String>,
    bootstrap_conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
    conns: tokio::sync::Mutex<HashMap<i32, Arc<Connection>>>,
    cache: Mutex<Cache>,
}

/// Splits a bootstrap list (`host:port[,host:port...]`); a missing port is 9092.
pub fn parse_bootstrap(list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = item.strip_prefix("PLAINTEXT://").unwrap_or(item);
        if item.contains("://") {
            return Err(Error::Other(format!(
                "bootstrap address {item:?}: only plaintext host:port addresses are supported"
            )));
        }
        let bad_port =
            |port: &str| Error::Other(format!("bootstrap address {item:?}: bad port {port:?}"));
        if let Some(rest) = item.strip_prefix('[') {
            // [v6]:port or [v6]
            match rest.split_once(']') {
                Some((host, "")) => out.push(format!("[{host}]:9092")),
                Some((host, port)) => {
                    let port = port.strip_prefix(':').unwrap_or(port);
                    port.parse::<u16>().map_err(|_| bad_port(port))?;
                    out.push(format!("[{host}]:{port}"));
                }
                None => return Err(bad_port(item)),
            }
        } else if item.matches(':').count() > 1 {
            out.push(format!("[{item}]:9092"));
        } else if let Some((host, port)) = item.split_once(':') {
            port.parse::<u16>().map_err(|_| bad_port(port))?;
            if host.is_empty() {
                return Err(Error::Other(format!("bootstrap address {item:?}: no host")));
            }
            out.push(item.to_string());
        } else {
            out.push(format!("{item}:9092"));
        }
    }
    if out.is_empty() {
        return Err(Error::Other("no bootstrap address given".to_string()));
    }
    Ok(out)
}

impl Client {
    /// Connects to the first reachable bootstrap broker.
    pub async fn connect(bootstrap: &str, config: ClientConfig) -> Result<Client> {
        let client = Client {
            config,
            bootstrap: parse_bootstrap(bootstrap)?,
            bootstrap_conn: tokio::sync::Mutex::new(None),
            conns: tokio::sync::Mutex::new(HashMap::new()),
            cache: Mutex::new(Cache {
                controller_id: -1,
                ..Cache::default()
            }),
        };
        client.any_broker().await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn request_timeout(&self) -> Duration {
        self.config.request_timeout()
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live connection to some broker: the bootstrap one if alive, else
    /// any known broker, else a fresh bootstrap connection.
    pub async fn any_broker(&self) -> Result<Arc<Connection>> {
        {
            let boot = self.bootstrap_conn.lock().await;
            if let Some(c) = boot.as_ref().filter(|c| c.is_alive()) {
                return Ok(Arc::clone(c));
            }
        }
        // (Never hold both locks here: `broker` takes conns, then boot.)
        {
            let conns = self.conns.lock().await;
            if let Some(c) = conns.values().find(|c| c.is_alive()) {
                return Ok(Arc::clone(c));
            }
        }
        let mut boot = self.bootstrap_conn.lock().await;
        if let Some(c) = boot.as_ref().filter(|c| c.is_alive()) {
            return Ok(Arc::clone(c));
        }
        let known: Vec<String> = self
            .cache()
            .brokers
            .values()
            .map(BrokerMeta::addr)
            .collect();
        let mut failures = Vec::new();
        for addr in self.bootstrap.iter().chain(known.iter()) {
            match Connection::connect(addr, self.config.connection.clone()).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *boot = Some(Arc::clone(&c));
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap connection failed");
                    failures.push(e);
                }
            }
        }
        match failures.len() {
            1 => Err(failures.remove(0)),
            _ => Err(Error::Other(format!(
                "cannot connect to any bootstrap broker ({})",
                failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    /// A live connection to broker `node_id` (whose address is known from
    /// metadata).
    pub async fn broker(&self, node_id: i32) -> Result<Arc<Connection>> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&node_id) {
            if c.is_alive() {
                return Ok(Arc::clone(c));
            }
        }
        let meta = self.cache().brokers.get(&node_id).cloned();
        let meta = match meta {
            Some(m) => m,
            None => {
                drop(conns);
                self.metadata(Some(&[]), false).await?;
                conns = self.conns.lock().await;
                self.cache().brokers.get(&node_id).cloned().ok_or_else(|| {
                    Error::Other(format!("broker {node_id} is not in the cluster metadata"))
                })?
            }
        };
        let addr = meta.addr();
        // Reuse the bootstrap connection when it goes to the same address.
        {
            let boot = self.bootstrap_conn.lock().await;
            if let Some(b) = boot.as_ref() {
                if b.addr() == addr && b.is_alive() {
                    conns.insert(node_id, Arc::clone(b));
                    return Ok(Arc::clone(b));
                }
            }
        }
        let c = Arc::new(Connection::connect(&addr, self.config.connection.clone()).await?);
        conns.insert(node_id, Arc::clone(&c));
        Ok(c)
    }

    /// Records a broker address learnt outside Metadata (FindCoordinator).
    pub fn learn_broker(&self, broker: BrokerMeta) {
        self.cache().brokers.insert(broker.node_id, broker);
    }

    /// The cached metadata of a topic, if any.
    pub fn cached_topic(&self, name: &str) -> Option<TopicMeta> {
        self.cache().topics.get(name).cloned()
    }

    /// The cached leader of a partition.
    pub fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.cache()
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition))
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }

    /// `partitions` grouped by their cached leader, for requests sent to each leader; a
    /// partition with no known leader is answered UNKNOWN_TOPIC_OR_PARTITION in `unplaced`.
    pub(crate) fn group_by_leader<T>(
        &self,
        topic: &str,
        partitions: &[i32],
        unplaced: &mut std::collections::BTreeMap<i32, Result<T>>,
    ) -> HashMap<i32, Vec<i32>> {
        let mut by_leader: HashMap<i32, Vec<i32>> = HashMap::new();
        for p in partitions {
            match self.cached_leader(topic, *p) {
                Some(l) => by_leader.entry(l).or_default().push(*p),
                None => {
                    unplaced.insert(
                        *p,
                        Err(Error::kafka(
                            format!("partition {topic}[{p}]"),
                            KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                            None,
                        )),
                    );
                }
            }
        }
        by_leader
    }

    pub fn cached_controller(&self) -> i32 {
        self.cache().controller_id
    }

    /// Fetches metadata: `None` for all topics, `Some(&[])` for none (just
    /// brokers), or the named topics. Updates the cache.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
        allow_auto_create: bool,
    ) -> Result<Metadata> {
        let conn = self.any_broker().await?;
        let version = conn.version::<MetadataRequest>()?;
        let requested = match topics {
            None if version >= 1 => None,
            None => Some(Vec::new()),
            Some([]) if version == 0 => {
                // v0 has no way to ask for no topics: ask for all.
                Some(Vec::new())
            }
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect(),
            ),
        };
        let mut req = MetadataRequest::default().with_topics(requested);
        if version >= 4 {
            req = req.with_allow_auto_topic_creation(allow_auto_create);
        }
        let resp = conn.send(version, &req).await?;
        if version >= 13 && resp.error_code != 0 {
            return Err(Error::kafka("Metadata", resp.error_code, None));
        }
        let brokers: Vec<BrokerMeta> = resp
            .brokers
            .iter()
            .map(|b| BrokerMeta {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(ToString::to_string),
            })
            .collect();
        let mut out_topics = Vec::with_capacity(resp.topics.len());
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            let mut partitions: Vec<PartitionMeta> = t
                .partitions
                .iter()
                .map(|p| PartitionMeta {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline: p.offline_replicas.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            out_topics.push(TopicMeta {
                name: name.0.to_string(),
                id: t.topic_id,
                internal: t.is_internal,
                error_code: t.error_code,
                partitions,
            });
        }
        out_topics.sort_by(|a, b| a.name.cmp(&b.name));
        let md = Metadata {
            cluster_id: resp.cluster_id.as_ref().map(ToString::to_string),
            controller_id: resp.controller_id.0,
            brokers,
            topics: out_topics,
        };
        {
            let mut cache = self.cache();
            if !md.brokers.is_empty() {
                cache.brokers = md.brokers.iter().map(|b| (b.node_id, b.clone())).collect();
            }
            cache.controller_id = md.controller_id;
            for t in &md.topics {
                if t.error_code == 0 {
                    cache.topics.insert(t.name.clone(), t.clone());
                } else {
                    cache.topics.remove(&t.name);
                }
            }
        }
        Ok(md)
    }

    /// Metadata of one topic, waiting (up to the request timeout) while it
    /// has no leader yet or, with `allow_auto_create`, while it is being
    /// auto-created. UNKNOWN_TOPIC_OR_PARTITION is an error at once without
    /// `allow_auto_create`.
    pub async fn topic_metadata(&self, topic: &str, allow_auto_create: bool) -> Result<TopicMeta> {
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let names = [topic.to_string()];
        let mut unknown_tries = 0;
        loop {
            let md = self.metadata(Some(&names), allow_auto_create).await?;
            let t = md.topic(topic).cloned().ok_or_else(|| {
                Error::kafka(
                    format!("topic {topic}"),
                    KafkaCode::UNKNOWN_TOPIC_OR_PARTITION,
                    None,
                )
            })?;
            if t.is_ready() {
                return Ok(t);
            }
            let code = if t.error_code != 0 {
                t.error_code
            } else {
                t.partitions
                    .iter()
                    .map(|p| p.error_code)
                    .find(|c| *c != 0)
                    .unwrap_or(KafkaCode::LEADER_NOT_AVAILABLE)
            };
            let retriable = match code {
                KafkaCode::UNKNOWN_TOPIC_OR_PARTITION => {
                    unknown_tries += 1;
                    allow_auto_create && unknown_tries < 20
                }
                c => KafkaCode(c).is_retriable() || t.error_code == 0,
            };
            if !retriable || tokio::time::Instant::now() >= deadline {
                return Err(Error::kafka(format!("topic {topic}"), code, None));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The controller, or any broker when there is none.
    pub async fn controller(&self) -> Result<Arc<Connection>> {
        let mut id = self.cached_controller();
        if id < 0 {
            id = self.metadata(Some(&[]), false).await?.controller_id;
        }
        if id >= 0 {
            if let Ok(c) = self.broker(id).await {
                return Ok(c);
            }
        }
        self.any_broker().await
    }

    /// Connections to every broker in the metadata.
    pub async fn all_brokers(&self) -> Result<Vec<(i32, Result<Arc<Connection>>)>> {
        let md = self.metadata(Some(&[]), false).await?;
        let mut out = Vec::new();
        for b in md.brokers {
            out.push((b.node_id, self.broker(b.node_id).await));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists() {
        assert_eq!(
            parse_bootstrap("localhost:9092").unwrap(),
            vec!["localhost:9092"]
        );
        assert_eq!(
            parse_bootstrap(" a:1 , b ,PLAINTEXT://c:3").unwrap(),
            vec!["a:1", "b:9092", "c:3"]
        );
        assert_eq!(parse_bootstrap("[::1]:9093").unwrap(), vec!["[::1]:9093"]);
        assert_eq!(parse_bootstrap("::1").unwrap(), vec!["[::1]:9092"]);
        assert!(parse_bootstrap("").is_err());
        assert!(parse_bootstrap("a:b").is_err());
        assert!(parse_bootstrap("SSL://a:1").is_err());
    }
}
