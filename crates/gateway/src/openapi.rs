//! The OpenAPI 3 document of the gateway, served at `/openapi.json`.

use serde_json::{json, Map, Value};

fn param(name: &str, kind: &str, location: &str, required: bool, description: &str) -> Value {
    json!({
        "name": name, "in": location, "required": required,
        "description": description, "schema": {"type": kind},
    })
}

/// Topic, group and consumer instance names: 1-249 of these characters.
const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,249}$";

/// The media type of a path's successful answers: v3's JSON, the embedded
/// format of consumed records, v2's own type for the rest.
fn success_types(path: &str) -> &'static [&'static str] {
    if path.starts_with("/v3") || path == "/openapi.json" {
        &["application/json"]
    } else if path.starts_with("/consumers/") && path.ends_with("/records") {
        &[
            "application/vnd.kafka.json.v2+json",
            "application/vnd.kafka.binary.v2+json",
        ]
    } else {
        &["application/vnd.kafka.v2+json"]
    }
}

fn non_negative(mut p: Value) -> Value {
    p["schema"]["minimum"] = json!(0);
    p
}

fn formats(mut p: Value) -> Value {
    p["schema"]["enum"] = json!(["json", "binary"]);
    p
}

/// An operation whose request body may be left out.
fn optional_body(mut o: Value) -> Value {
    o["requestBody"]["required"] = json!(false);
    o
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let mut p = param(name, "string", "path", true, name);
            match name {
                "partition" => {
                    p["schema"] = json!({"type": "integer", "format": "int32", "minimum": 0});
                }
                // Kafka's topic names, and the names the gateway gives
                // consumer groups and instances.
                "topic" | "group" | "instance" => {
                    p["schema"]["pattern"] = json!(NAME_PATTERN);
                }
                _ => {}
            }
            p
        })
        .collect()
}

fn error_responses(path: &str, codes: &[&str]) -> Map<String, Value> {
    let error = json!({"schema": {"$ref": "#/components/schemas/Error"}});
    let mut content = Map::new();
    // v3 answers its errors in its own content type, v2 and the streams in v2's.
    let media = if path.starts_with("/v3") {
        "application/json"
    } else {
        "application/vnd.kafka.v2+json"
    };
    content.insert(media.to_string(), error);
    let mut m = Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({"description": "An error: error_code and message, as Confluent's REST Proxy gives them",
                   "content": content}),
        );
    }
    m
}

/// The answers authentication, the ACLs and the per-principal limits add to every operation.
const SECURITY_ERRORS: &[&str] = &["401", "403", "429"];

/// One operation: a summary, the request body's media types (if any), the
/// success status and schema, and the error statuses it may answer.
fn op(
    path: &str,
    summary: &str,
    body: Option<(&[&str], Value)>,
    ok: (&str, Value),
    errors: &[&str],
    query: Vec<Value>,
) -> Value {
    // With gateway.authentication on, any operation may be refused for its credentials
    // (401), by the ACLs (403) or for the caller's per-principal limits (429).
    let mut errors = errors.to_vec();
    for code in SECURITY_ERRORS {
        if !errors.contains(code) {
            errors.push(code);
        }
    }
    let mut responses = error_responses(path, &errors);
    let (status, schema) = ok;
    let ok_body = if schema.is_null() {
        json!({"description": "Done"})
    } else {
        let content: Map<String, Value> = success_types(path)
            .iter()
            .map(|t| ((*t).to_string(), json!({"schema": schema.clone()})))
            .collect();
        json!({"description": "Done", "content": content})
    };
    responses.insert(status.to_string(), ok_body);
    let mut params = path_params(path);
    params.extend(query);
    let mut o = json!({"summary": summary, "parameters": params, "responses": responses});
    if let Some((types, schema)) = body {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| ((*t).to_string(), json!({"schema": schema.clone()})))
            .collect();
        o["requestBody"] = json!({"required": true, "content": content});
    }
    o
}

pub fn document() -> Value {
    let any = json!({});
    let obj = json!({"type": "object"});
    let produce_types: &[&str] = &[
        "application/vnd.kafka.json.v2+json",
        "application/vnd.kafka.binary.v2+json",
    ];
    let v2_json: &[&str] = &["application/vnd.kafka.v2+json", "application/json"];
    let produce_body = json!({"$ref": "#/components/schemas/ProduceRequest"});
    let produce_ok = json!({"$ref": "#/components/schemas/ProduceResponse"});
    let int32 = json!({"type": "integer", "format": "int32"});
    let int64 = json!({"type": "integer", "format": "int64"});
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": string});
    let partition_ref = json!({"type": "object", "required": ["topic", "partition"], "properties": {
        "topic": string, "partition": {"type": "integer", "format": "int32", "minimum": 0}}});
    let partitions = json!({"type": "object", "required": ["partitions"],
        "properties": {"partitions": {"type": "array", "items": partition_ref}}});
    let offsets = json!({"type": "object", "required": ["offsets"], "properties": {"offsets": {
        "type": "array", "items": {"type": "object", "required": ["topic", "partition", "offset"], "properties": {
            "topic": string, "partition": {"type": "integer", "format": "int32", "minimum": 0},
            "offset": int64, "metadata": {"type": "string", "nullable": true}}}}}});
    let brokers = json!({"type": "object", "required": ["brokers"],
        "properties": {"brokers": {"type": "array", "items": int32}}});
    let partition_v2 = json!({"type": "object", "required": ["partition", "leader", "replicas"], "properties": {
        "partition": int32, "leader": int32, "replicas": {"type": "array", "items": {
            "type": "object", "required": ["broker", "leader", "in_sync"], "properties": {
                "broker": int32, "leader": {"type": "boolean"}, "in_sync": {"type": "boolean"}}}}}});
    let topic_v2 = json!({"type": "object", "required": ["name", "configs", "partitions"], "properties": {
        "name": string, "configs": {"type": "object", "additionalProperties": {"type": "string"}},
        "partitions": {"type": "array", "items": partition_v2}}});
    let offsets_v2 = json!({"type": "object", "required": ["beginning_offset", "end_offset"],
        "properties": {"beginning_offset": int64, "end_offset": int64}});
    let create_consumer = json!({"type": "object", "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "format": {"type": "string", "enum": ["binary", "json"]},
        "auto.offset.reset": {"type": "string", "enum": ["earliest", "latest"]},
        "auto.commit.enable": {"type": "string", "enum": ["true", "false"]},
        "consumer.request.timeout.ms": {"type": "string", "pattern": "^[0-9]{1,6}$"},
        "fetch.min.bytes": {"type": "string"}}});
    let consumer_created = json!({"type": "object", "required": ["instance_id", "base_uri"],
        "properties": {"instance_id": string, "base_uri": string}});
    let subscription = json!({"type": "object", "properties": {
        "topics": {"type": "array", "minItems": 1, "items": string}, "topic_pattern": string}});
    let subscribed =
        json!({"type": "object", "required": ["topics"], "properties": {"topics": strings}});
    let consumed = json!({"type": "array", "items": {"type": "object",
        "required": ["topic", "partition", "offset", "key", "value"], "properties": {
            "topic": string, "partition": int32, "offset": int64, "key": {"nullable": true},
            "value": {"nullable": true}, "headers": {"type": "array", "items": obj}}}});
    // v3's resources: a kind and metadata, and for lists their data.
    let v3_one = json!({"type": "object", "required": ["kind", "metadata"],
        "properties": {"kind": string, "metadata": obj}});
    let v3_list = json!({"type": "object", "required": ["kind", "metadata", "data"], "properties": {
        "kind": string, "metadata": obj, "data": {"type": "array", "items": v3_one}}});
    let create_topic = json!({"type": "object", "required": ["topic_name"], "properties": {
        "topic_name": {"type": "string", "pattern": NAME_PATTERN},
        "partitions_count": {"type": "integer", "format": "int32", "minimum": 1},
        "replication_factor": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 32767},
        "configs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": string, "value": {"type": "string", "nullable": true}}}}}});
    let v3_data = json!({"type": "object", "additionalProperties": false, "properties": {
        "type": {"type": "string", "enum": ["BINARY", "JSON", "STRING"]}, "data": {"nullable": true}}});
    let v3_record = json!({"type": "object", "properties": {
        "partition_id": {"type": "integer", "format": "int32", "minimum": 0},
        "headers": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": string, "value": {"type": "string", "nullable": true, "format": "byte"}}}},
        "key": v3_data, "value": v3_data,
        "timestamp": {"type": "string", "format": "date-time"}}});
    let v3_produced = json!({"type": "object", "required": ["error_code"], "properties": {
        "error_code": int32, "cluster_id": string, "topic_name": string, "partition_id": int32,
        "offset": int64, "timestamp": {"type": "string", "nullable": true}, "message": string}});
    let c = "/consumers/{group}/instances/{instance}";
    let v3c = "/v3/clusters/{cluster}";
    let mut paths = Map::new();
    let mut add = |path: &str, ops: Vec<(&str, Value)>| {
        let m: Map<String, Value> = ops.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        paths.insert(path.to_string(), Value::Object(m));
    };
    add(
        "/",
        vec![(
            "get",
            op(
                "/",
                "An empty object (a liveness probe)",
                None,
                ("200", obj.clone()),
                &[],
                vec![],
            ),
        )],
    );
    add(
        "/topics",
        vec![(
            "get",
            op(
                "/topics",
                "Topic names",
                None,
                ("200", json!({"type": "array", "items": {"type": "string"}})),
                &["500"],
                vec![],
            ),
        )],
    );
    add(
        "/topics/{topic}",
        vec![
            (
                "get",
                op(
                    "/topics/{topic}",
                    "A topic: configs and partitions",
                    None,
                    ("200", topic_v2),
                    &["404", "500"],
                    vec![],
                ),
            ),
            (
                "post",
                op(
                    "/topics/{topic}",
                    "Produce records",
                    Some((produce_types, produce_body.clone())),
                    ("200", produce_ok.clone()),
                    &["400", "404", "413", "415", "422", "500"],
                    vec![],
                ),
            ),
        ],
    );
    add(
        "/topics/{topic}/partitions",
        vec![(
            "get",
            op(
                "/topics/{topic}/partitions",
                "A topic's partitions",
                None,
                (
                    "200",
                    json!({"type": "array", "items": partition_v2.clone()}),
                ),
                &["404", "500"],
                vec![],
            ),
        )],
    );
    add(
        "/topics/{topic}/partitions/{partition}",
        vec![
            (
                "get",
                op(
                    "/topics/{topic}/partitions/{partition}",
                    "One partition",
                    None,
                    ("200", partition_v2),
                    &["404", "500"],
                    vec![],
                ),
            ),
            (
                "post",
                op(
                    "/topics/{topic}/partitions/{partition}",
                    "Produce records to one partition",
                    Some((produce_types, produce_body)),
                    ("200", produce_ok),
                    &["400", "404", "413", "415", "422", "500"],
                    vec![],
                ),
            ),
        ],
    );
    add(
        "/topics/{topic}/partitions/{partition}/offsets",
        vec![(
            "get",
            op(
                "/topics/{topic}/partitions/{partition}/offsets",
                "Beginning and end offsets",
                None,
                ("200", offsets_v2),
                &["404", "500"],
                vec![],
            ),
        )],
    );
    add(
        "/brokers",
        vec![(
            "get",
            op(
                "/brokers",
                "Broker ids",
                None,
                ("200", brokers),
                &["500"],
                vec![],
            ),
        )],
    );
    add(
        "/consumers/{group}",
        vec![(
            "post",
            // Without a body, the defaults (as Confluent's proxy takes it).
            optional_body(op(
                "/consumers/{group}",
                "Create a consumer instance",
                Some((v2_json, create_consumer)),
                ("200", consumer_created),
                &["400", "409", "415", "422", "429"],
                vec![],
            )),
        )],
    );
    add(
        c,
        vec![(
            "delete",
            op(
                c,
                "Delete a consumer instance",
                None,
                ("204", Value::Null),
                &["404"],
                vec![],
            ),
        )],
    );
    let sub = format!("{c}/subscription");
    add(
        &sub,
        vec![
            (
                "post",
                op(
                    &sub,
                    "Subscribe to topics",
                    Some((v2_json, subscription)),
                    ("204", Value::Null),
                    &["400", "404", "409", "415", "422"],
                    vec![],
                ),
            ),
            (
                "get",
                op(
                    &sub,
                    "The subscribed topics",
                    None,
                    ("200", subscribed),
                    &["404"],
                    vec![],
                ),
            ),
            (
                "delete",
                op(
                    &sub,
                    "Unsubscribe",
                    None,
                    ("204", Value::Null),
                    &["404"],
                    vec![],
                ),
            ),
        ],
    );
    let asg = format!("{c}/assignments");
    add(
        &asg,
        vec![
            (
                "post",
                op(
                    &asg,
                    "Assign partitions by hand",
                    Some((v2_json, partitions.clone())),
                    ("204", Value::Null),
                    &["400", "404", "409", "415", "422"],
                    vec![],
                ),
            ),
            (
                "get",
                op(
                    &asg,
                    "The assigned partitions",
                    None,
                    ("200", partitions.clone()),
                    &["404"],
                    vec![],
                ),
            ),
        ],
    );
    for (suffix, what, body) in [
        ("positions", "Seek to offsets", offsets.clone()),
        (
            "positions/beginning",
            "Seek to the beginning",
            partitions.clone(),
        ),
        ("positions/end", "Seek to the end", partitions.clone()),
    ] {
        let p = format!("{c}/{suffix}");
        add(
            &p,
            vec![(
                "post",
                op(
                    &p,
                    what,
                    Some((v2_json, body)),
                    ("204", Value::Null),
                    &["400", "404", "409", "415", "422", "500"],
                    vec![],
                ),
            )],
        );
    }
    let off = format!("{c}/offsets");
    add(
        &off,
        vec![
            (
                "post",
                op(
                    &off,
                    "Commit offsets (the body's, or all positions when empty)",
                    None,
                    ("200", Value::Null),
                    &["400", "404", "415", "422", "500"],
                    vec![],
                ),
            ),
            (
                "get",
                op(
                    &off,
                    "Committed offsets of partitions",
                    Some((v2_json, partitions)),
                    ("200", offsets),
                    &["400", "404", "415", "422", "500"],
                    vec![],
                ),
            ),
        ],
    );
    let rec = format!("{c}/records");
    add(
        &rec,
        vec![(
            "get",
            op(
                &rec,
                "Fetch records",
                None,
                ("200", consumed),
                &["400", "404", "406", "500"],
                vec![
                    non_negative(param(
                        "timeout",
                        "integer",
                        "query",
                        false,
                        "Longest wait for records, ms",
                    )),
                    non_negative(param(
                        "max_bytes",
                        "integer",
                        "query",
                        false,
                        "Most bytes of keys and values returned",
                    )),
                ],
            ),
        )],
    );
    let ws = "/ws/v1/topics/{topic}/records";
    add(ws, vec![("get", op(ws, "A live stream of records: a WebSocket (Upgrade: websocket), or Server-Sent Events with Accept: text/event-stream", None, ("200", any.clone()), &["400", "403", "404", "406", "429", "500"], vec![
        param("from", "string", "query", false, "earliest, latest (default), an offset, or an RFC 3339 date-time"),
        param("partitions", "string", "query", false, "Comma-separated partitions (default: all)"),
        param("group", "string", "query", false, "Start from this group's committed offsets and commit acknowledged records for it"),
        formats(param("format", "string", "query", false, "json (default) or binary")),
    ]))]);
    for (suffix, what, answer) in [
        ("", "Consumer groups", &v3_list),
        ("/{group}", "A consumer group", &v3_one),
        ("/{group}/lags", "Lag per partition of a group", &v3_list),
        (
            "/{group}/lag-summary",
            "A group's total and largest lag",
            &v3_one,
        ),
    ] {
        let p = format!("/v3/clusters/{{cluster}}/consumer-groups{suffix}");
        add(
            &p,
            vec![(
                "get",
                op(
                    &p,
                    what,
                    None,
                    ("200", answer.clone()),
                    &["404", "500"],
                    vec![],
                ),
            )],
        );
    }
    let cfg = "/v3/clusters/{cluster}/topics/{topic}/configs";
    add(
        cfg,
        vec![(
            "get",
            op(
                cfg,
                "A topic's configs",
                None,
                ("200", v3_list.clone()),
                &["404", "500"],
                vec![],
            ),
        )],
    );
    let one = format!("{cfg}/{{name}}");
    add(
        &one,
        vec![
            (
                "get",
                op(
                    &one,
                    "One config of a topic",
                    None,
                    ("200", v3_one.clone()),
                    &["404", "500"],
                    vec![],
                ),
            ),
            (
                "put",
                op(
                    &one,
                    "Set a topic config",
                    Some((
                        &["application/json"],
                        json!({"type": "object", "required": ["value"], "properties": {"value": {"type": "string"}}}),
                    )),
                    ("204", Value::Null),
                    &["400", "404", "415", "422", "500"],
                    vec![],
                ),
            ),
            (
                "delete",
                op(
                    &one,
                    "Reset a topic config to its default",
                    None,
                    ("204", Value::Null),
                    &["400", "404", "500"],
                    vec![],
                ),
            ),
        ],
    );
    let wp = "/ws/v1/topics/{topic}/produce";
    add(wp, vec![("get", op(wp, "A WebSocket whose text messages are records (as in v2's produce), each answered in order with its partition and offset or an error", None, ("101", Value::Null), &["400", "403", "404", "426", "429", "500"], vec![
        formats(param("format", "string", "query", false, "json (default) or binary")),
    ]))]);
    add(
        "/v3/clusters",
        vec![(
            "get",
            op(
                "/v3/clusters",
                "The cluster",
                None,
                ("200", v3_list.clone()),
                &["500"],
                vec![],
            ),
        )],
    );
    add(
        v3c,
        vec![(
            "get",
            op(
                v3c,
                "The cluster",
                None,
                ("200", v3_one.clone()),
                &["404", "500"],
                vec![],
            ),
        )],
    );
    let t = format!("{v3c}/topics");
    add(
        &t,
        vec![
            (
                "get",
                op(
                    &t,
                    "Topics",
                    None,
                    ("200", v3_list.clone()),
                    &["404", "500"],
                    vec![],
                ),
            ),
            (
                "post",
                op(
                    &t,
                    "Create a topic",
                    Some((&["application/json"], create_topic)),
                    ("201", v3_one.clone()),
                    &["400", "404", "415", "422", "500"],
                    vec![],
                ),
            ),
        ],
    );
    let tt = format!("{v3c}/topics/{{topic}}");
    add(
        &tt,
        vec![
            (
                "get",
                op(
                    &tt,
                    "A topic",
                    None,
                    ("200", v3_one.clone()),
                    &["404", "500"],
                    vec![],
                ),
            ),
            (
                "delete",
                op(
                    &tt,
                    "Delete a topic",
                    None,
                    ("204", Value::Null),
                    &["404", "500"],
                    vec![],
                ),
            ),
        ],
    );
    let tp = format!("{v3c}/topics/{{topic}}/partitions");
    add(
        &tp,
        vec![(
            "get",
            op(
                &tp,
                "A topic's partitions",
                None,
                ("200", v3_list.clone()),
                &["404", "500"],
                vec![],
            ),
        )],
    );
    let tpp = format!("{v3c}/topics/{{topic}}/partitions/{{partition}}");
    add(
        &tpp,
        vec![(
            "get",
            op(
                &tpp,
                "A partition",
                None,
                ("200", v3_one.clone()),
                &["404", "500"],
                vec![],
            ),
        )],
    );
    let tr = format!("{v3c}/topics/{{topic}}/records");
    add(
        &tr,
        vec![(
            "post",
            op(
                &tr,
                "Produce records: one JSON object, or several concatenated, each answered",
                Some((&["application/json"], v3_record)),
                ("200", v3_produced),
                &["400", "404", "413", "415", "422", "500"],
                vec![],
            ),
        )],
    );
    add(
        "/openapi.json",
        vec![(
            "get",
            op(
                "/openapi.json",
                "This document",
                None,
                ("200", obj),
                &[],
                vec![],
            ),
        )],
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Strom HTTP gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Kafka topics over HTTP (Confluent REST Proxy v2, v3 basics) and live WebSocket / Server-Sent Event streams.",
        },
        "paths": paths,
        // Off by default (the empty requirement); gateway.authentication turns on HTTP Basic
        // (SCRAM or PLAIN users) and bearer JWTs (checked as OAUTHBEARER is).
        "security": [{}, {"basic": []}, {"bearer": []}],
        "components": {
          "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic",
                      "description": "A SASL/SCRAM user of the cluster, or a PLAIN user of gateway.plain.sasl.jaas.config"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "A JWT checked against the OAUTHBEARER key set (sasl.oauthbearer.*)"},
          },
          "schemas": {
            "Error": {"type": "object", "required": ["error_code", "message"], "properties": {
                "error_code": {"type": "integer"}, "message": {"type": "string"}}},
            "ProduceRequest": {"type": "object", "required": ["records"], "properties": {"records": {"type": "array", "items": {
                "type": "object", "properties": {
                    "key": {}, "value": {}, "partition": {"type": "integer", "minimum": 0},
                    "headers": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"}, "value": {"type": "string", "nullable": true, "format": "byte"}}}},
                    "timestamp": {"type": "integer"}}}}}},
            "ProduceResponse": {"type": "object", "properties": {
                "offsets": {"type": "array", "items": {"type": "object", "properties": {
                    "partition": {"type": "integer"}, "offset": {"type": "integer", "nullable": true},
                    "error_code": {"type": "integer", "nullable": true}, "error": {"type": "string", "nullable": true}}}},
                "key_schema_id": {"nullable": true}, "value_schema_id": {"nullable": true}}},
        }},
    })
}
