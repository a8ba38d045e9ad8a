//! REST Proxy v2 consumer instances: a named consumer in a group, kept by the
//! gateway between requests. Subscribed instances are classic-protocol group
//! members (strom-client's `Membership`, which heartbeats in the
//! background); instances with a manual assignment commit outside any
//! generation. Positions live here; `records` fetches from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use strom_client::{Client, CommittedOffsets, FetchTarget, KafkaCode, Membership, OffsetSpec};

use axum::Extension;
use strom_security::authorizer::{AclOperation, ResourceType};
use strom_security::KafkaPrincipal;

use crate::auth::{self, Caller};
use crate::embedded::{self, Format};
use crate::error::{
    RestError, RestResult, CONSUMER_ALREADY_EXISTS, CONSUMER_FORMAT_MISMATCH, ILLEGAL_STATE,
};
use crate::{json_response, parse_json, read_body, Gateway};

/// Confluent's "invalid consumer configuration".
const INVALID_CONSUMER_CONFIG: u32 = 42204;
/// Kafka's auto.commit.interval.ms default.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
/// Longest `timeout` a records request may ask for.
const MAX_POLL_TIMEOUT_MS: u64 = 30_000;

type Key = (String, String);
type TopicPartition = (String, i32);

pub struct Instance {
    group: String,
    format: Format,
    reset: OffsetSpec,
    auto_commit: bool,
    request_timeout_ms: u64,
    max_bytes: usize,
    subscription: Vec<String>,
    /// A `topic_pattern` subscription and when its topics were last listed.
    pattern: Option<(regex::Regex, Instant)>,
    membership: Option<Membership>,
    /// The group's assignment, or the manual one.
    assigned: Vec<TopicPartition>,
    manual: bool,
    /// The next offset to return per assigned partition.
    positions: BTreeMap<TopicPartition, i64>,
    last_commit: Instant,
    pub(crate) last_used: Instant,
}

#[derive(Default)]
pub struct Consumers {
    instances: std::sync::Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Instance>>>>,
    /// Who created each instance: only that principal may use it (an
    /// instance holds a group membership and positions, a session of its own).
    owners: std::sync::Mutex<HashMap<Key, Arc<KafkaPrincipal>>>,
}

impl Consumers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<tokio::sync::Mutex<Instance>>>> {
        self.instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, group: &str, name: &str) -> RestResult<Arc<tokio::sync::Mutex<Instance>>> {
        self.lock()
            .get(&(group.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(RestError::consumer_not_found)
    }

    fn remove(&self, group: &str, name: &str) -> Option<Arc<tokio::sync::Mutex<Instance>>> {
        let key = (group.to_string(), name.to_string());
        self.owners_lock().remove(&key);
        self.lock().remove(&key)
    }

    fn owners_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<KafkaPrincipal>>> {
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `principal` may use the instance: it created it, or the
    /// instance does not exist (its handler then answers 404 as it would).
    pub(crate) fn owned_by(&self, group: &str, name: &str, principal: &KafkaPrincipal) -> bool {
        self.owners_lock()
            .get(&(group.to_string(), name.to_string()))
            .is_none_or(|owner| owner.as_ref() == principal)
    }

    /// Instances not used for `idle`: removed (and leave their group), as
    /// Confluent's consumer.instance.timeout.ms does.
    pub async fn expire(&self, client: Option<Arc<Client>>, idle: Duration) {
        let candidates: Vec<(Key, Arc<tokio::sync::Mutex<Instance>>)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, inst) in candidates {
            let Ok(mut guard) = inst.try_lock() else {
                continue; // in use
            };
            if guard.last_used.elapsed() < idle {
                continue;
            }
            self.lock().remove(&key);
            self.owners_lock().remove(&key);
            tracing::info!(group = %key.0, instance = %key.1, "consumer instance expired");
            if let Some(c) = &client {
                close(&mut guard, c).await;
            }
        }
    }
}

pub fn routes() -> Router<Arc<Gateway>> {
    let base = "/consumers/{group}/instances/{instance}";
    Router::new()
        .route("/consumers/{group}", post(create))
        .route(base, axum::routing::delete(delete))
        .route(
            &format!("{base}/subscription"),
            post(subscribe).get(get_subscription).delete(unsubscribe),
        )
        .route(
            &format!("{base}/assignments"),
            post(assign).get(get_assignments),
        )
        .route(&format!("{base}/positions"), post(seek))
        .route(&format!("{base}/positions/beginning"), post(seek_beginning))
        .route(&format!("{base}/positions/end"), post(seek_end))
        .route(&format!("{base}/offsets"), post(commit).get(committed))
        .route(&format!("{base}/records"), get(records))
}

fn no_content() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::error::V2_JSON),
    );
    r
}

fn illegal_state(message: impl Into<String>) -> RestError {
    RestError::new(StatusCode::CONFLICT, ILLEGAL_STATE, message)
}

fn invalid_config(message: impl Into<String>) -> RestError {
    RestError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        INVALID_CONSUMER_CONFIG,
        message,
    )
}

/// A config value that may be given as a JSON string or its plain type.
fn config_str(v: &Option<Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "auto.offset.reset")]
    auto_offset_reset: Option<Value>,
    #[serde(default, rename = "auto.commit.enable")]
    auto_commit_enable: Option<Value>,
    #[serde(default, rename = "consumer.request.timeout.ms")]
    request_timeout_ms: Option<Value>,
    #[serde(default, rename = "fetch.min.bytes")]
    #[allow(dead_code)]
    fetch_min_bytes: Option<Value>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

async fn create(
    State(gw): State<Arc<Gateway>>,
    Path(group): Path<String>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    embedded::check_json_body(&headers)?;
    let bytes = read_body(&gw, &headers, body).await?;
    let req: CreateBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        parse_json(b"{}")?
    } else {
        parse_json(&bytes)?
    };
    let format = match req.format.as_deref() {
        None => Format::Binary,
        Some(f) => Format::parse(f).ok_or_else(|| {
            invalid_config(format!(
                "format {f:?} is not supported: use binary or json (avro, protobuf and jsonschema need a schema registry)"
            ))
        })?,
    };
    let reset = match config_str(&req.auto_offset_reset).as_deref() {
        None | Some("latest") => OffsetSpec::Latest,
        Some("earliest" | "smallest") => OffsetSpec::Earliest,
        Some(other) => {
            return Err(invalid_config(format!(
                "auto.offset.reset {other:?}: use earliest or latest"
            )))
        }
    };
    let auto_commit = match config_str(&req.auto_commit_enable).as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(invalid_config(format!(
                "auto.commit.enable {other:?}: use true or false"
            )))
        }
    };
    let request_timeout_ms = match config_str(&req.request_timeout_ms) {
        None => gw.config.consumer_request_timeout_ms,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= MAX_POLL_TIMEOUT_MS)
            .ok_or_else(|| {
                invalid_config(format!(
                    "consumer.request.timeout.ms {s:?}: a whole number of at most {MAX_POLL_TIMEOUT_MS}"
                ))
            })?,
    };
    let name = match req.name {
        Some(n) => n,
        None => format!(
            "rest-consumer-{}",
            gw.next_partition
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    if !valid_name(&name) || !valid_name(&group) {
        return Err(invalid_config(
            "group and instance names are 1-249 letters, digits, '.', '_' or '-'",
        ));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    {
        let mut map = gw.consumers.lock();
        if map.len() >= gw.config.max_consumer_instances {
            return Err(RestError::status(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the gateway has {} consumer instances, its limit",
                    map.len()
                ),
            ));
        }
        let key = (group.clone(), name.clone());
        if map.contains_key(&key) {
            return Err(RestError::new(
                StatusCode::CONFLICT,
                CONSUMER_ALREADY_EXISTS,
                "Consumer with specified consumer ID already exists in the specified consumer group.",
            ));
        }
        if let Some(Extension(c)) = &caller {
            gw.consumers
                .owners_lock()
                .insert(key.clone(), c.principal.clone());
        }
        map.insert(
            key,
            Arc::new(tokio::sync::Mutex::new(Instance {
                group: group.clone(),
                format,
                reset,
                auto_commit,
                request_timeout_ms,
                max_bytes: gw.config.consumer_request_max_bytes,
                subscription: Vec::new(),
                pattern: None,
                membership: None,
                assigned: Vec::new(),
                manual: false,
                positions: BTreeMap::new(),
                last_commit: Instant::now(),
                last_used: Instant::now(),
            })),
        );
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "instance_id": name,
            "base_uri": format!("http://{host}/consumers/{group}/instances/{name}"),
        }),
    ))
}

/// Commits (with auto-commit) and leaves the group.
async fn close(inst: &mut Instance, client: &Arc<Client>) {
    if inst.auto_commit {
        if let Err(e) = commit_positions(inst, client).await {
            tracing::debug!(error = %e.message, "commit on close failed");
        }
    }
    if let Some(mut m) = inst.membership.take() {
        if let Err(e) = m.leave().await {
            tracing::debug!(error = %e, "leave group failed");
        }
    }
    inst.assigned.clear();
    inst.positions.clear();
}

async fn instance(
    gw: &Gateway,
    group: &str,
    name: &str,
) -> RestResult<tokio::sync::OwnedMutexGuard<Instance>> {
    let inst = gw.consumers.get(group, name)?;
    let mut guard = inst.lock_owned().await;
    guard.last_used = Instant::now();
    Ok(guard)
}

async fn delete(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
) -> RestResult<Response> {
    let inst = gw
        .consumers
        .remove(&group, &name)
        .ok_or_else(RestError::consumer_not_found)?;
    let mut guard = inst.lock().await;
    if let Ok(client) = gw.client().await {
        close(&mut guard, &client).await;
    }
    Ok(no_content())
}

async fn body_json<T: serde::de::DeserializeOwned>(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> RestResult<T> {
    embedded::check_json_body(headers)?;
    let bytes = read_body(gw, headers, body).await?;
    parse_json(&bytes)
}

#[derive(Deserialize)]
struct SubscribeBody {
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    topic_pattern: Option<String>,
}

async fn subscribe(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let req: SubscribeBody = body_json(&gw, &headers, body).await?;
    let mut inst = instance(&gw, &group, &name).await?;
    if inst.manual {
        return Err(illegal_state(
            "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive",
        ));
    }
    let client = gw.client().await?;
    let (topics, pattern) = match (req.topics, req.topic_pattern) {
        (Some(t), None) if !t.is_empty() => (t, None),
        (None, Some(p)) => {
            // RE2 syntax (Rust's regex) on whole topic names, as the
            // broker's KIP-848 regex subscriptions.
            let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                RestError::unprocessable(format!("topic_pattern {p:?} is not a valid pattern: {e}"))
            })?;
            (matching_topics(&client, &re).await?, Some(re))
        }
        _ => {
            return Err(RestError::unprocessable(
                "A list (of Topics type) or a topic_pattern must be specified.",
            ))
        }
    };
    let mut unique: Vec<String> = topics;
    if let Some(Extension(c)) = &caller {
        if pattern.is_some() {
            // As Kafka leaves out of a regex subscription the topics the member may not read.
            unique.retain(|t| auth::allowed(&gw, c, AclOperation::Read, ResourceType::Topic, t));
        } else {
            for t in &unique {
                auth::authorize(&gw, c, AclOperation::Read, ResourceType::Topic, t)?;
            }
        }
    }
    unique.sort();
    unique.dedup();
    inst.pattern = pattern.map(|re| (re, Instant::now()));
    if unique != inst.subscription || inst.membership.is_none() {
        close(&mut inst, &client).await;
        inst.membership = Some(Membership::new(client, &group, &unique));
        inst.subscription = unique;
    }
    Ok(no_content())
}

/// Topics whose whole name `re` matches, internal ones left out.
async fn matching_topics(client: &Client, re: &regex::Regex) -> RestResult<Vec<String>> {
    let md = client
        .metadata(None, false)
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    let mut out: Vec<String> = md
        .topics
        .into_iter()
        .filter(|t| !t.internal && re.is_match(&t.name))
        .map(|t| t.name)
        .collect();
    out.sort();
    Ok(out)
}

/// A pattern subscription looks for new or deleted matching topics this often.
const PATTERN_REFRESH: Duration = Duration::from_secs(5);

async fn get_subscription(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
) -> RestResult<Response> {
    let inst = instance(&gw, &group, &name).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"topics": inst.subscription}),
    ))
}

async fn unsubscribe(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
) -> RestResult<Response> {
    let mut inst = instance(&gw, &group, &name).await?;
    let client = gw.client().await?;
    close(&mut inst, &client).await;
    inst.subscription.clear();
    inst.pattern = None;
    inst.manual = false;
    Ok(no_content())
}

#[derive(Deserialize)]
struct PartitionRef {
    topic: String,
    partition: i32,
}

#[derive(Deserialize)]
struct PartitionsBody {
    #[serde(deserialize_with = "crate::objects")]
    partitions: Vec<PartitionRef>,
}

async fn assign(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let req: PartitionsBody = body_json(&gw, &headers, body).await?;
    let mut inst = instance(&gw, &group, &name).await?;
    if !inst.subscription.is_empty() {
        return Err(illegal_state(
            "Illegal state: Subscription to topics, partitions and pattern are mutually exclusive",
        ));
    }
    let mut set: BTreeSet<TopicPartition> = BTreeSet::new();
    for p in req.partitions {
        if p.partition < 0 {
            return Err(RestError::unprocessable(format!(
                "partition {} of {} is negative",
                p.partition, p.topic
            )));
        }
        if let Some(Extension(c)) = &caller {
            auth::authorize(&gw, c, AclOperation::Read, ResourceType::Topic, &p.topic)?;
        }
        set.insert((p.topic, p.partition));
    }
    let assigned: Vec<TopicPartition> = set.into_iter().collect();
    inst.positions.retain(|tp, _| assigned.contains(tp));
    inst.manual = !assigned.is_empty();
    inst.assigned = assigned;
    Ok(no_content())
}

fn partitions_json(list: &[TopicPartition]) -> Value {
    Value::Array(
        list.iter()
            .map(|(t, p)| json!({"topic": t, "partition": p}))
            .collect(),
    )
}

async fn get_assignments(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
) -> RestResult<Response> {
    let inst = instance(&gw, &group, &name).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"partitions": partitions_json(&inst.assigned)}),
    ))
}

#[derive(Deserialize)]
struct OffsetRef {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<String>,
}

#[derive(Deserialize)]
struct OffsetsBody {
    #[serde(deserialize_with = "crate::objects")]
    offsets: Vec<OffsetRef>,
}

fn check_assigned(inst: &Instance, topic: &str, partition: i32) -> RestResult<()> {
    if inst
        .assigned
        .iter()
        .any(|(t, p)| t == topic && *p == partition)
    {
        Ok(())
    } else {
        Err(illegal_state(format!(
            "Illegal state: No current assignment for partition {topic}-{partition}"
        )))
    }
}

async fn seek(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let req: OffsetsBody = body_json(&gw, &headers, body).await?;
    let mut inst = instance(&gw, &group, &name).await?;
    for o in &req.offsets {
        check_assigned(&inst, &o.topic, o.partition)?;
        if o.offset < 0 {
            return Err(RestError::unprocessable(format!(
                "offset {} of {}-{} is negative",
                o.offset, o.topic, o.partition
            )));
        }
    }
    for o in req.offsets {
        inst.positions.insert((o.topic, o.partition), o.offset);
    }
    Ok(no_content())
}

async fn seek_to(
    gw: Arc<Gateway>,
    group: String,
    name: String,
    headers: HeaderMap,
    body: Body,
    spec: OffsetSpec,
) -> RestResult<Response> {
    let req: PartitionsBody = body_json(&gw, &headers, body).await?;
    let mut inst = instance(&gw, &group, &name).await?;
    for p in &req.partitions {
        check_assigned(&inst, &p.topic, p.partition)?;
    }
    let client = gw.client().await?;
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in req.partitions {
        by_topic.entry(p.topic).or_default().push(p.partition);
    }
    for (topic, parts) in by_topic {
        for (p, o) in list_offsets(&client, &topic, &parts, spec).await? {
            inst.positions.insert((topic.clone(), p), o);
        }
    }
    Ok(no_content())
}

async fn seek_beginning(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    seek_to(gw, group, name, headers, body, OffsetSpec::Earliest).await
}

async fn seek_end(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    seek_to(gw, group, name, headers, body, OffsetSpec::Latest).await
}

async fn list_offsets(
    client: &Client,
    topic: &str,
    parts: &[i32],
    spec: OffsetSpec,
) -> RestResult<Vec<(i32, i64)>> {
    let listed = client
        .list_offsets(topic, parts, spec)
        .await
        .map_err(|e| RestError::kafka(&e, Some(topic)))?;
    let mut out = Vec::new();
    for (p, r) in listed {
        match r {
            Ok(o) => out.push((p, o.offset.max(0))),
            Err(e) => return Err(RestError::kafka(&e, Some(topic))),
        }
    }
    Ok(out)
}

async fn commit_offsets(
    inst: &Instance,
    client: &Client,
    offsets: &CommittedOffsets,
) -> RestResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let result = match &inst.membership {
        Some(m) if !inst.manual && m.generation() >= 0 => {
            client
                .commit_offsets_as(&inst.group, Some(m.committer()), offsets)
                .await
        }
        _ => client.commit_offsets(&inst.group, offsets).await,
    };
    result.map_err(|e| RestError::kafka(&e, None))
}

async fn commit_positions(inst: &mut Instance, client: &Client) -> RestResult<()> {
    let mut offsets: CommittedOffsets = BTreeMap::new();
    for ((t, p), o) in &inst.positions {
        offsets.entry(t.clone()).or_default().insert(*p, *o);
    }
    commit_offsets(inst, client, &offsets).await?;
    inst.last_commit = Instant::now();
    Ok(())
}

async fn commit(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    embedded::check_json_body(&headers)?;
    let bytes = read_body(&gw, &headers, body).await?;
    let mut inst = instance(&gw, &group, &name).await?;
    let client = gw.client().await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        commit_positions(&mut inst, &client).await?;
    } else {
        let req: OffsetsBody = parse_json(&bytes)?;
        let mut offsets: CommittedOffsets = BTreeMap::new();
        for o in req.offsets {
            if o.offset < 0 {
                return Err(RestError::unprocessable(format!(
                    "offset {} of {}-{} is negative",
                    o.offset, o.topic, o.partition
                )));
            }
            offsets
                .entry(o.topic)
                .or_default()
                .insert(o.partition, o.offset);
        }
        commit_offsets(&inst, &client, &offsets).await?;
    }
    // Confluent answers a commit with 200 and no body.
    let (parts, _) = json_response(StatusCode::OK, &Value::Null).into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

async fn committed(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let req: PartitionsBody = body_json(&gw, &headers, body).await?;
    let inst = instance(&gw, &group, &name).await?;
    let client = gw.client().await?;
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for p in &req.partitions {
        by_topic
            .entry(p.topic.clone())
            .or_default()
            .push(p.partition);
    }
    let wanted: Vec<(String, Vec<i32>)> = by_topic.into_iter().collect();
    let found = client
        .fetch_committed(&inst.group, Some(&wanted))
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    let offsets: Vec<Value> = req
        .partitions
        .iter()
        .filter_map(|p| {
            let o = found.get(&p.topic)?.get(&p.partition)?;
            (*o >= 0).then(
                || json!({"topic": p.topic, "partition": p.partition, "offset": o, "metadata": ""}),
            )
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"offsets": offsets})))
}

#[derive(Deserialize)]
struct RecordsQuery {
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    max_bytes: Option<u64>,
}

/// Joins (again) when subscribed and the group asks for it, and finds a
/// position for every assigned partition: the committed offset, or
/// auto.offset.reset.
async fn prepare(
    inst: &mut Instance,
    client: &Arc<Client>,
    readable: &(dyn Fn(&str) -> bool + Send + Sync),
) -> RestResult<()> {
    if let Some((re, listed)) = &inst.pattern {
        if listed.elapsed() >= PATTERN_REFRESH {
            let re = re.clone();
            let mut topics = matching_topics(client, &re).await?;
            // New matches the caller may not read stay out, as at subscription.
            topics.retain(|t| readable(t));
            inst.pattern = Some((re, Instant::now()));
            if topics != inst.subscription {
                close(inst, client).await;
                inst.membership = Some(Membership::new(client.clone(), &inst.group, &topics));
                inst.subscription = topics;
            }
        }
    }
    let rejoin = match &inst.membership {
        Some(m) => m.generation() < 0 || m.rebalance_needed(),
        None => false,
    };
    if rejoin {
        if inst.auto_commit && !inst.positions.is_empty() {
            // A commit of the old generation may be refused; the new owner
            // then starts from the last commit that was accepted.
            let _ = commit_positions(inst, client).await;
        }
        let Some(m) = inst.membership.as_mut() else {
            return Ok(());
        };
        let assignment = m.join().await.map_err(|e| RestError::kafka(&e, None))?;
        let assigned: Vec<TopicPartition> = assignment
            .into_iter()
            .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
            .collect();
        inst.positions.retain(|tp, _| assigned.contains(tp));
        inst.assigned = assigned;
    }
    let missing: Vec<TopicPartition> = inst
        .assigned
        .iter()
        .filter(|tp| !inst.positions.contains_key(*tp))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in missing {
        by_topic.entry(t).or_default().push(p);
    }
    let wanted: Vec<(String, Vec<i32>)> = by_topic.clone().into_iter().collect();
    let committed = client
        .fetch_committed(&inst.group, Some(&wanted))
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    for (topic, parts) in by_topic {
        let mut reset = Vec::new();
        for p in parts {
            match committed.get(&topic).and_then(|m| m.get(&p)) {
                Some(o) if *o >= 0 => {
                    inst.positions.insert((topic.clone(), p), *o);
                }
                _ => reset.push(p),
            }
        }
        if !reset.is_empty() {
            for (p, o) in list_offsets(client, &topic, &reset, inst.reset).await? {
                inst.positions.insert((topic.clone(), p), o);
            }
        }
    }
    Ok(())
}

async fn records(
    State(gw): State<Arc<Gateway>>,
    Path((group, name)): Path<(String, String)>,
    Query(q): Query<RecordsQuery>,
    caller: Option<Extension<Caller>>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let mut inst = instance(&gw, &group, &name).await?;
    if let Some(asked) = embedded::accept_format(&headers) {
        if asked != inst.format {
            return Err(RestError::new(
                StatusCode::NOT_ACCEPTABLE,
                CONSUMER_FORMAT_MISMATCH,
                format!(
                    "The requested embedded data format ({}) does not match the deserializer for this consumer instance ({})",
                    asked.name(),
                    inst.format.name()
                ),
            ));
        }
    }
    let client = gw.client().await?;
    let readable = |t: &str| {
        caller
            .as_deref()
            .is_none_or(|c| auth::allowed(&gw, c, AclOperation::Read, ResourceType::Topic, t))
    };
    prepare(&mut inst, &client, &readable).await?;
    // The connection's idle timeout counts the wait too (nothing is read or
    // written meanwhile): answer well within it, or the connection is
    // closed under the request.
    let idle_ms = u64::try_from(gw.config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let timeout_ms = q
        .timeout
        .unwrap_or(inst.request_timeout_ms)
        .min(MAX_POLL_TIMEOUT_MS)
        .min(idle_ms / 4 * 3);
    let max_bytes = q
        .max_bytes
        .map(|b| b as usize)
        .unwrap_or(inst.max_bytes)
        .min(inst.max_bytes)
        .max(1);
    let out = poll(&mut inst, &client, timeout_ms, max_bytes).await?;
    if inst.auto_commit && inst.last_commit.elapsed() >= AUTO_COMMIT_INTERVAL {
        if let Err(e) = commit_positions(&mut inst, &client).await {
            tracing::debug!(error = %e.message, "auto-commit failed");
        }
    }
    let mut resp = json_response(StatusCode::OK, &Value::Array(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(inst.format.content_type()),
    );
    Ok(resp)
}

/// One round of fetches from the positions; records up to `max_bytes` of
/// keys and values (at least one), positions advanced past them.
async fn poll(
    inst: &mut Instance,
    client: &Client,
    timeout_ms: u64,
    max_bytes: usize,
) -> RestResult<Vec<Value>> {
    let mut by_leader: BTreeMap<i32, Vec<FetchTarget>> = BTreeMap::new();
    let topics: BTreeSet<String> = inst.assigned.iter().map(|(t, _)| t.clone()).collect();
    let mut ids = HashMap::new();
    for t in &topics {
        let meta = client
            .topic_metadata(t, false)
            .await
            .map_err(|e| RestError::kafka(&e, Some(t)))?;
        ids.insert(t.clone(), meta);
    }
    let per_partition = i32::try_from(max_bytes.min(8 * 1024 * 1024)).unwrap_or(i32::MAX);
    for (t, p) in &inst.assigned {
        let Some(meta) = ids.get(t) else { continue };
        let Some(pm) = meta.partition(*p) else {
            continue;
        };
        let Some(offset) = inst.positions.get(&(t.clone(), *p)) else {
            continue;
        };
        by_leader.entry(pm.leader).or_default().push(FetchTarget {
            topic: t.clone(),
            topic_id: meta.id,
            partition: *p,
            offset: *offset,
            max_bytes: per_partition,
        });
    }
    let mut out = Vec::new();
    let mut size = 0usize;
    let wait_ms = i32::try_from(timeout_ms).unwrap_or(i32::MAX);
    let total = i32::try_from(max_bytes).unwrap_or(i32::MAX);
    for (leader, targets) in by_leader {
        if leader < 0 {
            continue;
        }
        let fetched = client
            .fetch(leader, &targets, wait_ms, total)
            .await
            .map_err(|e| RestError::kafka(&e, None))?;
        for fp in fetched {
            let key = (fp.topic.clone(), fp.partition);
            if fp.error_code == KafkaCode::OFFSET_OUT_OF_RANGE {
                inst.positions.remove(&key);
                continue;
            }
            if fp.error_code != 0 {
                continue;
            }
            let mut next = None;
            for r in &fp.records {
                let len =
                    r.key.as_ref().map_or(0, |b| b.len()) + r.value.as_ref().map_or(0, |b| b.len());
                if !out.is_empty() && size + len > max_bytes {
                    break;
                }
                let key_v = embedded::encode_data(inst.format, &r.key).map_err(|e| {
                    RestError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        crate::error::KAFKA_ERROR,
                        format!(
                            "the key at offset {} of {}-{} is {e}",
                            r.offset, fp.topic, fp.partition
                        ),
                    )
                })?;
                let value_v = embedded::encode_data(inst.format, &r.value).map_err(|e| {
                    RestError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        crate::error::KAFKA_ERROR,
                        format!(
                            "the value at offset {} of {}-{} is {e}",
                            r.offset, fp.topic, fp.partition
                        ),
                    )
                })?;
                let mut rec = json!({
                    "topic": fp.topic,
                    "key": key_v,
                    "value": value_v,
                    "partition": fp.partition,
                    "offset": r.offset,
                });
                if !r.headers.is_empty() {
                    rec["headers"] = embedded::encode_headers(r);
                }
                out.push(rec);
                size += len;
                next = Some(r.offset + 1);
            }
            match next {
                Some(n) => {
                    inst.positions.insert(key, n);
                }
                None if fp.records.is_empty() => {
                    // Only control batches or aborted data: step over them.
                    if let Some(n) = fp.next_offset {
                        inst.positions.insert(key, n);
                    }
                }
                None => {}
            }
        }
    }
    Ok(out)
}
