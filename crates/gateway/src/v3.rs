//! REST Proxy v3 basics: clusters, topics (list, create, delete),
//! partitions, and producing records (one JSON record, or several
//! concatenated in one body, each answered with its own result).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use strom_client::{KafkaCode, NewTopic, ProduceRecord, TopicMeta};

use crate::embedded::{self, HeaderIn};
use crate::error::{RestError, RestResult, V3_JSON};
use crate::{read_body, Gateway};

pub fn routes() -> Router<Arc<Gateway>> {
    let c = "/v3/clusters/{cluster}";
    Router::new()
        .route("/v3/clusters", get(list_clusters))
        .route(c, get(get_cluster))
        .route(&format!("{c}/topics"), get(list_topics).post(create_topic))
        .route(
            &format!("{c}/topics/{{topic}}"),
            get(get_topic).delete(delete_topic),
        )
        .route(
            &format!("{c}/topics/{{topic}}/partitions"),
            get(list_partitions),
        )
        .route(
            &format!("{c}/topics/{{topic}}/partitions/{{partition}}"),
            get(get_partition),
        )
        .route(
            &format!("{c}/topics/{{topic}}/records"),
            axum::routing::post(produce),
        )
}

fn v3_response(status: StatusCode, value: &Value) -> Response {
    let mut resp = (status, value.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V3_JSON));
    resp
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/v3")
}

/// The cluster's id, checked against the path's.
async fn cluster_id(gw: &Gateway, asked: Option<&str>) -> RestResult<String> {
    // A cluster keeps its id: asked once, not on every produce.
    let id = gw
        .cluster_id
        .get_or_try_init(|| async {
            let client = gw.client().await?;
            let info = client
                .describe_cluster()
                .await
                .map_err(|e| RestError::kafka(&e, None))?;
            Ok::<String, RestError>(info.cluster_id.unwrap_or_default())
        })
        .await?
        .clone();
    match asked {
        Some(a) if a != id => Err(RestError::status(
            StatusCode::NOT_FOUND,
            format!("Cluster {a} cannot be found."),
        )),
        _ => Ok(id),
    }
}

fn related(url: String) -> Value {
    json!({ "related": url })
}

fn cluster_json(base: &str, id: &str, controller: i32) -> Value {
    let me = format!("{base}/clusters/{id}");
    json!({
        "kind": "KafkaCluster",
        "metadata": {"self": me, "resource_name": format!("crn:///kafka={id}")},
        "cluster_id": id,
        "controller": related(format!("{me}/brokers/{controller}")),
        "acls": related(format!("{me}/acls")),
        "brokers": related(format!("{me}/brokers")),
        "broker_configs": related(format!("{me}/broker-configs")),
        "consumer_groups": related(format!("{me}/consumer-groups")),
        "topics": related(format!("{me}/topics")),
        "partition_reassignments": related(format!("{me}/topics/-/partitions/-/reassignment")),
    })
}

async fn list_clusters(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> RestResult<Response> {
    let base = base_url(&headers);
    let id = cluster_id(&gw, None).await?;
    let controller = gw.client().await?.cached_controller();
    Ok(v3_response(
        StatusCode::OK,
        &json!({
            "kind": "KafkaClusterList",
            "metadata": {"self": format!("{base}/clusters"), "next": null},
            "data": [cluster_json(&base, &id, controller)],
        }),
    ))
}

async fn get_cluster(
    State(gw): State<Arc<Gateway>>,
    Path(cluster): Path<String>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let controller = gw.client().await?.cached_controller();
    Ok(v3_response(
        StatusCode::OK,
        &cluster_json(&base_url(&headers), &id, controller),
    ))
}

fn topic_json(base: &str, cluster: &str, t: &TopicMeta) -> Value {
    let me = format!("{base}/clusters/{cluster}/topics/{}", t.name);
    json!({
        "kind": "KafkaTopic",
        "metadata": {
            "self": me,
            "resource_name": format!("crn:///kafka={cluster}/topic={}", t.name),
        },
        "cluster_id": cluster,
        "topic_name": t.name,
        "is_internal": t.internal,
        "replication_factor": t.replication_factor(),
        "partitions_count": t.partitions.len(),
        "partitions": related(format!("{me}/partitions")),
        "configs": related(format!("{me}/configs")),
        "partition_reassignments": related(format!("{me}/partitions/-/reassignment")),
    })
}

async fn list_topics(
    State(gw): State<Arc<Gateway>>,
    Path(cluster): Path<String>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let base = base_url(&headers);
    let md = gw
        .client()
        .await?
        .metadata(None, false)
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    let mut topics = md.topics;
    topics.retain(|t| crate::auth::visible_topic(&gw, caller.as_deref(), &t.name));
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v3_response(
        StatusCode::OK,
        &json!({
            "kind": "KafkaTopicList",
            "metadata": {"self": format!("{base}/clusters/{id}/topics"), "next": null},
            "data": topics.iter().map(|t| topic_json(&base, &id, t)).collect::<Vec<_>>(),
        }),
    ))
}

/// Kafka's code for a topic name it refuses.
const INVALID_TOPIC_EXCEPTION: i16 = 17;

fn topic_not_found_v3(topic: &str) -> RestError {
    RestError::status(
        StatusCode::NOT_FOUND,
        format!("This server does not host this topic-partition: {topic}"),
    )
}

async fn meta_v3(gw: &Gateway, topic: &str) -> RestResult<TopicMeta> {
    gw.client()
        .await?
        .topic_metadata(topic, false)
        .await
        .map_err(|e| match e.code() {
            // A name Kafka calls invalid names no topic there is.
            Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION | INVALID_TOPIC_EXCEPTION) => {
                topic_not_found_v3(topic)
            }
            _ => RestError::kafka(&e, None),
        })
}

async fn get_topic(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let meta = meta_v3(&gw, &topic).await?;
    Ok(v3_response(
        StatusCode::OK,
        &topic_json(&base_url(&headers), &id, &meta),
    ))
}

#[derive(Deserialize)]
struct ConfigIn {
    name: String,
    value: Option<String>,
}

#[derive(Deserialize)]
struct CreateTopicBody {
    topic_name: String,
    #[serde(default)]
    partitions_count: Option<i32>,
    #[serde(default)]
    replication_factor: Option<i16>,
    #[serde(default, deserialize_with = "crate::objects")]
    configs: Vec<ConfigIn>,
}

async fn create_topic(
    State(gw): State<Arc<Gateway>>,
    Path(cluster): Path<String>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    embedded::check_json_body(&headers)?;
    let bytes = read_body(&gw, &headers, body).await?;
    let req: CreateTopicBody = crate::parse_json(&bytes)?;
    if let Some(c) = caller.as_deref() {
        // CreateTopics: CREATE on the cluster, or else on the topic.
        use strom_security::authorizer::{AclOperation, ResourceType, CLUSTER_NAME};
        let cluster_ok = crate::auth::allowed(
            &gw,
            c,
            AclOperation::Create,
            ResourceType::Cluster,
            CLUSTER_NAME,
        );
        if !cluster_ok {
            crate::auth::authorize(
                &gw,
                c,
                AclOperation::Create,
                ResourceType::Topic,
                &req.topic_name,
            )?;
        }
    }
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let client = gw.client().await?;
    let topic = NewTopic {
        name: req.topic_name.clone(),
        partitions: req.partitions_count.unwrap_or(-1),
        replication_factor: req.replication_factor.unwrap_or(-1),
        configs: req
            .configs
            .into_iter()
            .filter_map(|c| c.value.map(|v| (c.name, v)))
            .collect(),
    };
    let created = client
        .create_topics(std::slice::from_ref(&topic), false)
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    match created.into_iter().next() {
        Some(Ok(_)) => {}
        Some(Err(e)) if e.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                40002,
                format!("Topic '{}' already exists.", topic.name),
            ))
        }
        Some(Err(e)) if e.code().is_some() => {
            return Err(RestError::bad_request(e.to_string()));
        }
        Some(Err(e)) => return Err(RestError::kafka(&e, None)),
        None => {
            return Err(RestError::kafka(
                &strom_client::Error::Other("no answer".into()),
                None,
            ))
        }
    }
    let meta = meta_v3(&gw, &topic.name).await?;
    Ok(v3_response(
        StatusCode::CREATED,
        &topic_json(&base_url(&headers), &id, &meta),
    ))
}

async fn delete_topic(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic)): Path<(String, String)>,
) -> RestResult<Response> {
    cluster_id(&gw, Some(&cluster)).await?;
    let client = gw.client().await?;
    let deleted = client
        .delete_topics(std::slice::from_ref(&topic))
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    match deleted.into_iter().next() {
        Some(Ok(())) => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(Err(e))
            if matches!(
                e.code(),
                Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION | INVALID_TOPIC_EXCEPTION)
            ) =>
        {
            Err(topic_not_found_v3(&topic))
        }
        Some(Err(e)) => Err(RestError::kafka(&e, None)),
        None => Err(topic_not_found_v3(&topic)),
    }
}

fn partition_json(
    base: &str,
    cluster: &str,
    topic: &str,
    p: &strom_client::PartitionMeta,
) -> Value {
    let me = format!(
        "{base}/clusters/{cluster}/topics/{topic}/partitions/{}",
        p.partition
    );
    json!({
        "kind": "KafkaPartition",
        "metadata": {
            "self": me,
            "resource_name": format!("crn:///kafka={cluster}/topic={topic}/partition={}", p.partition),
        },
        "cluster_id": cluster,
        "topic_name": topic,
        "partition_id": p.partition,
        "leader": related(format!("{me}/replicas/{}", p.leader)),
        "replicas": related(format!("{me}/replicas")),
        "reassignment": related(format!("{me}/reassignment")),
    })
}

async fn list_partitions(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let meta = meta_v3(&gw, &topic).await?;
    let base = base_url(&headers);
    Ok(v3_response(
        StatusCode::OK,
        &json!({
            "kind": "KafkaPartitionList",
            "metadata": {"self": format!("{base}/clusters/{id}/topics/{topic}/partitions"), "next": null},
            "data": meta.partitions.iter().map(|p| partition_json(&base, &id, &topic, p)).collect::<Vec<_>>(),
        }),
    ))
}

async fn get_partition(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic, partition)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let meta = meta_v3(&gw, &topic).await?;
    let p = partition
        .parse::<i32>()
        .ok()
        .and_then(|p| meta.partition(p))
        .ok_or_else(|| topic_not_found_v3(&format!("{topic}-{partition}")))?;
    Ok(v3_response(
        StatusCode::OK,
        &partition_json(&base_url(&headers), &id, &topic, p),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataIn {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct RecordIn {
    #[serde(default)]
    partition_id: Option<i32>,
    #[serde(default, deserialize_with = "crate::objects")]
    headers: Vec<HeaderIn>,
    #[serde(default)]
    key: Option<DataIn>,
    #[serde(default)]
    value: Option<DataIn>,
    /// RFC 3339 in v3; milliseconds are taken too.
    #[serde(default)]
    timestamp: Option<Value>,
}

/// A v3 key or value: BINARY (base64), JSON (any JSON value) or STRING;
/// returns the bytes and the type's name.
fn decode_v3(what: &str, d: &Option<DataIn>) -> RestResult<(Option<Bytes>, Option<&'static str>)> {
    let Some(d) = d else { return Ok((None, None)) };
    let kind = d.kind.as_deref().unwrap_or("JSON").to_ascii_uppercase();
    match (kind.as_str(), &d.data) {
        (_, Value::Null) => Ok((None, Some(type_name(&kind)?))),
        ("BINARY", Value::String(s)) => Ok((
            Some(embedded::decode_base64(what, s)?),
            Some("BINARY"),
        )),
        ("BINARY", _) => Err(RestError::bad_request(format!(
            "{what}: BINARY data must be a base64 string"
        ))),
        ("STRING", Value::String(s)) => Ok((Some(Bytes::from(s.clone())), Some("STRING"))),
        ("STRING", _) => Err(RestError::bad_request(format!(
            "{what}: STRING data must be a string"
        ))),
        ("JSON", v) => Ok((
            Some(Bytes::from(v.to_string())),
            Some("JSON"),
        )),
        (other, _) => Err(RestError::bad_request(format!(
            "{what}: type {other} is not supported (BINARY, JSON or STRING; schemas need a schema registry)"
        ))),
    }
}

fn type_name(kind: &str) -> RestResult<&'static str> {
    match kind {
        "BINARY" => Ok("BINARY"),
        "JSON" => Ok("JSON"),
        "STRING" => Ok("STRING"),
        other => Err(RestError::bad_request(format!(
            "type {other} is not supported (BINARY, JSON or STRING)"
        ))),
    }
}

fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

async fn produce_one(
    gw: &Gateway,
    cluster: &str,
    topic: &str,
    meta: &TopicMeta,
    r: RecordIn,
) -> Value {
    let failure = |e: RestError| json!({"error_code": e.error_code, "message": e.message});
    let (key, key_type) = match decode_v3("key", &r.key) {
        Ok(k) => k,
        Err(e) => return failure(e),
    };
    let (value, value_type) = match decode_v3("value", &r.value) {
        Ok(v) => v,
        Err(e) => return failure(e),
    };
    let headers = match embedded::decode_headers(&r.headers) {
        Ok(h) => h,
        Err(e) => return failure(RestError::bad_request(e.message)),
    };
    let timestamp = match &r.timestamp {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => match crate::stream::parse_from(s) {
            Ok(crate::stream::From::Spec(strom_client::OffsetSpec::Timestamp(ms))) => Some(ms),
            _ => {
                return failure(RestError::bad_request(format!(
                    "timestamp {s:?} is not RFC 3339"
                )))
            }
        },
        Some(_) => {
            return failure(RestError::bad_request(
                "timestamp must be an RFC 3339 string",
            ))
        }
    };
    let partitions = meta.partitions.len() as i32;
    let partition = match (r.partition_id, &key) {
        (Some(p), _) if meta.partition(p).is_some() => p,
        (Some(p), _) => {
            return failure(RestError::status(
                StatusCode::NOT_FOUND,
                format!("This server does not host this topic-partition: {topic}-{p}"),
            ))
        }
        (None, Some(k)) => strom_client::partition_for_key(k, partitions.max(1)),
        (None, None) => {
            (gw.next_partition
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % partitions.max(1) as usize) as i32
        }
    };
    let key_size = key.as_ref().map_or(0, Bytes::len);
    let value_size = value.as_ref().map_or(0, Bytes::len);
    let record = ProduceRecord {
        partition: Some(partition),
        key,
        value,
        headers,
        timestamp,
    };
    let ts = timestamp.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    });
    let client = match gw.client().await {
        Ok(c) => c,
        Err(e) => return failure(e),
    };
    let offset = match gw
        .batcher
        .produce(&client, topic, partition, vec![record])
        .await
    {
        Ok(o) => o,
        Err(e) => return failure(RestError::kafka(&e, Some(topic))),
    };
    let mut out = json!({
        "error_code": 200,
        "cluster_id": cluster,
        "topic_name": topic,
        "partition_id": partition,
        "offset": offset,
        "timestamp": rfc3339(ts),
    });
    if let Some(t) = key_type {
        out["key"] = json!({"type": t, "size": key_size});
    }
    if let Some(t) = value_type {
        out["value"] = json!({"type": t, "size": value_size});
    }
    out
}

/// One record per JSON value of the body: a single object is answered with
/// one result (HTTP status from it), several concatenated ones (v3's
/// streaming mode) with one result each, in order, HTTP 200.
async fn produce(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    embedded::check_json_body(&headers)?;
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let meta = match crate::v2::produce_meta(&gw, &topic, std::iter::empty()).await {
        Ok(m) => m,
        Err(e) if e.error_code == crate::error::TOPIC_NOT_FOUND => {
            return Err(topic_not_found_v3(&topic))
        }
        Err(e) => return Err(e),
    };
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return Ok(produce_streaming(gw, id, topic, meta, body));
    }
    let bytes = read_body(&gw, &headers, body).await?;
    let mut records = Vec::new();
    for item in serde_json::Deserializer::from_slice(&bytes).into_iter::<RecordIn>() {
        match item {
            Ok(r) => records.push(r),
            Err(e) => {
                return Err(RestError::bad_request(format!(
                    "record {} of the body: {e}",
                    records.len()
                )))
            }
        }
        if records.len() > gw.config.max_records_per_request {
            return Err(RestError::unprocessable(format!(
                "more than {} records in one request",
                gw.config.max_records_per_request
            )));
        }
    }
    if records.is_empty() {
        return Err(RestError::bad_request("the request has no record"));
    }
    let single = records.len() == 1;
    let mut answers = Vec::with_capacity(records.len());
    for r in records {
        answers.push(produce_one(&gw, &id, &topic, &meta, r).await);
    }
    if single {
        let a = &answers[0];
        let code = a["error_code"].as_u64().unwrap_or(500);
        // Sub-coded errors (40401) carry their HTTP status in front.
        let http = if code >= 10_000 { code / 100 } else { code };
        let status = u16::try_from(http)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(v3_response(status, a));
    }
    let text: String = answers.iter().map(|a| a.to_string() + "\n").collect();
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V3_JSON));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_print_as_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_005_123), "2023-11-14T22:13:25.123Z");
        assert_eq!(rfc3339(951_868_800_000), "2000-03-01T00:00:00.000Z");
    }
}

pub fn group_routes() -> Router<Arc<Gateway>> {
    let g = "/v3/clusters/{cluster}/consumer-groups";
    Router::new()
        .route(g, get(list_groups))
        .route(&format!("{g}/{{group}}"), get(get_group))
        .route(&format!("{g}/{{group}}/lags"), get(group_lags))
        .route(
            &format!("{g}/{{group}}/lag-summary"),
            get(group_lag_summary),
        )
}

fn group_json(base: &str, cluster: &str, g: &strom_client::GroupDescription) -> Value {
    let me = format!("{base}/clusters/{cluster}/consumer-groups/{}", g.group_id);
    json!({
        "kind": "KafkaConsumerGroup",
        "metadata": {
            "self": me,
            "resource_name": format!("crn:///kafka={cluster}/consumer-group={}", g.group_id),
        },
        "cluster_id": cluster,
        "consumer_group_id": g.group_id,
        "is_simple": g.protocol_type.is_empty(),
        "partition_assignor": g.protocol,
        "state": g.state.to_ascii_uppercase(),
        "coordinator": related(format!("{base}/clusters/{cluster}/brokers/{}", g.coordinator.node_id)),
        "consumer": related(format!("{me}/consumers")),
        "lag_summary": related(format!("{me}/lag-summary")),
    })
}

async fn describe(gw: &Gateway, group: &str) -> RestResult<strom_client::GroupDescription> {
    let client = gw.client().await?;
    let not_found = || {
        RestError::status(
            StatusCode::NOT_FOUND,
            format!("Consumer group {group} could not be found."),
        )
    };
    let g = client.describe_group(group).await.map_err(|e| {
        if e.code() == Some(KafkaCode::GROUP_ID_NOT_FOUND) {
            not_found()
        } else {
            RestError::kafka(&e, None)
        }
    })?;
    if g.state.eq_ignore_ascii_case("dead") {
        return Err(not_found());
    }
    Ok(g)
}

async fn list_groups(
    State(gw): State<Arc<Gateway>>,
    Path(cluster): Path<String>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let base = base_url(&headers);
    let client = gw.client().await?;
    let mut listed = client
        .list_groups()
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    // As ListGroups leaves out the groups the principal may not describe.
    listed.retain(|g| {
        caller.as_deref().is_none_or(|c| {
            crate::auth::allowed(
                &gw,
                c,
                strom_security::authorizer::AclOperation::Describe,
                strom_security::authorizer::ResourceType::Group,
                &g.group_id,
            )
        })
    });
    listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let mut data = Vec::new();
    for l in listed {
        if let Ok(g) = describe(&gw, &l.group_id).await {
            data.push(group_json(&base, &id, &g));
        }
    }
    Ok(v3_response(
        StatusCode::OK,
        &json!({
            "kind": "KafkaConsumerGroupList",
            "metadata": {"self": format!("{base}/clusters/{id}/consumer-groups"), "next": null},
            "data": data,
        }),
    ))
}

async fn get_group(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let g = describe(&gw, &group).await?;
    Ok(v3_response(
        StatusCode::OK,
        &group_json(&base_url(&headers), &id, &g),
    ))
}

struct Lag {
    topic: String,
    partition: i32,
    current: i64,
    end: i64,
    member: Option<(String, Option<String>, String)>,
}

/// Per partition with a committed offset: the committed offset, the log
/// end offset, and the member it is assigned to.
async fn lags(gw: &Gateway, group: &str) -> RestResult<(strom_client::GroupDescription, Vec<Lag>)> {
    let g = describe(gw, group).await?;
    let client = gw.client().await?;
    let committed = client
        .fetch_committed(group, None)
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    let mut out = Vec::new();
    for (topic, parts) in committed {
        let ps: Vec<i32> = parts
            .iter()
            .filter(|(_, o)| **o >= 0)
            .map(|(p, _)| *p)
            .collect();
        if ps.is_empty() {
            continue;
        }
        let ends = client
            .list_offsets(&topic, &ps, strom_client::OffsetSpec::Latest)
            .await
            .map_err(|e| RestError::kafka(&e, None))?;
        for p in ps {
            let Some(Ok(end)) = ends.get(&p) else {
                continue;
            };
            let member = g
                .members
                .iter()
                .find(|m| m.assignment.get(&topic).is_some_and(|a| a.contains(&p)));
            out.push(Lag {
                topic: topic.clone(),
                partition: p,
                current: parts.get(&p).copied().unwrap_or(0),
                end: end.offset,
                member: member.map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                    )
                }),
            });
        }
    }
    Ok((g, out))
}

fn lag_of(l: &Lag) -> i64 {
    (l.end - l.current).max(0)
}

async fn group_lags(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let base = base_url(&headers);
    let (_, lags) = lags(&gw, &group).await?;
    let me = format!("{base}/clusters/{id}/consumer-groups/{group}/lags");
    let data: Vec<Value> = lags
        .iter()
        .map(|l| {
            let (consumer, instance, client) = l.member.clone().unwrap_or_default();
            json!({
                "kind": "KafkaConsumerLag",
                "metadata": {"self": format!("{me}/{}/partitions/{}", l.topic, l.partition)},
                "cluster_id": id,
                "consumer_group_id": group,
                "topic_name": l.topic,
                "partition_id": l.partition,
                "current_offset": l.current,
                "log_end_offset": l.end,
                "lag": lag_of(l),
                "consumer_id": consumer,
                "instance_id": instance,
                "client_id": client,
            })
        })
        .collect();
    Ok(v3_response(
        StatusCode::OK,
        &json!({"kind": "KafkaConsumerLagList", "metadata": {"self": me, "next": null}, "data": data}),
    ))
}

async fn group_lag_summary(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let base = base_url(&headers);
    let (_, lags) = lags(&gw, &group).await?;
    let total: i64 = lags.iter().map(lag_of).sum();
    let max = lags.iter().max_by_key(|l| lag_of(l));
    let me = format!("{base}/clusters/{id}/consumer-groups/{group}");
    let (consumer, instance, client) = max.and_then(|l| l.member.clone()).unwrap_or_default();
    Ok(v3_response(
        StatusCode::OK,
        &json!({
            "kind": "KafkaConsumerGroupLagSummary",
            "metadata": {"self": format!("{me}/lag-summary")},
            "cluster_id": id,
            "consumer_group_id": group,
            "max_lag_consumer_id": consumer,
            "max_lag_instance_id": instance,
            "max_lag_client_id": client,
            "max_lag_topic_name": max.map(|l| l.topic.clone()).unwrap_or_default(),
            "max_lag_partition_id": max.map_or(0, |l| l.partition),
            "max_lag": max.map_or(0, lag_of),
            "total_lag": total,
            "max_lag_consumer": related(format!("{me}/consumers/{consumer}")),
            "max_lag_partition": related(format!(
                "{base}/clusters/{id}/topics/{}/partitions/{}",
                max.map(|l| l.topic.clone()).unwrap_or_default(),
                max.map_or(0, |l| l.partition)
            )),
        }),
    ))
}

pub fn config_routes() -> Router<Arc<Gateway>> {
    let t = "/v3/clusters/{cluster}/topics/{topic}/configs";
    Router::new().route(t, get(list_configs)).route(
        &format!("{t}/{{name}}"),
        get(get_config).put(set_config).delete(reset_config),
    )
}

const RESOURCE_TOPIC: i8 = 2;

fn config_json(base: &str, cluster: &str, topic: &str, e: &strom_client::ConfigEntry) -> Value {
    json!({
        "kind": "KafkaTopicConfig",
        "metadata": {
            "self": format!("{base}/clusters/{cluster}/topics/{topic}/configs/{}", e.name),
            "resource_name": format!("crn:///kafka={cluster}/topic={topic}/config={}", e.name),
        },
        "cluster_id": cluster,
        "topic_name": topic,
        "name": e.name,
        "value": if e.sensitive { None } else { e.value.clone() },
        "is_default": e.source == 5,
        "is_read_only": e.read_only,
        "is_sensitive": e.sensitive,
        "source": e.source_name(),
        "synonyms": [],
    })
}

async fn topic_configs(gw: &Gateway, topic: &str) -> RestResult<Vec<strom_client::ConfigEntry>> {
    meta_v3(gw, topic).await?;
    let client = gw.client().await?;
    let described = client
        .describe_configs(RESOURCE_TOPIC, &[topic.to_string()])
        .await
        .map_err(|e| RestError::kafka(&e, None))?;
    match described.into_iter().next() {
        Some(Ok(entries)) => Ok(entries),
        Some(Err(e)) => Err(RestError::kafka(&e, None)),
        None => Err(topic_not_found_v3(topic)),
    }
}

async fn list_configs(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic)): Path<(String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let base = base_url(&headers);
    let entries = topic_configs(&gw, &topic).await?;
    Ok(v3_response(
        StatusCode::OK,
        &json!({
            "kind": "KafkaTopicConfigList",
            "metadata": {"self": format!("{base}/clusters/{id}/topics/{topic}/configs"), "next": null},
            "data": entries.iter().map(|e| config_json(&base, &id, &topic, e)).collect::<Vec<_>>(),
        }),
    ))
}

async fn get_config(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> RestResult<Response> {
    let id = cluster_id(&gw, Some(&cluster)).await?;
    let entries = topic_configs(&gw, &topic).await?;
    let e = entries.iter().find(|e| e.name == name).ok_or_else(|| {
        RestError::status(
            StatusCode::NOT_FOUND,
            format!("Config {name} cannot be found for topic {topic}."),
        )
    })?;
    Ok(v3_response(
        StatusCode::OK,
        &config_json(&base_url(&headers), &id, &topic, e),
    ))
}

#[derive(Deserialize)]
struct ConfigValue {
    value: String,
}

async fn alter(gw: &Gateway, topic: &str, op: strom_client::ConfigOp) -> RestResult<Response> {
    meta_v3(gw, topic).await?;
    let client = gw.client().await?;
    client
        .incremental_alter_configs(RESOURCE_TOPIC, topic, &[op])
        .await
        .map_err(|e| match e.code() {
            Some(_) => RestError::bad_request(e.to_string()),
            None => RestError::kafka(&e, None),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_config(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<Response> {
    embedded::check_json_body(&headers)?;
    let bytes = read_body(&gw, &headers, body).await?;
    let req: ConfigValue = crate::parse_json(&bytes)?;
    cluster_id(&gw, Some(&cluster)).await?;
    alter(&gw, &topic, strom_client::ConfigOp::Set(name, req.value)).await
}

async fn reset_config(
    State(gw): State<Arc<Gateway>>,
    Path((cluster, topic, name)): Path<(String, String, String)>,
) -> RestResult<Response> {
    cluster_id(&gw, Some(&cluster)).await?;
    alter(&gw, &topic, strom_client::ConfigOp::Delete(name)).await
}

/// Records a streaming request may have in flight before its body is read further.
const STREAM_IN_FLIGHT: usize = 1024;

/// v3's streaming mode (`Transfer-Encoding: chunked`): records are read as
/// they arrive, one JSON value after another, produced (pipelined), and
/// each answered on its own line, in order, as soon as it is done. Each
/// record may be up to the request size limit; the stream as a whole is not
/// bounded.
fn produce_streaming(
    gw: Arc<Gateway>,
    cluster: String,
    topic: String,
    meta: TopicMeta,
    body: Body,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let limit = gw.config.max_request_bytes;
        let mut input = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        let mut in_flight = futures_util::stream::FuturesOrdered::new();
        let mut reading = true;
        let (gw, cluster, topic, meta) = (&gw, &cluster, &topic, &meta);
        loop {
            // Every complete record in the buffer goes out.
            while in_flight.len() < STREAM_IN_FLIGHT {
                let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<RecordIn>();
                match values.next() {
                    Some(Ok(r)) => {
                        let used = values.byte_offset();
                        bytes::Buf::advance(&mut buf, used);
                        in_flight.push_back(produce_one(gw, cluster, topic, meta, r));
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    None => {
                        buf.clear(); // only whitespace
                        break;
                    }
                    Some(Err(e)) => {
                        let bad = RestError::bad_request(format!("a record of the stream: {e}"));
                        let _ = tx
                            .send(Ok(Bytes::from(bad.body().to_string() + "\n")))
                            .await;
                        reading = false;
                        buf.clear();
                        break;
                    }
                }
            }
            if !reading && in_flight.is_empty() {
                return;
            }
            tokio::select! {
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                    let answer: Value = answer;
                    if tx.send(Ok(Bytes::from(answer.to_string() + "\n"))).await.is_err() {
                        return;
                    }
                }
                chunk = input.next(), if reading && in_flight.len() < STREAM_IN_FLIGHT => match chunk {
                    Some(Ok(c)) => {
                        if buf.len() + c.len() > limit {
                            let big = RestError::status(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                format!("a record of the stream is larger than {limit} bytes"),
                            );
                            let _ = tx.send(Ok(Bytes::from(big.body().to_string() + "\n"))).await;
                            reading = false;
                            buf.clear();
                        } else {
                            buf.extend_from_slice(&c);
                        }
                    }
                    Some(Err(_)) | None => reading = false,
                },
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V3_JSON));
    resp
}
