//! REST Proxy v2: topics, partitions, brokers and produce.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use strom_client::{partition_for_key, OffsetSpec, ProduceRecord, TopicMeta};

use crate::embedded::{self, Format, HeaderIn};
use crate::error::{RestError, RestResult};
use crate::{json_response, parse_json, read_body, Gateway};

/// DescribeConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/topics", get(list_topics))
        .route("/topics/{topic}", get(get_topic).post(produce_topic))
        .route("/topics/{topic}/partitions", get(list_partitions))
        .route(
            "/topics/{topic}/partitions/{partition}",
            get(get_partition).post(produce_partition),
        )
        .route(
            "/topics/{topic}/partitions/{partition}/offsets",
            get(partition_offsets),
        )
        .route("/brokers", get(list_brokers))
}

async fn list_topics(
    State(gw): State<Arc<Gateway>>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> RestResult<Response> {
    let client = gw.client().await?;
    let md = client
        .metadata(None, false)
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    // As Metadata leaves out the topics the principal may not describe.
    let mut names: Vec<&str> = md
        .topics
        .iter()
        .map(|t| t.name.as_str())
        .filter(|t| crate::auth::visible_topic(&gw, caller.as_deref(), t))
        .collect();
    names.sort_unstable();
    Ok(json_response(StatusCode::OK, &json!(names)))
}

/// The topic's metadata; 404 (40401) when it does not exist.
pub(crate) async fn topic_meta(gw: &Gateway, topic: &str) -> RestResult<TopicMeta> {
    let client = gw.client().await?;
    client
        .topic_metadata(topic, false)
        .await
        .map_err(|e| RestError::kafka(&e, Some(topic)))
}

/// The topic's metadata for a produce: the client's cache when it knows the
/// topic and every partition named (a metadata request would queue behind
/// produce requests waiting for their fsync on the broker's connection),
/// else a metadata request, which creates the topic when the cluster
/// auto-creates topics, as a Kafka producer's does.
pub(crate) async fn produce_meta(
    gw: &Gateway,
    topic: &str,
    mut named: impl Iterator<Item = i32>,
) -> RestResult<TopicMeta> {
    let client = gw.client().await?;
    if let Some(m) = client.cached_topic(topic) {
        if m.is_ready() && named.all(|p| m.partition(p).is_some()) {
            return Ok(m);
        }
    }
    client
        .topic_metadata(topic, true)
        .await
        .map_err(|e| RestError::kafka(&e, Some(topic)))
}

fn partition_json(p: &strom_client::PartitionMeta) -> Value {
    json!({
        "partition": p.partition,
        "leader": p.leader,
        "replicas": p.replicas.iter().map(|r| json!({
            "broker": r,
            "leader": *r == p.leader,
            "in_sync": p.isr.contains(r),
        })).collect::<Vec<_>>(),
    })
}

async fn get_topic(
    State(gw): State<Arc<Gateway>>,
    Path(topic): Path<String>,
) -> RestResult<Response> {
    let meta = topic_meta(&gw, &topic).await?;
    let client = gw.client().await?;
    let mut configs = BTreeMap::new();
    let described = client
        .describe_configs(RESOURCE_TOPIC, std::slice::from_ref(&topic))
        .await
        .map_err(|e| RestError::kafka(&e, Some(&topic)))?;
    if let Some(Ok(entries)) = described.into_iter().next() {
        for e in entries {
            configs.insert(e.name, e.value);
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "name": meta.name,
            "configs": configs,
            "partitions": meta.partitions.iter().map(partition_json).collect::<Vec<_>>(),
        }),
    ))
}

async fn list_partitions(
    State(gw): State<Arc<Gateway>>,
    Path(topic): Path<String>,
) -> RestResult<Response> {
    let meta = topic_meta(&gw, &topic).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!(meta
            .partitions
            .iter()
            .map(partition_json)
            .collect::<Vec<_>>()),
    ))
}

fn find_partition<'a>(
    meta: &'a TopicMeta,
    partition: &str,
) -> RestResult<&'a strom_client::PartitionMeta> {
    partition
        .parse::<i32>()
        .ok()
        .and_then(|p| meta.partition(p))
        .ok_or_else(|| {
            RestError::partition_not_found(&meta.name, partition.parse::<i32>().unwrap_or(-1))
        })
}

async fn get_partition(
    State(gw): State<Arc<Gateway>>,
    Path((topic, partition)): Path<(String, String)>,
) -> RestResult<Response> {
    let meta = topic_meta(&gw, &topic).await?;
    let p = find_partition(&meta, &partition)?;
    Ok(json_response(StatusCode::OK, &partition_json(p)))
}

async fn partition_offsets(
    State(gw): State<Arc<Gateway>>,
    Path((topic, partition)): Path<(String, String)>,
) -> RestResult<Response> {
    let meta = topic_meta(&gw, &topic).await?;
    let p = find_partition(&meta, &partition)?.partition;
    let client = gw.client().await?;
    let mut offsets = [0i64; 2];
    for (i, spec) in [OffsetSpec::Earliest, OffsetSpec::Latest]
        .into_iter()
        .enumerate()
    {
        let listed = client
            .list_offsets(&topic, &[p], spec)
            .await
            .map_err(|e| RestError::kafka(&e, Some(&topic)))?;
        match listed.get(&p) {
            Some(Ok(o)) => offsets[i] = o.offset,
            Some(Err(e)) => return Err(RestError::kafka(e, Some(&topic))),
            None => return Err(RestError::partition_not_found(&topic, p)),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"beginning_offset": offsets[0], "end_offset": offsets[1]}),
    ))
}

async fn list_brokers(State(gw): State<Arc<Gateway>>) -> RestResult<Response> {
    let client = gw.client().await?;
    let md = client
        .metadata(Some(&[]), false)
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id).collect();
    ids.sort_unstable();
    Ok(json_response(StatusCode::OK, &json!({"brokers": ids})))
}

#[derive(Debug, Deserialize)]
struct ProduceBody {
    records: Vec<crate::ObjectOnly<ProduceRecordIn>>,
    // Schema fields belong to the schema-based formats; they are refused
    // with the format (415) and ignored here.
    #[serde(default)]
    #[allow(dead_code)]
    key_schema: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    key_schema_id: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    value_schema: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    value_schema_id: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProduceRecordIn {
    #[serde(default)]
    key: Value,
    #[serde(default)]
    value: Value,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default, deserialize_with = "crate::objects")]
    headers: Vec<HeaderIn>,
    /// Milliseconds since the epoch (Strom's extension; now if absent).
    #[serde(default)]
    timestamp: Option<i64>,
}

async fn produce_topic(
    State(gw): State<Arc<Gateway>>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    produce(gw, topic, None, headers, body).await
}

async fn produce_partition(
    State(gw): State<Arc<Gateway>>,
    Path((topic, partition)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let p = partition
        .parse::<i32>()
        .map_err(|_| RestError::partition_not_found(&topic, -1))?;
    produce(gw, topic, Some(p), headers, body).await
}

/// Produces a request's records: each goes to its own `partition`, the
/// path's, the murmur2 partition of its key, or (keyless) one partition
/// chosen per request, round robin. The answer lists each record's
/// partition and offset, or its error, in the order given.
async fn produce(
    gw: Arc<Gateway>,
    topic: String,
    path_partition: Option<i32>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    let format = embedded::request_format(&headers)?;
    let bytes = read_body(&gw, &headers, body).await?;
    let req: ProduceBody = parse_json(&bytes)?;
    let max = gw.config.max_records_per_request;
    if req.records.len() > max {
        return Err(RestError::unprocessable(format!(
            "the request has {} records, more than the limit of {max} per request",
            req.records.len()
        )));
    }
    let records = decode_records(format, req.records.into_iter().map(|r| r.0).collect())?;
    // As a Kafka producer does, the metadata request may create the topic
    // when the cluster auto-creates topics; otherwise an unknown topic is 404.
    let meta = produce_meta(
        &gw,
        &topic,
        path_partition
            .into_iter()
            .chain(records.iter().filter_map(|(p, _)| *p)),
    )
    .await?;
    let partitions = meta.partitions.len() as i32;
    if let Some(p) = path_partition {
        if meta.partition(p).is_none() {
            return Err(RestError::partition_not_found(&topic, p));
        }
    }
    let keyless = if partitions > 0 {
        (gw.next_partition.fetch_add(1, Ordering::Relaxed) % partitions as usize) as i32
    } else {
        0
    };
    // Records per partition, each with its place in the request.
    let mut by_partition: BTreeMap<i32, Vec<(usize, ProduceRecord)>> = BTreeMap::new();
    let mut placed: Vec<(i32, usize)> = Vec::with_capacity(records.len());
    for (i, (explicit, mut r)) in records.into_iter().enumerate() {
        let p = match (path_partition, explicit, &r.key) {
            (Some(p), _, _) => p,
            (None, Some(p), _) => p,
            (None, None, Some(k)) => partition_for_key(k, partitions.max(1)),
            (None, None, None) => keyless,
        };
        r.partition = Some(p);
        let list = by_partition.entry(p).or_default();
        placed.push((p, list.len()));
        list.push((i, r));
    }
    let mut results: BTreeMap<i32, Result<i64, (u8, String)>> = BTreeMap::new();
    let mut batches = Vec::new();
    for (p, list) in by_partition {
        if meta.partition(p).is_none() {
            results.insert(
                p,
                Err((1, format!("partition {p} of topic {topic} does not exist"))),
            );
            continue;
        }
        batches.push((p, list.into_iter().map(|(_, r)| r).collect()));
    }
    let client = gw.client().await?;
    let sends = batches.into_iter().map(|(p, records)| {
        let (gw, client, topic) = (&gw, &client, &topic);
        async move { (p, gw.batcher.produce(client, topic, p, records).await) }
    });
    for (p, r) in futures_util::future::join_all(sends).await {
        // Confluent's per-record codes: 1 not retriable, 2 retriable.
        results.insert(
            p,
            r.map_err(|e| (if e.is_retriable() { 2 } else { 1 }, e.to_string())),
        );
    }
    let offsets: Vec<Value> = placed
        .iter()
        .map(|(p, index)| match results.get(p) {
            Some(Ok(base)) => json!({
                "partition": p,
                "offset": base + *index as i64,
                "error_code": null,
                "error": null,
            }),
            Some(Err((code, message))) => json!({
                "partition": p,
                "offset": null,
                "error_code": code,
                "error": message,
            }),
            None => json!({
                "partition": p,
                "offset": null,
                "error_code": 1,
                "error": "no answer from the broker",
            }),
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"offsets": offsets, "key_schema_id": null, "value_schema_id": null}),
    ))
}

pub(crate) fn decode_records(
    format: Format,
    records: Vec<ProduceRecordIn>,
) -> RestResult<Vec<(Option<i32>, ProduceRecord)>> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = embedded::decode_data(format, &format!("records[{i}].key"), &r.key)?;
            let value = embedded::decode_data(format, &format!("records[{i}].value"), &r.value)?;
            let headers = embedded::decode_headers(&r.headers)?;
            if let Some(p) = r.partition {
                if p < 0 {
                    return Err(RestError::unprocessable(format!(
                        "records[{i}].partition {p} is negative"
                    )));
                }
            }
            Ok((
                r.partition,
                ProduceRecord {
                    partition: r.partition,
                    key,
                    value,
                    headers,
                    timestamp: r.timestamp,
                },
            ))
        })
        .collect()
}
