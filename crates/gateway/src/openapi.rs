//! The OpenAPI 3 document of the gateway, served at `/openapi.json`.

use serde_json::{json, Map, Value};

fn param(name: &str, kind: &str, location: &str, required: bool, description: &str) -> Value {
    json!({
        "name": name, "in": location, "required": required,
        "description": description, "schema": {"type": kind},
    })
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let kind = if name == "partition" {
                "integer"
            } else {
                "string"
            };
            param(name, kind, "path", true, name)
        })
        .collect()
}

fn error_responses(codes: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({"description": "An error: error_code and message, as Confluent's REST Proxy gives them",
                   "content": {"application/vnd.kafka.v2+json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    m
}

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
    let mut responses = error_responses(errors);
    let (status, schema) = ok;
    let ok_body = if schema.is_null() {
        json!({"description": "Done"})
    } else {
        json!({"description": "Done", "content": {"application/json": {"schema": schema}}})
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
    let partitions =
        json!({"type": "object", "properties": {"partitions": {"type": "array", "items": obj}}});
    let offsets =
        json!({"type": "object", "properties": {"offsets": {"type": "array", "items": obj}}});
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
                    ("200", obj.clone()),
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
                ("200", json!({"type": "array", "items": obj})),
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
                    ("200", obj.clone()),
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
                ("200", obj.clone()),
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
                ("200", obj.clone()),
                &["500"],
                vec![],
            ),
        )],
    );
    add(
        "/consumers/{group}",
        vec![(
            "post",
            op(
                "/consumers/{group}",
                "Create a consumer instance",
                Some((v2_json, obj.clone())),
                ("200", obj.clone()),
                &["400", "409", "415", "422", "429"],
                vec![],
            ),
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
                    Some((v2_json, obj.clone())),
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
                    ("200", obj.clone()),
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
                ("200", json!({"type": "array", "items": obj})),
                &["404", "406", "500"],
                vec![
                    param(
                        "timeout",
                        "integer",
                        "query",
                        false,
                        "Longest wait for records, ms",
                    ),
                    param(
                        "max_bytes",
                        "integer",
                        "query",
                        false,
                        "Most bytes of keys and values returned",
                    ),
                ],
            ),
        )],
    );
    let ws = "/ws/v1/topics/{topic}/records";
    add(ws, vec![("get", op(ws, "A live stream of records: a WebSocket (Upgrade: websocket), or Server-Sent Events with Accept: text/event-stream", None, ("200", any.clone()), &["400", "404", "406", "429", "500"], vec![
        param("from", "string", "query", false, "earliest, latest (default), an offset, or an RFC 3339 date-time"),
        param("partitions", "string", "query", false, "Comma-separated partitions (default: all)"),
        param("group", "string", "query", false, "Start from this group's committed offsets and commit acknowledged records for it"),
        param("format", "string", "query", false, "json (default) or binary"),
    ]))]);
    for (suffix, what) in [
        ("", "Consumer groups"),
        ("/{group}", "A consumer group"),
        ("/{group}/lags", "Lag per partition of a group"),
        ("/{group}/lag-summary", "A group's total and largest lag"),
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
                    ("200", obj.clone()),
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
                ("200", obj.clone()),
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
                    ("200", obj.clone()),
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
    add(wp, vec![("get", op(wp, "A WebSocket whose text messages are records (as in v2's produce), each answered in order with its partition and offset or an error", None, ("101", Value::Null), &["400", "404", "426", "429", "500"], vec![
        param("format", "string", "query", false, "json (default) or binary"),
    ]))]);
    add(
        "/v3/clusters",
        vec![(
            "get",
            op(
                "/v3/clusters",
                "The cluster",
                None,
                ("200", obj.clone()),
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
                ("200", obj.clone()),
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
                    ("200", obj.clone()),
                    &["404", "500"],
                    vec![],
                ),
            ),
            (
                "post",
                op(
                    &t,
                    "Create a topic",
                    Some((&["application/json"], obj.clone())),
                    ("201", obj.clone()),
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
                    ("200", obj.clone()),
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
                ("200", obj.clone()),
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
                ("200", obj.clone()),
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
                Some((&["application/json"], obj.clone())),
                ("200", obj.clone()),
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
        "components": {"schemas": {
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
