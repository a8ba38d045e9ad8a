//! Broker configuration with Apache Kafka's names and defaults.
//!
//! Values come from four sources, later ones winning: built-in defaults, a TOML file,
//! `STROM_*` environment variables, and command-line overrides. Every value is kept as text with
//! its source (so DescribeConfigs can report it as Kafka does) and parsed once into
//! [`BrokerConfig`]'s typed fields. A bad value is a [`ConfigError`] that names the setting.

pub mod groups;
pub mod topic;
pub mod txns;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use strom_security::SecurityProtocol;
use thiserror::Error;

/// Where a value came from, numbered as DescribeConfigs' `config_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set with AlterConfigs for this broker (resource name = its node id).
    DynamicBroker = 2,
    /// Set with AlterConfigs for every broker (empty resource name).
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

pub struct ConfigDef {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub ty: ConfigType,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    default: Option<&'static str>,
    ty: ConfigType,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        default,
        ty,
        doc,
    }
}

use ConfigType as T;

/// Every broker setting Strom understands. Kafka's name and default unless the doc says otherwise.
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    def("node.id", Some("0"), T::Int, "This broker's id. Strom: defaults to 0, a cluster of one."),
    def("process.roles", Some("broker,controller"), T::List, "Roles of this node; Strom nodes are always both."),
    def("log.dirs", Some("./strom-data"), T::String, "Directory holding partition logs and the metadata log (Strom takes one)."),
    def("log.dir", None, T::String, "Synonym of log.dirs when that is unset."),
    def("listeners", Some("PLAINTEXT://0.0.0.0:9092"), T::List, "Comma-separated NAME://host:port listeners."),
    def("advertised.listeners", None, T::List, "Addresses given to clients; default: listeners, with a wildcard host shown as localhost."),
    def("listener.security.protocol.map", Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"), T::List, "Listener name to security protocol."),
    def("inter.broker.listener.name", None, T::String, "Listener used between brokers (validated; a node of one has no inter-broker traffic yet)."),
    def("ssl.keystore.type", Some("PEM"), T::String, "Keystore format; Strom takes PEM only. Each ssl.* and sasl.* setting may be given per listener as listener.name.<name>.<setting>."),
    def("ssl.keystore.location", None, T::String, "PEM file holding the private key and the certificate chain (reloaded when it changes)."),
    def("ssl.keystore.certificate.chain", None, T::String, "The certificate chain as PEM text (with ssl.keystore.key, instead of ssl.keystore.location)."),
    def("ssl.keystore.key", None, T::String, "The private key as PEM text (unencrypted PKCS#8)."),
    def("ssl.key.password", None, T::String, "Password of an encrypted key. Strom: refused (encrypted keys are not supported)."),
    def("ssl.truststore.type", Some("PEM"), T::String, "Truststore format; Strom takes PEM only."),
    def("ssl.truststore.location", None, T::String, "PEM file of the CA certificates client certificates are checked against."),
    def("ssl.truststore.certificates", None, T::String, "The CA certificates as PEM text."),
    def("ssl.client.auth", Some("none"), T::String, "Client certificates: none, requested or required."),
    def("ssl.enabled.protocols", Some("TLSv1.2,TLSv1.3"), T::List, "TLS versions accepted (TLSv1.2, TLSv1.3)."),
    def("ssl.principal.mapping.rules", Some("DEFAULT"), T::String, "Rules mapping a client certificate's subject to a principal name."),
    def("ssl.handshake.timeout.ms", Some("10000"), T::Long, "Strom: longest a TLS handshake may take; a client still handshaking then is dropped."),
    def("sasl.enabled.mechanisms", Some("PLAIN"), T::List, "SASL mechanisms of SASL listeners: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER. Strom: PLAIN (Kafka: GSSAPI, which Strom lacks)."),
    def("sasl.server.max.receive.size", Some("524288"), T::Int, "Largest request accepted from a SASL client before it has authenticated."),
    def("connections.max.reauth.ms", Some("0"), T::Long, "Longest a SASL session lasts before the client must re-authenticate (KIP-368); 0: no limit."),
    def("connection.failed.authentication.delay.ms", Some("100"), T::Int, "How long a failed authentication waits before its answer and the close."),
    def("sasl.oauthbearer.jwks.endpoint.url", None, T::String, "JWKS of the OAUTHBEARER token signers (KIP-768): a file:// URL (re-read when it changes) or an http(s):// one (fetched at start-up and every sasl.oauthbearer.jwks.endpoint.refresh.ms)."),
    def("sasl.oauthbearer.expected.audience", None, T::List, "Audiences an OAUTHBEARER token must name one of."),
    def("sasl.oauthbearer.expected.issuer", None, T::String, "Issuer an OAUTHBEARER token must name."),
    def("sasl.oauthbearer.sub.claim.name", Some("sub"), T::String, "Claim of an OAUTHBEARER token that names the principal."),
    def("sasl.oauthbearer.scope.claim.name", Some("scope"), T::String, "Claim of an OAUTHBEARER token that holds its scopes."),
    def("sasl.oauthbearer.clock.skew.seconds", Some("30"), T::Int, "Leeway for an OAUTHBEARER token's times."),
    def("sasl.oauthbearer.jwks.endpoint.refresh.ms", Some("3600000"), T::Long, "How often an https:// JWKS is fetched again (KIP-768)."),
    def("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", Some("100"), T::Long, "First wait before a failed JWKS fetch is tried again, doubled each time (KIP-768)."),
    def("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", Some("10000"), T::Long, "Longest wait between tries of a failed JWKS fetch (KIP-768)."),
    def("sasl.oauthbearer.jwks.endpoint.ssl.truststore.location", None, T::String, "Strom: PEM file of the CA certificates an https:// JWKS endpoint is checked against (Kafka uses the JVM's truststore); unset: the system's roots."),
    def("controller.listener.names", None, T::List, "Listeners of the controller quorum (unused by a node of one)."),
    def("num.partitions", Some("1"), T::Int, "Default partition count of auto-created topics."),
    def("default.replication.factor", Some("1"), T::Int, "Default replication factor of auto-created topics."),
    def("auto.create.topics.enable", Some("true"), T::Boolean, "Create unknown topics when a Metadata request names them (a Produce to an unknown topic is refused, as in Kafka)."),
    def("delete.topic.enable", Some("true"), T::Boolean, "Allow DeleteTopics."),
    def("message.max.bytes", Some("1048588"), T::Int, "Largest record batch accepted."),
    def("socket.request.max.bytes", Some("104857600"), T::Int, "Largest request frame accepted."),
    def("socket.send.buffer.bytes", Some("-1"), T::Int, "SO_SNDBUF of client sockets (-1: OS default). Strom: defaults to -1, Kafka to 102400."),
    def("socket.receive.buffer.bytes", Some("-1"), T::Int, "SO_RCVBUF of client sockets (-1: OS default). Strom: defaults to -1, Kafka to 102400."),
    def("connections.max.idle.ms", Some("600000"), T::Long, "Idle connections are closed after this long."),
    def("max.connections", Some("10000"), T::Int, "Connections accepted at once. Strom: bounded by default (Kafka: unbounded)."),
    def("log.segment.bytes", Some("1073741824"), T::Int, "Segment size before rolling."),
    def("log.roll.ms", None, T::Long, "Segment age before rolling; overrides log.roll.hours."),
    def("log.roll.hours", Some("168"), T::Int, "Segment age before rolling, in hours."),
    def("log.retention.ms", None, T::Long, "Retention by time; overrides minutes and hours."),
    def("log.retention.minutes", None, T::Int, "Retention by time, in minutes."),
    def("log.retention.hours", Some("168"), T::Int, "Retention by time, in hours."),
    def("log.retention.bytes", Some("-1"), T::Long, "Retention by size per partition (-1: unlimited)."),
    def("log.retention.check.interval.ms", Some("300000"), T::Long, "How often retention runs."),
    def("log.index.interval.bytes", Some("4096"), T::Int, "Bytes between offset index entries."),
    def("log.index.size.max.bytes", Some("10485760"), T::Int, "Largest offset index before rolling."),
    def("log.flush.interval.messages", Some("1"), T::Long, "Messages accepted before an fsync. Strom: 1 (fsync before acknowledging; Kafka: never)."),
    def("log.flush.interval.ms", None, T::Long, "Longest time data stays unsynced when log.flush.interval.messages > 1."),
    def("log.flush.scheduler.interval.ms", Some("1000"), T::Long, "How often the time-based flush runs."),
    def("log.message.timestamp.type", Some("CreateTime"), T::String, "CreateTime or LogAppendTime."),
    def("log.cleanup.policy", Some("delete"), T::List, "delete (retention by time and size) and/or compact (keep the latest record of each key)."),
    def("log.cleaner.enable", Some("true"), T::Boolean, "Run log compaction for topics whose cleanup.policy includes compact."),
    def("log.fetch.verify.crc", Some("false"), T::Boolean, "Strom: check the CRC-32C of every batch a fetch returns; a bad one is logged with file and position and not sent (CORRUPT_MESSAGE when it is the first)."),
    def("log.cleaner.backoff.ms", Some("15000"), T::Long, "How often the cleaner looks for logs to compact."),
    def("log.cleaner.delete.retention.ms", Some("86400000"), T::Long, "How long tombstones are kept in compacted topics."),
    def("log.cleaner.min.cleanable.ratio", Some("0.5"), T::Double, "Share of a log's sealed bytes not yet compacted that triggers compaction."),
    def("producer.id.expiration.ms", Some("86400000"), T::Int, "How long a partition remembers an idempotent producer after its last batch."),
    def("producer.id.expiration.check.interval.ms", Some("600000"), T::Int, "How often expired producer ids are removed."),
    def("min.insync.replicas", Some("1"), T::Int, "Replicas that must have a write for acks=all."),
    def("compression.type", Some("producer"), T::String, "Codec batches are stored in: producer (as sent), uncompressed, gzip, snappy, lz4 or zstd (re-compressed on append)."),
    def("compression.gzip.level", Some("-1"), T::Int, "gzip level of re-compressed batches: 1 to 9, or -1 for zlib's default."),
    def("compression.lz4.level", Some("9"), T::Int, "lz4 level of re-compressed batches: 1 to 17."),
    def("compression.zstd.level", Some("3"), T::Int, "zstd level of re-compressed batches: -131072 to 22."),
    def("cluster.id", None, T::String, "Strom: the cluster id to format a new data directory with (default: random)."),
    def("cluster.metadata.url", None, T::String, "Strom: postgres://USER:PASS@HOST:PORT/DB of a cluster's metadata (issue 11); unset: a single node with its metadata log on disk. Sensitive: never logged or described."),
    def("object.store.url", None, T::String, "Strom: s3://BUCKET/PREFIX holding a cluster's partition data (issue 11; needs cluster.metadata.url); unset: each broker's local logs."),
    def("object.store.endpoint", None, T::String, "Strom: an S3-compatible server's URL (http:// allowed); unset: AWS."),
    def("object.store.region", Some("us-east-1"), T::String, "Strom: the object store's region."),
    def("object.store.path.style", Some("false"), T::Boolean, "Strom: path-style requests (http://host/bucket/key: MinIO, Garage, s3s-fs)."),
    def("object.store.produce.linger.ms", Some("5"), T::Long, "Strom: how long the broker gathers every partition's batches into one object (one PUT and one PostgreSQL transaction each): longer is fewer requests and more produce latency."),
    def("object.store.produce.max.bytes", Some("8388608"), T::Long, "Strom: an intake object is PUT as soon as this much is gathered."),
    def("object.store.produce.max.in.flight.objects", Some("4"), T::Int, "Strom: intake objects being PUT or committed at once; uploads overlap, commits stay in object order (a failed one fails those behind it), 1 is one object at a time."),
    def("object.store.request.timeout.ms", Some("10000"), T::Long, "Strom: one PUT, GET or commit, retries included, before the client gets a retriable error."),
    def("object.store.cache.max.bytes", Some("268435456"), T::Long, "Strom: the broker's cache of batch byte ranges (its own writes and fetched ranges)."),
    def("broker.rack", None, T::String, "This broker's rack (KIP-392): registered with the cluster, shown in Metadata, and matched against consumers' client.rack by replica.selector.class."),
    def("replica.selector.class", None, T::String, "Which replica a consumer should fetch from (KIP-392): unset, the leader (Kafka's default); org.apache.kafka.common.replica.RackAwareReplicaSelector, a live replica in the consumer's client.rack when the leader is not in it. Any other class is refused."),
    def("broker.heartbeat.interval.ms", Some("2000"), T::Int, "How often a cluster broker heartbeats to the cluster's metadata."),
    def("broker.session.timeout.ms", Some("9000"), T::Int, "A cluster broker whose last heartbeat is older than this is fenced and its leaderships move."),
    def("admin.http.listener", Some("0.0.0.0:9080"), T::String, "Strom: host:port of the HTTP admin listener (/healthz, /readyz, /metrics); empty disables it."),
    def("admin.http.auth.token.file", None, T::String, "Strom: a file holding the bearer token the admin listener's protected paths require (re-read when it changes); unset: no static token."),
    def("admin.http.auth.oauthbearer.enable", Some("false"), T::Boolean, "Strom: the admin listener's protected paths also take an OAUTHBEARER JWT, validated with the broker's sasl.oauthbearer.* settings."),
    def("admin.http.auth.paths", Some("/metrics,/healthz,/readyz"), T::List, "Strom: the admin listener's paths that require the bearer token when one of admin.http.auth.* is set; the others stay open."),
    def("metrics.partition.labels.enable", Some("false"), T::Boolean, "Strom: /metrics also has per-partition series (log offsets and size, consumer lag); off: per-topic sums only."),
    def("metrics.partition.labels.max", Some("1000"), T::Int, "Strom: most partitions given per-partition series; beyond it /metrics keeps the per-topic sums only."),
    def("gateway.listener", Some("0.0.0.0:8082"), T::String, "Strom: host:port of the HTTP and WebSocket gateway to topics (Confluent REST Proxy v2), which speaks Kafka to this broker over loopback; empty disables it."),
    def("gateway.max.request.bytes", Some("8388608"), T::Int, "Strom: largest HTTP request body the gateway takes (413 beyond)."),
    def("gateway.max.records.per.request", Some("10000"), T::Int, "Strom: most records in one gateway produce request (422 beyond)."),
    def("gateway.max.connections", Some("10000"), T::Int, "Strom: most open gateway connections; one more is answered 429 and closed."),
    def("gateway.max.streams", Some("1000"), T::Int, "Strom: most WebSocket and Server-Sent Event streams at once, each one subscription (429 beyond)."),
    def("gateway.max.consumer.instances", Some("1000"), T::Int, "Strom: most REST consumer instances at once (429 beyond)."),
    def("gateway.idle.timeout.ms", Some("60000"), T::Long, "Strom (Confluent's idle.timeout.ms): a gateway connection with nothing read or written this long is closed, answered 408 if it owes an answer (quiet streams are kept alive by pings)."),
    def("gateway.consumer.instance.timeout.ms", Some("300000"), T::Long, "Strom: a REST consumer instance unused this long is removed (Confluent's consumer.instance.timeout.ms)."),
    def("gateway.consumer.request.timeout.ms", Some("1000"), T::Long, "Strom: longest a consumer's records request waits when it names no timeout (Confluent's consumer.request.timeout.ms)."),
    def("gateway.consumer.request.max.bytes", Some("67108864"), T::Long, "Strom: most bytes a consumer's records request returns (Confluent's consumer.request.max.bytes)."),
    def("gateway.request.timeout.ms", Some("30000"), T::Long, "Strom: time the gateway allows each of its requests to the broker."),
    def("gateway.access.control.allow.origin", Some(""), T::String, "Strom: origins (scheme://host[:port], comma-separated, or *) whose browser pages may call the gateway (CORS, Confluent's access.control.allow.origin); empty allows none."),
    def("gateway.authentication", None, T::List, "Strom: credentials the gateway requires: none, basic (HTTP Basic: SCRAM users of the metadata, PLAIN users of gateway.plain.sasl.jaas.config), bearer (a JWT checked as OAUTHBEARER) or basic,bearer; default basic with an authorizer, else none."),
    def("gateway.plain.sasl.jaas.config", None, T::String, "Strom: a PlainLoginModule JAAS entry whose user_<name>=\"<password>\" options are HTTP Basic users of the gateway (besides the SCRAM users)."),
    def("gateway.sasl.oauthbearer.jwks.endpoint.url", None, T::String, "Strom: JWKS (file://) of the signers of the gateway's bearer tokens; default sasl.oauthbearer.jwks.endpoint.url. gateway.sasl.oauthbearer.expected.audience, .expected.issuer, .sub.claim.name and .clock.skew.seconds likewise."),
    def("gateway.sasl.oauthbearer.expected.audience", None, T::List, "Strom: audiences a gateway bearer token must name one of; default sasl.oauthbearer.expected.audience."),
    def("gateway.sasl.oauthbearer.expected.issuer", None, T::String, "Strom: issuer a gateway bearer token must name; default sasl.oauthbearer.expected.issuer."),
    def("gateway.sasl.oauthbearer.sub.claim.name", None, T::String, "Strom: claim of a gateway bearer token that names the principal; default sasl.oauthbearer.sub.claim.name."),
    def("gateway.sasl.oauthbearer.clock.skew.seconds", None, T::Int, "Strom: leeway for a gateway bearer token's times; default sasl.oauthbearer.clock.skew.seconds."),
    def("gateway.ssl.keystore.location", None, T::String, "Strom: PEM file of the key and certificate chain of the gateway's HTTPS (reloaded when it changes); unset (and no gateway.ssl.keystore.certificate.chain): plain HTTP."),
    def("gateway.ssl.keystore.certificate.chain", None, T::String, "Strom: the gateway's certificate chain as PEM text (with gateway.ssl.keystore.key)."),
    def("gateway.ssl.keystore.key", None, T::String, "Strom: the gateway's private key as PEM text (unencrypted PKCS#8)."),
    def("gateway.ssl.keystore.type", Some("PEM"), T::String, "Strom: the gateway's keystore format; PEM only."),
    def("gateway.ssl.enabled.protocols", Some("TLSv1.2,TLSv1.3"), T::List, "Strom: TLS versions the gateway accepts."),
    def("gateway.client.config", None, T::String, "Strom: Kafka client properties file (security.protocol, ssl.*, sasl.*) of the gateway's own connection to this broker; it must be a principal allowed everything the gateway's callers may do (a super user), since the gateway checks their ACLs itself."),
    def("gateway.max.connections.per.principal", Some("100"), T::Int, "Strom: most gateway connections one authenticated principal holds (429 beyond)."),
    def("gateway.max.streams.per.principal", Some("100"), T::Int, "Strom: most WebSocket and SSE streams one authenticated principal holds (429 beyond)."),
    def("shutdown.timeout.ms", Some("20000"), T::Long, "Strom: longest a SIGTERM shutdown waits for in-flight requests."),
    def("authorizer.class.name", Some(""), T::String, "The authorizer: org.apache.kafka.metadata.authorizer.StandardAuthorizer turns ACLs on; empty, none."),
    def("super.users", Some(""), T::String, "Principals that skip the ACLs, separated by ';' (User:admin;User:ops)."),
    def("allow.everyone.if.no.acl.found", Some("false"), T::Boolean, "With an authorizer, allow an action on a resource that has no ACL at all."),
    def("queued.max.requests", Some("500"), T::Int, "Requests read ahead per connection before responses are written. Strom: per connection."),
    def("group.initial.rebalance.delay.ms", Some("3000"), T::Int, "How long the first rebalance of an empty group waits for more members to join."),
    def("group.min.session.timeout.ms", Some("6000"), T::Int, "Smallest session timeout a group member may ask for."),
    def("group.max.session.timeout.ms", Some("1800000"), T::Int, "Largest session timeout a group member may ask for."),
    def("group.max.size", Some("1000"), T::Int, "Members of one group (KIP-394 pending members included). Strom: 1000 (Kafka: unbounded)."),
    def("group.consumer.session.timeout.ms", Some("45000"), T::Int, "Session timeout of members of consumer-protocol (KIP-848) groups."),
    def("group.consumer.heartbeat.interval.ms", Some("5000"), T::Int, "Heartbeat interval given to members of consumer-protocol groups; less than the session timeout."),
    def("group.consumer.max.size", Some("1000"), T::Int, "Members of one consumer-protocol group. Strom: 1000 (Kafka: unbounded)."),
    def("group.consumer.assignors", Some("uniform,range"), T::List, "Server-side assignors of consumer-protocol groups (names or Kafka class names); the first is the default."),
    def("offset.metadata.max.bytes", Some("4096"), T::Int, "Largest metadata string of a committed offset (at most 32767)."),
    def("offsets.topic.num.partitions", Some("50"), T::Int, "Partitions of __consumer_offsets, fixed when it is created."),
    def("offsets.topic.replication.factor", Some("1"), T::Short, "Replication factor of __consumer_offsets. Strom: 1 (Kafka: 3)."),
    def("offsets.topic.segment.bytes", Some("104857600"), T::Int, "Segment size of __consumer_offsets."),
    def("offsets.retention.minutes", Some("10080"), T::Int, "Committed offsets of a group that has been empty this long are deleted."),
    def("offsets.retention.check.interval.ms", Some("600000"), T::Long, "How often expired offsets and unused empty groups are removed."),
    def("transaction.max.timeout.ms", Some("900000"), T::Int, "Largest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above it)."),
    def("transactional.id.expiration.ms", Some("604800000"), T::Int, "A transactional id with no transaction this long is removed."),
    def("transaction.abort.timed.out.transaction.cleanup.interval.ms", Some("10000"), T::Int, "How often transactions older than their timeout are aborted."),
    def("transaction.remove.expired.transaction.cleanup.interval.ms", Some("3600000"), T::Int, "How often expired transactional ids are removed."),
    def("transaction.state.log.num.partitions", Some("50"), T::Int, "Partitions of __transaction_state, fixed when it is created."),
    def("transaction.state.log.replication.factor", Some("1"), T::Short, "Replication factor of __transaction_state. Strom: 1 (Kafka: 3)."),
    def("transaction.state.log.segment.bytes", Some("104857600"), T::Int, "Segment size of __transaction_state."),
    def("transaction.state.log.min.isr", Some("1"), T::Int, "min.insync.replicas of __transaction_state. Strom: 1 (Kafka: 2)."),
    def("transaction.version", Some("0"), T::Short, "The finalized transaction.version feature (KIP-890 part 2 at 2: an epoch bump per transaction, partitions added by their leaders). Strom: a static setting (Kafka: kafka-features.sh)."),
];

/// Kafka's PASSWORD-typed configs, and Strom's own secrets: described with no value and
/// `is_sensitive` (type PASSWORD), and never shown in an error or a log. The `ssl.*` ones
/// count under every prefix that takes them (`listener.name.<l>.`, `admin.http.`,
/// `gateway.`), and so does every JAAS entry (`sasl.jaas.config`,
/// `listener.name.<l>.<mechanism>.sasl.jaas.config`, `gateway.plain.sasl.jaas.config`).
pub fn is_sensitive(name: &str) -> bool {
    // Kafka's SslConfigs of type PASSWORD (the PEM texts among them, as Kafka has them).
    const SSL_SECRETS: &[&str] = &[
        "ssl.keystore.key",
        "ssl.keystore.password",
        "ssl.keystore.certificate.chain",
        "ssl.key.password",
        "ssl.truststore.password",
        "ssl.truststore.certificates",
    ];
    if name == "cluster.metadata.url" || name.starts_with("admin.http.auth.token") {
        return true;
    }
    let mut rest = name;
    if let Some(r) = rest.strip_prefix("listener.name.") {
        rest = r.split_once('.').map_or("", |(_, setting)| setting);
    }
    for prefix in ["admin.http.", "gateway."] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    if SSL_SECRETS.contains(&rest)
        || rest == "sasl.jaas.config"
        || rest.ends_with(".sasl.jaas.config")
    {
        return true;
    }
    // sasl.oauthbearer.client.credentials.client.secret, ...assertion.private.key.passphrase
    // and the like.
    rest.starts_with("sasl.")
        && rest
            .rsplit('.')
            .next()
            .is_some_and(|last| matches!(last, "secret" | "password" | "passphrase" | "token"))
}

/// Broker settings AlterConfigs may change at run time: the defaults of topic settings (as in
/// Kafka, where they are cluster-wide dynamic configs). The rest need a restart.
pub fn is_dynamic_broker_config(name: &str) -> bool {
    TOPIC_CONFIGS.iter().any(|(_, b, _)| *b == name)
}

/// Topic-level settings: (topic name, broker synonym). Values default to the broker's.
pub const TOPIC_CONFIGS: &[(&str, &str, ConfigType)] = &[
    ("cleanup.policy", "log.cleanup.policy", T::List),
    ("compression.type", "compression.type", T::String),
    ("compression.gzip.level", "compression.gzip.level", T::Int),
    ("compression.lz4.level", "compression.lz4.level", T::Int),
    ("compression.zstd.level", "compression.zstd.level", T::Int),
    ("max.message.bytes", "message.max.bytes", T::Int),
    (
        "message.timestamp.type",
        "log.message.timestamp.type",
        T::String,
    ),
    ("min.insync.replicas", "min.insync.replicas", T::Int),
    ("retention.bytes", "log.retention.bytes", T::Long),
    ("retention.ms", "log.retention.ms", T::Long),
    ("segment.bytes", "log.segment.bytes", T::Int),
    ("segment.ms", "log.roll.ms", T::Long),
    ("segment.index.bytes", "log.index.size.max.bytes", T::Int),
    ("index.interval.bytes", "log.index.interval.bytes", T::Int),
    ("flush.messages", "log.flush.interval.messages", T::Long),
    ("flush.ms", "log.flush.interval.ms", T::Long),
    (
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        T::Long,
    ),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        T::Double,
    ),
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid value {value:?} for setting '{key}': {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("unknown setting '{key}' (from {origin})")]
    Unknown { key: String, origin: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Kafka's KRaft authorizer, the one `authorizer.class.name` Strom implements.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

fn authorizer_config(
    raw: &RawConfig,
) -> Result<Option<strom_security::authorizer::AuthorizerConfig>, ConfigError> {
    use strom_security::authorizer::AuthorizerConfig;
    let class = raw.get("authorizer.class.name").unwrap_or("").trim();
    if class.is_empty() {
        return Ok(None);
    }
    if class != STANDARD_AUTHORIZER {
        return Err(invalid(
            "authorizer.class.name",
            class,
            format!("the only authorizer is {STANDARD_AUTHORIZER}"),
        ));
    }
    let supers = raw.get("super.users").unwrap_or("");
    let super_users = AuthorizerConfig::parse_super_users(supers)
        .map_err(|e| invalid("super.users", supers, e.to_string()))?;
    let allow = raw.get("allow.everyone.if.no.acl.found").unwrap_or("false");
    let allow_everyone_if_no_acl_found = match allow.trim().to_ascii_lowercase().as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(invalid(
                "allow.everyone.if.no.acl.found",
                allow,
                "must be true or false",
            ))
        }
    };
    Ok(Some(AuthorizerConfig {
        super_users,
        allow_everyone_if_no_acl_found,
    }))
}

/// `cluster.metadata.url`, checked as a URL at start-up like every other setting (a bad one is
/// the one-line config error, not a failure to connect later). The value is a secret: the
/// error shows the URL with its password masked, as the metadata crate writes it.
fn cluster_metadata_url(raw: &RawConfig) -> Result<Option<String>, ConfigError> {
    let Some(url) = raw.get("cluster.metadata.url").filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    strom_metadata_postgres::MetadataUrl::parse(url)
        .map_err(|e| invalid("cluster.metadata.url", "(hidden)", e.to_string()))?;
    Ok(Some(url.to_string()))
}

/// The `object.store.*` settings in force, by name (for `ObjectStoreConfig::from_settings`).
pub fn object_store_settings(raw: &RawConfig) -> Vec<(&'static str, &str)> {
    BROKER_CONFIGS
        .iter()
        .filter(|d| d.name.starts_with("object.store."))
        .filter_map(|d| raw.get(d.name).map(|v| (d.name, v)))
        .collect()
}

/// The shared storage's settings when `object.store.url` is set, checked at start-up (exit 2
/// naming the setting); shared storage needs the cluster's PostgreSQL as its sequencer.
pub fn object_store(
    raw: &RawConfig,
) -> Result<Option<strom_shared_storage::ObjectStoreConfig>, ConfigError> {
    let url = raw.get("object.store.url").unwrap_or_default();
    if url.is_empty() {
        return Ok(None);
    }
    if raw.get("cluster.metadata.url").is_none_or(str::is_empty) {
        return Err(invalid(
            "object.store.url",
            url,
            "needs cluster.metadata.url (PostgreSQL sequences the shared partitions)",
        ));
    }
    strom_shared_storage::ObjectStoreConfig::from_settings(object_store_settings(raw))
        .map_err(|e| invalid("object.store.url", url, e.to_string()))
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        // A secret's value is never printed, not even a wrong one.
        value: if is_sensitive(key) {
            "(hidden)".to_string()
        } else {
            value.to_string()
        },
        reason: reason.into(),
    }
}

/// A listener as Kafka writes it: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    fn parse_list(key: &str, value: &str) -> Result<Vec<Endpoint>, ConfigError> {
        let mut out: Vec<Endpoint> = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, addr) = item
                .split_once("://")
                .ok_or_else(|| invalid(key, value, format!("'{item}' is not NAME://host:port")))?;
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| invalid(key, value, format!("'{item}' has no port")))?;
            let port: u16 = port
                .parse()
                .map_err(|_| invalid(key, value, format!("'{item}' has a bad port")))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let name = name.to_ascii_uppercase();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    key,
                    value,
                    format!("bad listener name in '{item}'"),
                ));
            }
            if out.iter().any(|e| e.name == name) {
                return Err(invalid(
                    key,
                    value,
                    format!("listener name {name} appears twice"),
                ));
            }
            out.push(Endpoint { name, host, port });
        }
        if out.is_empty() {
            return Err(invalid(key, value, "no listener given"));
        }
        Ok(out)
    }
}

/// Settings a listener may override with its own value, as Kafka's
/// `listener.name.<name>.<setting>`.
const LISTENER_PREFIXES: &[&str] = &["ssl.", "sasl.", "connections.max.reauth.ms"];

/// The mechanisms whose `listener.name.<name>.<mechanism>.sasl.jaas.config` Strom reads.
const JAAS_MECHANISMS: &[&str] = &["plain", "scram-sha-256", "scram-sha-512", "oauthbearer"];

/// `admin.http.<setting>` for an `ssl.*` setting of the admin HTTP listener (its own TLS,
/// apart from the Kafka listeners', so a broker keystore never turns the probes' plain HTTP
/// into HTTPS).
pub fn is_admin_http_ssl_setting(key: &str) -> bool {
    key.strip_prefix("admin.http.").is_some_and(|rest| {
        rest.starts_with("ssl.")
            && rest != "ssl.principal.mapping.rules"
            && BROKER_CONFIGS.iter().any(|d| d.name == rest)
    })
}

/// The setting a `STROM_<NAME>` variable names: a broker setting, or an `ssl.*` one of the
/// admin HTTP listener (`STROM_ADMIN_HTTP_SSL_KEYSTORE_LOCATION`). Listener overrides are
/// left out: a listener's name may hold underscores, so their variables would be ambiguous.
fn env_setting_name(suffix: &str) -> Option<String> {
    let env = |name: &str| name.to_ascii_uppercase().replace('.', "_");
    if let Some(d) = BROKER_CONFIGS.iter().find(|d| env(d.name) == suffix) {
        return Some(d.name.to_string());
    }
    let rest = suffix.strip_prefix("ADMIN_HTTP_")?;
    BROKER_CONFIGS
        .iter()
        .map(|d| format!("admin.http.{}", d.name))
        .find(|name| is_admin_http_ssl_setting(name) && env(&name["admin.http.".len()..]) == rest)
}

/// `listener.name.<name>.<setting>` for a setting a listener may override, or
/// `listener.name.<name>.<mechanism>.sasl.jaas.config`.
pub fn is_listener_setting(key: &str) -> bool {
    let Some((name, rest)) = key
        .strip_prefix("listener.name.")
        .and_then(|r| r.split_once('.'))
    else {
        return false;
    };
    // Kafka lower-cases the listener name in these prefixes; an upper-case one would be
    // silently ignored there, so here it is an unknown setting.
    if name.is_empty() || name.chars().any(|c| c.is_ascii_uppercase()) {
        return false;
    }
    if let Some(mechanism) = rest.strip_suffix(".sasl.jaas.config") {
        return JAAS_MECHANISMS.contains(&mechanism);
    }
    LISTENER_PREFIXES.iter().any(|p| rest.starts_with(p))
        && BROKER_CONFIGS.iter().any(|d| d.name == rest)
}

/// All values as text, with their sources; the typed view is [`BrokerConfig`].
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    values: BTreeMap<String, (String, ConfigSource)>,
    /// Settings given on the command line: they win over dynamic values (see
    /// [`RawConfig::with_dynamic_checked`]).
    pinned: BTreeSet<String>,
}

/// Settings that are one value written in different units: pinning one pins them all, since
/// the finer unit would otherwise override the flag.
const FAMILIES: &[&[&str]] = &[
    &[
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    ],
    &["log.roll.ms", "log.roll.hours"],
];

/// A persisted dynamic setting that is not in force, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredDynamic {
    /// Set for this broker (its id), not for every broker (the empty name).
    pub per_broker: bool,
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl RawConfig {
    pub fn defaults() -> Self {
        let mut values = BTreeMap::new();
        for d in BROKER_CONFIGS {
            if let Some(v) = d.default {
                values.insert(d.name.to_string(), (v.to_string(), ConfigSource::Default));
            }
        }
        RawConfig {
            values,
            pinned: BTreeSet::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        if !BROKER_CONFIGS.iter().any(|d| d.name == key)
            && !is_listener_setting(key)
            && !is_admin_http_ssl_setting(key)
            && !key.starts_with(TEST_SETTING_PREFIX)
        {
            return Err(ConfigError::Unknown {
                key: key.to_string(),
                origin: origin.to_string(),
            });
        }
        self.values.insert(
            key.to_string(),
            (value.trim().to_string(), ConfigSource::StaticBroker),
        );
        Ok(())
    }

    /// [`RawConfig::set`] for a value given on the command line (a flag or `--override`): it
    /// wins over a dynamic value, persisted or new.
    pub fn set_pinned(&mut self, key: &str, value: &str, origin: &str) -> Result<(), ConfigError> {
        self.set(key, value, origin)?;
        self.pinned.insert(key.trim().to_string());
        Ok(())
    }

    /// The command-line setting that fixes `key` (itself or one of its unit family), if any.
    pub fn pinned_by(&self, key: &str) -> Option<&str> {
        if let Some(k) = self.pinned.get(key) {
            return Some(k.as_str());
        }
        let family = FAMILIES.iter().find(|f| f.contains(&key))?;
        family
            .iter()
            .find_map(|k| self.pinned.get(*k))
            .map(String::as_str)
    }

    /// Flattens a TOML document: nested tables join their keys with dots, so both
    /// `"num.partitions" = 3` and `[num] partitions = 3` mean num.partitions.
    pub fn merge_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: path.to_string(),
                reason: toml_error_at(text, &e),
            })?;
        let mut flat = Vec::new();
        flatten_toml("", &toml::Value::Table(table), &mut flat);
        for (k, v) in flat {
            self.set(&k, &v, path)?;
        }
        Ok(())
    }

    /// `STROM_NUM_PARTITIONS=3` sets num.partitions. Variables that name no setting are
    /// returned so the caller can warn about them (other tools share the prefix).
    pub fn merge_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
        let mut unknown = Vec::new();
        for (k, v) in vars {
            let Some(suffix) = k.strip_prefix("STROM_") else {
                continue;
            };
            match env_setting_name(suffix) {
                Some(name) => {
                    self.values.insert(name, (v, ConfigSource::StaticBroker));
                }
                None => unknown.push(k),
            }
        }
        unknown
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// These settings with dynamic values on top, in Kafka's order of precedence: this
    /// broker's, then the cluster-wide default, then static, then default. Dynamic values that
    /// cannot apply are left out (see [`RawConfig::with_dynamic_checked`]).
    pub fn with_dynamic(
        &self,
        cluster_default: &BTreeMap<String, String>,
        this_broker: &BTreeMap<String, String>,
    ) -> RawConfig {
        self.with_dynamic_checked(cluster_default, this_broker).0
    }

    /// [`RawConfig::with_dynamic`], with the dynamic values it left out: a name that is not a
    /// dynamic setting, a setting given on the command line (which wins), or a value that would
    /// make the topic defaults invalid. Kafka, too, ignores an invalid persisted dynamic config
    /// and starts with the static or default value.
    pub fn with_dynamic_checked(
        &self,
        cluster_default: &BTreeMap<String, String>,
        this_broker: &BTreeMap<String, String>,
    ) -> (RawConfig, Vec<IgnoredDynamic>) {
        let mut out = self.clone();
        let mut ignored = Vec::new();
        for (layer, source, per_broker) in [
            (cluster_default, ConfigSource::DynamicDefaultBroker, false),
            (this_broker, ConfigSource::DynamicBroker, true),
        ] {
            for (k, v) in layer {
                let reason = if !is_dynamic_broker_config(k) {
                    Some("not a dynamic broker setting".to_string())
                } else if let Some(flag) = self.pinned_by(k) {
                    Some(format!("{flag} is given on the command line, which wins"))
                } else {
                    let mut trial = out.clone();
                    trial.values.insert(k.clone(), (v.clone(), source));
                    match validate_topic_defaults(&trial) {
                        Ok(()) => {
                            out = trial;
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    }
                };
                if let Some(reason) = reason {
                    ignored.push(IgnoredDynamic {
                        per_broker,
                        name: k.clone(),
                        value: v.clone(),
                        reason,
                    });
                }
            }
        }
        (out, ignored)
    }

    pub fn source(&self, key: &str) -> ConfigSource {
        self.values
            .get(key)
            .map(|(_, s)| *s)
            .unwrap_or(ConfigSource::Default)
    }

    /// Expands `${env:NAME}`, `${ordinal}` and `${ordinal:BASE}` in every value.
    pub fn expand_placeholders(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        hostname: Option<String>,
    ) -> Result<(), ConfigError> {
        let ordinal = || -> Option<i64> {
            let name = env("POD_NAME").or_else(|| hostname.clone())?;
            name.rsplit_once('-')?.1.parse().ok()
        };
        for (key, (value, _)) in self.values.iter_mut() {
            if !value.contains("${") {
                continue;
            }
            let mut out = String::new();
            let mut rest = value.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| invalid(key, value, "unclosed ${"))?;
                let expr = &after[..end];
                if let Some(var) = expr.strip_prefix("env:") {
                    let v = env(var).ok_or_else(|| {
                        invalid(key, value, format!("environment variable {var} is not set"))
                    })?;
                    out.push_str(&v);
                } else if expr == "ordinal" || expr.starts_with("ordinal:") {
                    let base: i64 = match expr.strip_prefix("ordinal:") {
                        Some(b) => b
                            .parse()
                            .map_err(|_| invalid(key, value, format!("bad base in ${{{expr}}}")))?,
                        None => 0,
                    };
                    let n = ordinal().ok_or_else(|| {
                        invalid(
                            key,
                            value,
                            "${ordinal} needs POD_NAME or a hostname ending in -N",
                        )
                    })?;
                    out.push_str(&(base + n).to_string());
                } else {
                    return Err(invalid(
                        key,
                        value,
                        format!("unknown placeholder ${{{expr}}}"),
                    ));
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *value = out;
        }
        Ok(())
    }
}

/// The parser's message with the line and column it points at: its own `Display` spreads a
/// snippet over several lines, and Strom's config errors are one line.
fn toml_error_at(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: {}", e.message())
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten_toml(&join(k), v, out);
            }
        }
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), parts.join(",")));
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Settings for tests only (`strom.test.*`): taken by `--override` and the config file, never
/// listed (not in DescribeConfigs or the docs), no use in production.
pub const TEST_SETTING_PREFIX: &str = "strom.test.";
/// Test only: how long each write of transaction markers waits first, so a test can kill the
/// broker between a durable PrepareCommit (EndTxn answered) and its markers.
pub const TEST_TXN_MARKER_DELAY_MS: &str = "strom.test.txn.marker.delay.ms";

/// The typed configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub raw: RawConfig,
    /// `strom.test.txn.marker.delay.ms` (test only; 0 in production).
    pub test_txn_marker_delay_ms: u64,
    pub node_id: i32,
    /// `broker.rack` (KIP-392), registered with the cluster.
    pub broker_rack: Option<String>,
    /// `replica.selector.class`: where the leader sends consumers that name a rack.
    pub replica_selector: crate::replica_selector::ReplicaSelector,
    pub log_dir: PathBuf,
    pub listeners: Vec<Endpoint>,
    pub advertised_listeners: Vec<Endpoint>,
    pub inter_broker_listener_name: String,
    /// Each listener's security protocol (`listener.security.protocol.map`).
    pub listener_security_protocols: BTreeMap<String, SecurityProtocol>,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics_enable: bool,
    pub delete_topic_enable: bool,
    pub message_max_bytes: i32,
    pub socket_request_max_bytes: usize,
    pub socket_send_buffer_bytes: i32,
    pub socket_receive_buffer_bytes: i32,
    pub connections_max_idle_ms: u64,
    pub max_connections: usize,
    pub log_retention_check_interval_ms: u64,
    pub log_flush_scheduler_interval_ms: u64,
    pub log_cleaner_enable: bool,
    pub log_fetch_verify_crc: bool,
    pub log_cleaner_backoff_ms: u64,
    pub producer_id_expiration_ms: i64,
    pub producer_id_expiration_check_interval_ms: u64,
    pub cluster_id: Option<String>,
    /// `cluster.metadata.url`: a cluster's PostgreSQL (contains a password: never log it).
    pub cluster_metadata_url: Option<String>,
    /// `object.store.url` with its other `object.store.*` settings checked: the cluster's
    /// partition data is in shared storage (needs `cluster.metadata.url`).
    pub object_store_url: Option<String>,
    /// Whether `node.id` was set rather than defaulted (a cluster allocates one otherwise).
    pub node_id_configured: bool,
    pub broker_heartbeat_interval_ms: u64,
    pub broker_session_timeout_ms: u64,
    pub admin_http_listener: Option<SocketAddr>,
    pub metrics_partition_labels_enable: bool,
    pub metrics_partition_labels_max: usize,
    pub gateway_listener: Option<SocketAddr>,
    pub shutdown_timeout_ms: u64,
    pub queued_max_requests: usize,
    pub groups: strom_group_coordinator::GroupConfig,
    pub txns: strom_transaction_coordinator::TxnConfig,
    /// `authorizer.class.name` named the StandardAuthorizer: its settings. `None`: no
    /// authorizer (every action allowed, the ACL APIs answer SECURITY_DISABLED).
    pub authorizer: Option<strom_security::authorizer::AuthorizerConfig>,
}

pub fn parse_i64(key: &str, v: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, v, "not a whole number"))?;
    if n < min || n > max {
        return Err(invalid(key, v, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

/// A ratio in [0, 1] (Kafka's DOUBLE settings such as min.cleanable.dirty.ratio).
pub fn parse_ratio(key: &str, v: &str) -> Result<f64, ConfigError> {
    let x: f64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, v, "not a number"))?;
    if !(0.0..=1.0).contains(&x) {
        return Err(invalid(key, v, "must be between 0 and 1"));
    }
    Ok(x)
}

pub fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, v, "must be true or false")),
    }
}

pub fn parse_timestamp_type(key: &str, v: &str) -> Result<TimestampType, ConfigError> {
    match v.trim() {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err(invalid(key, v, "must be CreateTime or LogAppendTime")),
    }
}

impl BrokerConfig {
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let get = |k: &str| raw.get(k).unwrap_or("").to_string();
        let int = |k: &str, min: i64, max: i64| parse_i64(k, &get(k), min, max);
        let boolean = |k: &str| parse_bool(k, &get(k));

        let node_id = int("node.id", 0, i32::MAX as i64)? as i32;
        let broker_rack = Some(get("broker.rack").trim().to_string()).filter(|r| !r.is_empty());
        let replica_selector = {
            let value = get("replica.selector.class");
            crate::replica_selector::parse(&value).map_err(|reason| ConfigError::Invalid {
                key: "replica.selector.class".into(),
                value,
                reason,
            })?
        };
        let roles = get("process.roles");
        for role in roles.split(',').map(str::trim) {
            if role != "broker" && role != "controller" {
                return Err(invalid(
                    "process.roles",
                    &roles,
                    "roles are broker and controller",
                ));
            }
        }
        let mut log_dirs = get("log.dirs");
        if raw.source("log.dirs") == ConfigSource::Default {
            if let Some(d) = raw.get("log.dir") {
                log_dirs = d.to_string();
            }
        }
        let dirs: Vec<&str> = log_dirs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if dirs.len() != 1 {
            return Err(invalid(
                "log.dirs",
                &log_dirs,
                "Strom takes exactly one directory",
            ));
        }
        let log_dir = PathBuf::from(dirs[0]);

        let listeners = Endpoint::parse_list("listeners", &get("listeners"))?;
        let protocol_map = get("listener.security.protocol.map");
        let mut protocols = BTreeMap::new();
        for pair in protocol_map
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (n, p) = pair.split_once(':').ok_or_else(|| {
                invalid(
                    "listener.security.protocol.map",
                    &protocol_map,
                    format!("'{pair}' is not NAME:PROTOCOL"),
                )
            })?;
            protocols.insert(n.trim().to_ascii_uppercase(), p.trim().to_ascii_uppercase());
        }
        let mut listener_security_protocols = BTreeMap::new();
        for l in &listeners {
            match protocols.get(&l.name).map(String::as_str) {
                Some(p) => {
                    let protocol = SecurityProtocol::from_name(p).ok_or_else(|| {
                        invalid(
                            "listener.security.protocol.map",
                            &protocol_map,
                            format!(
                                "listener {} uses {p}, which is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                                l.name
                            ),
                        )
                    })?;
                    listener_security_protocols.insert(l.name.clone(), protocol);
                }
                None => {
                    return Err(invalid(
                        "listener.security.protocol.map",
                        &protocol_map,
                        format!("no security protocol for listener {}", l.name),
                    ))
                }
            }
        }
        let advertised_listeners = match raw.get("advertised.listeners") {
            Some(v) if !v.trim().is_empty() => {
                let adv = Endpoint::parse_list("advertised.listeners", v)?;
                for a in &adv {
                    if !listeners.iter().any(|l| l.name == a.name) {
                        return Err(invalid(
                            "advertised.listeners",
                            v,
                            format!("{} is not one of the listeners", a.name),
                        ));
                    }
                    if a.host.is_empty() || a.host == "0.0.0.0" || a.host == "::" {
                        return Err(invalid(
                            "advertised.listeners",
                            v,
                            "a client cannot connect to a wildcard address",
                        ));
                    }
                }
                // A listener without an advertised address is advertised as it is bound.
                let mut all = adv.clone();
                for l in &listeners {
                    if !adv.iter().any(|a| a.name == l.name) {
                        all.push(advertise_default(l));
                    }
                }
                all
            }
            _ => listeners.iter().map(advertise_default).collect(),
        };
        let inter_broker_listener_name = match raw.get("inter.broker.listener.name") {
            Some(n) if !n.trim().is_empty() => {
                let n = n.trim().to_ascii_uppercase();
                if !listeners.iter().any(|l| l.name == n) {
                    return Err(invalid(
                        "inter.broker.listener.name",
                        &n,
                        "not one of the listeners",
                    ));
                }
                n
            }
            _ => listeners[0].name.clone(),
        };

        // Validate the log settings once here so a bad value fails at start-up, not at the
        // first topic creation.
        validate_topic_defaults(&raw)?;

        let admin = get("admin.http.listener");
        let admin_http_listener = if admin.trim().is_empty() {
            None
        } else {
            Some(admin.trim().parse().map_err(|_| {
                invalid(
                    "admin.http.listener",
                    &admin,
                    "must be host:port with an IP address",
                )
            })?)
        };
        let gateway = get("gateway.listener");
        let gateway_listener = if gateway.trim().is_empty() {
            None
        } else {
            Some(gateway.trim().parse().map_err(|_| {
                invalid(
                    "gateway.listener",
                    &gateway,
                    "must be host:port with an IP address",
                )
            })?)
        };
        let cluster_id = raw.get("cluster.id").map(str::to_string);
        if let Some(id) = &cluster_id {
            if id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "cluster.id",
                    id,
                    "use letters, digits, - and _ (at most 64)",
                ));
            }
        }
        let socket_buf =
            |k: &str| -> Result<i32, ConfigError> { Ok(int(k, -1, i32::MAX as i64)? as i32) };

        Ok(BrokerConfig {
            node_id,
            broker_rack,
            replica_selector,
            log_dir,
            listeners,
            advertised_listeners,
            inter_broker_listener_name,
            listener_security_protocols,
            num_partitions: int("num.partitions", 1, 100_000)? as i32,
            default_replication_factor: int("default.replication.factor", 1, i16::MAX as i64)?
                as i16,
            auto_create_topics_enable: boolean("auto.create.topics.enable")?,
            delete_topic_enable: boolean("delete.topic.enable")?,
            message_max_bytes: int("message.max.bytes", 0, i32::MAX as i64)? as i32,
            socket_request_max_bytes: int("socket.request.max.bytes", 1, i32::MAX as i64)? as usize,
            socket_send_buffer_bytes: socket_buf("socket.send.buffer.bytes")?,
            socket_receive_buffer_bytes: socket_buf("socket.receive.buffer.bytes")?,
            connections_max_idle_ms: int("connections.max.idle.ms", 1, i64::MAX)? as u64,
            max_connections: int("max.connections", 1, 1_000_000)? as usize,
            log_retention_check_interval_ms: int("log.retention.check.interval.ms", 1, i64::MAX)?
                as u64,
            log_flush_scheduler_interval_ms: int("log.flush.scheduler.interval.ms", 1, i64::MAX)?
                as u64,
            log_cleaner_enable: boolean("log.cleaner.enable")?,
            log_fetch_verify_crc: boolean("log.fetch.verify.crc")?,
            log_cleaner_backoff_ms: int("log.cleaner.backoff.ms", 1, i64::MAX)? as u64,
            producer_id_expiration_ms: int("producer.id.expiration.ms", 1, i32::MAX as i64)?,
            producer_id_expiration_check_interval_ms: int(
                "producer.id.expiration.check.interval.ms",
                1,
                i32::MAX as i64,
            )? as u64,
            cluster_id,
            cluster_metadata_url: cluster_metadata_url(&raw)?,
            object_store_url: object_store(&raw)?
                .map(|_| raw.get("object.store.url").unwrap_or_default().to_string()),
            node_id_configured: raw.source("node.id") != ConfigSource::Default,
            broker_heartbeat_interval_ms: int("broker.heartbeat.interval.ms", 1, i32::MAX as i64)?
                as u64,
            broker_session_timeout_ms: int("broker.session.timeout.ms", 1, i32::MAX as i64)? as u64,
            admin_http_listener,
            metrics_partition_labels_enable: boolean("metrics.partition.labels.enable")?,
            metrics_partition_labels_max: int("metrics.partition.labels.max", 0, 1_000_000)?
                as usize,
            gateway_listener,
            shutdown_timeout_ms: int("shutdown.timeout.ms", 0, i64::MAX)? as u64,
            queued_max_requests: int("queued.max.requests", 1, 100_000)? as usize,
            groups: groups::group_config(&raw)?,
            txns: txns::txn_config(&raw)?,
            authorizer: authorizer_config(&raw)?,
            test_txn_marker_delay_ms: match raw.get(TEST_TXN_MARKER_DELAY_MS) {
                Some(v) => parse_i64(TEST_TXN_MARKER_DELAY_MS, v, 0, 3_600_000)? as u64,
                None => 0,
            },
            raw,
        })
    }

    /// The security protocol of a listener (PLAINTEXT for one not in the map, which
    /// start-up refuses, so only tests see it).
    pub fn security_protocol(&self, listener_name: &str) -> SecurityProtocol {
        self.listener_security_protocols
            .get(listener_name)
            .copied()
            .unwrap_or(SecurityProtocol::Plaintext)
    }

    /// A setting as `listener` sees it: its `listener.name.<listener>.` override (listener
    /// names are lower case there, as in Kafka), else the broker-wide value.
    pub fn listener_setting(&self, listener: &str, key: &str) -> Option<&str> {
        let scoped = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.raw.get(&scoped).or_else(|| self.raw.get(key))
    }

    pub fn advertised(&self, listener_name: &str) -> Option<&Endpoint> {
        self.advertised_listeners
            .iter()
            .find(|e| e.name == listener_name)
    }
}

/// Checks the topic defaults `raw` gives (as every topic without overrides would get them),
/// naming the broker setting in an error rather than its topic-level twin.
pub fn validate_topic_defaults(raw: &RawConfig) -> Result<(), ConfigError> {
    topic::TopicConfig::broker_defaults(raw)
        .map(|_| ())
        .map_err(|e| match e {
            ConfigError::Invalid { key, value, reason } => ConfigError::Invalid {
                key: TOPIC_CONFIGS
                    .iter()
                    .find(|(t, _, _)| *t == key)
                    .map(|(_, b, _)| b.to_string())
                    .unwrap_or(key),
                value,
                reason,
            },
            other => other,
        })
}

fn advertise_default(l: &Endpoint) -> Endpoint {
    let host = match l.host.as_str() {
        // Departure from Kafka (which advertises the canonical host name): a wildcard bind is
        // advertised as localhost, so the zero-config single node works for local clients.
        "" | "0.0.0.0" | "::" => "localhost".to_string(),
        h => h.to_string(),
    };
    Endpoint {
        name: l.name.clone(),
        host,
        port: l.port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_config_file_names_line_and_column() {
        let mut raw = RawConfig::default();
        let err = raw
            .merge_toml("\"num.partitions\" = 3\nbroken line\n", "strom.toml")
            .expect_err("not TOML");
        let text = err.to_string();
        assert!(text.contains("strom.toml"), "{text}");
        assert!(text.contains("line 2, column"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    fn build(pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        let mut raw = RawConfig::defaults();
        for (k, v) in pairs {
            raw.set(k, v, "test")?;
        }
        BrokerConfig::from_raw(raw)
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = build(&[]).unwrap();
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.listeners[0].port, 9092);
        assert_eq!(c.advertised_listeners[0].host, "localhost");
    }

    #[test]
    fn test_only_settings_are_taken_checked_and_unlisted() {
        assert_eq!(build(&[]).unwrap().test_txn_marker_delay_ms, 0);
        let c = build(&[(TEST_TXN_MARKER_DELAY_MS, "2500")]).unwrap();
        assert_eq!(c.test_txn_marker_delay_ms, 2500);
        let e = build(&[(TEST_TXN_MARKER_DELAY_MS, "-1")]).unwrap_err();
        assert!(e.to_string().contains(TEST_TXN_MARKER_DELAY_MS), "{e}");
        assert!(!BROKER_CONFIGS
            .iter()
            .any(|d| d.name.starts_with(TEST_SETTING_PREFIX)));
        // Only the test prefix is let through: other strom.* names are still unknown.
        assert!(build(&[("strom.other", "1")]).is_err());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = build(&[("num.partitions", "abc")]).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = build(&[("num.partitions", "-5")]).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = build(&[("listeners", "PLAINTEXT//x:1")]).unwrap_err();
        assert!(e.to_string().contains("listeners"), "{e}");
        let e = build(&[("no.such.thing", "1")]).unwrap_err();
        assert!(e.to_string().contains("no.such.thing"), "{e}");
        let e = build(&[("log.segment.bytes", "12")]).unwrap_err();
        assert!(e.to_string().contains("log.segment.bytes"), "{e}");
        // Values a log cannot be opened with are refused at start-up, not at first use.
        for (k, v) in [
            ("message.max.bytes", "16"),
            ("log.segment.bytes", "60"),
            ("log.index.size.max.bytes", "4"),
            ("offsets.topic.segment.bytes", "14"),
        ] {
            let e = build(&[(k, v)]).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn secrets_are_sensitive() {
        for name in [
            "cluster.metadata.url",
            "ssl.keystore.key",
            "ssl.keystore.password",
            "ssl.key.password",
            "ssl.truststore.password",
            "ssl.keystore.certificate.chain",
            "ssl.truststore.certificates",
            "listener.name.external.ssl.keystore.key",
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.credentials.client.secret",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "admin.http.auth.token.file",
            "admin.http.ssl.keystore.key",
            "gateway.ssl.keystore.key",
            "gateway.plain.sasl.jaas.config",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "ssl.keystore.location",
            "ssl.truststore.location",
            "ssl.client.auth",
            "sasl.enabled.mechanisms",
            "sasl.oauthbearer.jwks.endpoint.url",
            "sasl.oauthbearer.expected.audience",
            "admin.http.auth.paths",
            "admin.http.auth.oauthbearer.enable",
            "gateway.ssl.keystore.location",
            "listener.name.external.ssl.keystore.location",
            "num.partitions",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
        let e = invalid(
            "ssl.keystore.key",
            "-----BEGIN PRIVATE KEY----- s3cret",
            "bad",
        );
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = invalid("num.partitions", "many", "bad");
        assert!(e.to_string().contains("many"), "{e}");
    }

    #[test]
    fn toml_env_and_placeholders() {
        let mut raw = RawConfig::defaults();
        raw.merge_toml("num.partitions = 3\n\"log.dirs\" = \"/tmp/x\"\n", "f.toml")
            .unwrap();
        assert_eq!(raw.get("num.partitions"), Some("3"));
        assert_eq!(raw.get("log.dirs"), Some("/tmp/x"));
        let unknown = raw.merge_env(
            vec![
                ("STROM_NUM_PARTITIONS".to_string(), "4".to_string()),
                ("STROM_BOOTSTRAP".to_string(), "x".to_string()),
                ("HOME".to_string(), "/root".to_string()),
            ]
            .into_iter(),
        );
        assert_eq!(unknown, vec!["STROM_BOOTSTRAP".to_string()]);
        assert_eq!(raw.get("num.partitions"), Some("4"));
        // The admin listener's own ssl.* and its auth settings, like any other setting.
        let unknown = raw.merge_env(
            [
                ("STROM_ADMIN_HTTP_SSL_KEYSTORE_LOCATION", "/tls/a.pem"),
                ("STROM_ADMIN_HTTP_SSL_CLIENT_AUTH", "required"),
                ("STROM_ADMIN_HTTP_AUTH_TOKEN_FILE", "/tok"),
                ("STROM_ADMIN_HTTP_AUTH_PATHS", "/metrics"),
                ("STROM_ADMIN_HTTP_SSL_PRINCIPAL_MAPPING_RULES", "DEFAULT"),
                ("STROM_ADMIN_HTTP_SSL_NOPE", "x"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(
            unknown,
            vec![
                "STROM_ADMIN_HTTP_SSL_PRINCIPAL_MAPPING_RULES".to_string(),
                "STROM_ADMIN_HTTP_SSL_NOPE".to_string()
            ]
        );
        assert_eq!(
            raw.get("admin.http.ssl.keystore.location"),
            Some("/tls/a.pem")
        );
        assert_eq!(raw.get("admin.http.ssl.client.auth"), Some("required"));
        assert_eq!(raw.get("admin.http.auth.token.file"), Some("/tok"));
        assert_eq!(raw.get("admin.http.auth.paths"), Some("/metrics"));
        raw.set(
            "advertised.listeners",
            "PLAINTEXT://${env:HOST_IP}:${ordinal:30092}",
            "test",
        )
        .unwrap();
        raw.set("node.id", "${ordinal}", "test").unwrap();
        let env = |k: &str| match k {
            "HOST_IP" => Some("10.0.0.7".to_string()),
            "POD_NAME" => Some("strom-2".to_string()),
            _ => None,
        };
        raw.expand_placeholders(&env, None).unwrap();
        let c = BrokerConfig::from_raw(raw).unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.advertised_listeners[0].host, "10.0.0.7");
        assert_eq!(c.advertised_listeners[0].port, 30094);

        let mut raw = RawConfig::defaults();
        raw.set("advertised.listeners", "PLAINTEXT://${env:NOPE}:1", "t")
            .unwrap();
        let e = raw.expand_placeholders(&|_| None, None).unwrap_err();
        assert!(e.to_string().contains("advertised.listeners") && e.to_string().contains("NOPE"));
    }

    #[test]
    fn same_port_two_hosts_and_map() {
        let c = build(&[
            (
                "listeners",
                "INTERNAL://10.1.1.1:9092,LOCAL://127.0.0.1:9092",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,LOCAL:PLAINTEXT",
            ),
            (
                "advertised.listeners",
                "INTERNAL://strom-0.h:9092,LOCAL://localhost:9092",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ])
        .unwrap();
        assert_eq!(c.advertised("LOCAL").unwrap().host, "localhost");
        let e = build(&[("listeners", "SECRET://0.0.0.0:9093")]).unwrap_err();
        assert!(e
            .to_string()
            .contains("no security protocol for listener SECRET"));
    }

    #[test]
    fn listeners_of_every_protocol_with_kafkas_default_map() {
        let c = build(&[
            (
                "listeners",
                "PLAINTEXT://:9092,SSL://:9093,SASL_PLAINTEXT://:9094,sasl_ssl://:9095",
            ),
            ("advertised.listeners", "SASL_SSL://broker.example:19095"),
        ])
        .unwrap();
        let protocols: Vec<_> = c
            .listeners
            .iter()
            .map(|l| c.security_protocol(&l.name))
            .collect();
        assert_eq!(
            protocols,
            vec![
                SecurityProtocol::Plaintext,
                SecurityProtocol::Ssl,
                SecurityProtocol::SaslPlaintext,
                SecurityProtocol::SaslSsl
            ]
        );
        assert_eq!(c.advertised("SASL_SSL").unwrap().host, "broker.example");
        assert_eq!(c.advertised("SASL_SSL").unwrap().port, 19095);
        assert_eq!(c.advertised("SSL").unwrap().host, "localhost");
        assert_eq!(c.inter_broker_listener_name, "PLAINTEXT");
    }

    #[test]
    fn a_custom_map_and_its_bad_combinations() {
        let c = build(&[
            ("listeners", "INSIDE://:9092,OUTSIDE://:9093"),
            (
                "listener.security.protocol.map",
                "INSIDE:PLAINTEXT,OUTSIDE:SASL_SSL",
            ),
            ("inter.broker.listener.name", "inside"),
        ])
        .unwrap();
        assert_eq!(c.security_protocol("OUTSIDE"), SecurityProtocol::SaslSsl);
        assert_eq!(c.inter_broker_listener_name, "INSIDE");
        for (pairs, words) in [
            (
                vec![
                    ("listeners", "INSIDE://:9092"),
                    ("listener.security.protocol.map", "INSIDE:KERBEROS"),
                ],
                "KERBEROS",
            ),
            (
                vec![
                    ("listeners", "PLAINTEXT://:9092,SSL://:9093"),
                    ("inter.broker.listener.name", "OTHER"),
                ],
                "inter.broker.listener.name",
            ),
            (
                vec![
                    ("listeners", "PLAINTEXT://:9092"),
                    ("advertised.listeners", "SSL://x:1"),
                ],
                "SSL is not one of the listeners",
            ),
            (
                vec![("listeners", "PLAINTEXT://:9092,plaintext://:9093")],
                "appears twice",
            ),
            (
                vec![
                    ("listeners", "PLAINTEXT://:9092"),
                    ("listener.security.protocol.map", "PLAINTEXT"),
                ],
                "is not NAME:PROTOCOL",
            ),
        ] {
            let e = build(&pairs).unwrap_err().to_string();
            assert!(e.contains(words), "{pairs:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn listener_scoped_security_settings() {
        let mut raw = RawConfig::defaults();
        raw.set("listeners", "PLAINTEXT://:9092,SSL://:9093", "t")
            .unwrap();
        raw.set("ssl.client.auth", "requested", "t").unwrap();
        raw.set("listener.name.ssl.ssl.client.auth", "required", "t")
            .unwrap();
        raw.set(
            "listener.name.sasl_ssl.plain.sasl.jaas.config",
            "M required user_a=\"b\";",
            "t",
        )
        .unwrap();
        assert!(raw
            .set("listener.name.ssl.num.partitions", "3", "t")
            .is_err());
        assert!(raw
            .set("listener.name.ssl.gssapi.sasl.jaas.config", "x", "t")
            .is_err());
        assert!(raw.set("listener.name..ssl.client.auth", "x", "t").is_err());
        assert!(raw
            .set("listener.name.SSL.ssl.client.auth", "x", "t")
            .is_err());
        let c = BrokerConfig::from_raw(raw).unwrap();
        assert_eq!(
            c.listener_setting("SSL", "ssl.client.auth"),
            Some("required")
        );
        assert_eq!(
            c.listener_setting("PLAINTEXT", "ssl.client.auth"),
            Some("requested")
        );
    }

    fn layer(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Kafka's rule for persisted dynamic configs: one that cannot apply is skipped (and
    /// reported), the others apply, and the result is always a configuration the broker starts
    /// with.
    #[test]
    fn invalid_dynamic_values_are_left_out() {
        let raw = RawConfig::defaults();
        let cluster = layer(&[
            ("message.max.bytes", "16"),
            ("log.retention.ms", "1000"),
            ("listeners", "PLAINTEXT://:1"),
            ("no.such.setting", "1"),
        ]);
        let this = layer(&[("log.segment.bytes", "garbage"), ("log.roll.ms", "5000")]);
        let (out, ignored) = raw.with_dynamic_checked(&cluster, &this);
        assert_eq!(out.get("message.max.bytes"), Some("1048588"));
        assert_eq!(out.get("log.retention.ms"), Some("1000"));
        assert_eq!(out.get("log.roll.ms"), Some("5000"));
        assert_eq!(out.source("log.roll.ms"), ConfigSource::DynamicBroker);
        assert_eq!(out.get("log.segment.bytes"), Some("1073741824"));
        assert_eq!(out.get("listeners"), Some("PLAINTEXT://0.0.0.0:9092"));
        let mut names: Vec<&str> = ignored.iter().map(|i| i.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "listeners",
                "log.segment.bytes",
                "message.max.bytes",
                "no.such.setting"
            ]
        );
        assert!(BrokerConfig::from_raw(out).is_ok());
    }

    /// A flag or --override wins over a dynamic value, for its whole unit family.
    #[test]
    fn command_line_wins_over_dynamic() {
        let mut raw = RawConfig::defaults();
        raw.set_pinned("log.retention.hours", "2", "--override")
            .unwrap();
        raw.set_pinned("message.max.bytes", "1048588", "--override")
            .unwrap();
        raw.set("log.segment.bytes", "5000000", "file").unwrap();
        let cluster = layer(&[
            ("log.retention.ms", "1000"),
            ("message.max.bytes", "5000"),
            ("log.segment.bytes", "2000000"),
        ]);
        let (out, ignored) = raw.with_dynamic_checked(&cluster, &BTreeMap::new());
        let t = topic::TopicConfig::broker_defaults(&out).unwrap();
        assert_eq!(t.retention_ms, 7_200_000);
        assert_eq!(t.max_message_bytes, 1_048_588);
        // A setting from a file is static: the dynamic value is over it, as in Kafka.
        assert_eq!(t.segment_bytes, 2_000_000);
        assert_eq!(ignored.len(), 2);
        assert_eq!(
            raw.pinned_by("log.retention.minutes"),
            Some("log.retention.hours")
        );
        assert_eq!(raw.pinned_by("log.segment.bytes"), None);
    }
}
