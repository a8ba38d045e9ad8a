//! `strom-gateway`: Kafka topics over HTTP, in the dialect of Confluent's
//! REST Proxy (API v2), built on `strom-client`, so it works in front of any
//! Kafka-compatible cluster: inside `strom serve` (over loopback to the
//! broker's own listener) or standalone (`strom gateway --bootstrap`).
//!
//! - [`v2`]: topics, partitions, brokers, produce.
//! - [`embedded`]: the binary and json embedded formats.
//! - [`error`]: Confluent's error bodies and status codes.

pub mod auth;
pub mod batcher;
pub mod conn;
pub mod consumers;
pub mod cors;
pub mod embedded;
pub mod error;
pub mod openapi;
pub mod principal_limits;
pub mod stream;
pub mod v2;
pub mod v3;

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use strom_client::{Client, ClientConfig, ConnectionConfig};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;

use crate::error::{RestError, RestResult, V2_JSON};

/// Settings of a gateway.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The Kafka cluster, HOST:PORT[,HOST:PORT...].
    pub bootstrap: String,
    pub request_timeout: Duration,
    /// Largest request body accepted (413 beyond).
    pub max_request_bytes: usize,
    /// Most records in one produce request (422 beyond).
    pub max_records_per_request: usize,
    /// Consumer instances unused this long are removed (Confluent's
    /// consumer.instance.timeout.ms).
    pub consumer_instance_timeout: Duration,
    /// Default `timeout` of a records request (consumer.request.timeout.ms).
    pub consumer_request_timeout_ms: u64,
    /// Most bytes a records request returns (consumer.request.max.bytes).
    pub consumer_request_max_bytes: usize,
    /// Most consumer instances at once (429 beyond).
    pub max_consumer_instances: usize,
    /// Most WebSocket and SSE record streams at once (429 beyond).
    pub max_streams: usize,
    /// A connection with nothing read or written this long is closed.
    pub idle_timeout: Duration,
    /// Most open connections; more wait to be accepted.
    pub max_connections: usize,
    /// Origins whose browser pages may call the gateway (CORS); none by default.
    pub allowed_origins: cors::AllowedOrigins,
    /// Authentication, the authorizer and per-principal limits; none by default.
    pub security: auth::GatewaySecurity,
    /// HTTPS on the listener (`gateway.ssl.*`); plain HTTP when none.
    pub tls: Option<Arc<strom_security::tls::TlsReloader>>,
    /// How the gateway's own Kafka connections secure themselves
    /// (`gateway.client.config`, or `--command-config` standalone).
    pub client_security: Option<Arc<strom_client::ClientSecurity>>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("bootstrap", &self.bootstrap)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_streams", &self.max_streams)
            .field("security", &self.security)
            .field("tls", &self.tls.is_some())
            .field("client_security", &self.client_security.is_some())
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    pub fn new(bootstrap: impl Into<String>) -> GatewayConfig {
        GatewayConfig {
            bootstrap: bootstrap.into(),
            request_timeout: Duration::from_secs(30),
            max_request_bytes: 8 * 1024 * 1024,
            max_records_per_request: 10_000,
            consumer_instance_timeout: Duration::from_secs(300),
            consumer_request_timeout_ms: 1_000,
            consumer_request_max_bytes: 64 * 1024 * 1024,
            max_consumer_instances: 1_000,
            max_streams: 1_000,
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            allowed_origins: cors::AllowedOrigins::default(),
            security: auth::GatewaySecurity::new(),
            tls: None,
            client_security: None,
        }
    }

    fn client_config(&self) -> ClientConfig {
        ClientConfig {
            connection: ConnectionConfig {
                client_id: "strom-gateway".to_string(),
                request_timeout: self.request_timeout,
                connect_timeout: self.request_timeout.min(Duration::from_secs(10)),
                max_response_bytes: 128 * 1024 * 1024,
                security: self.client_security.clone(),
            },
        }
    }
}

/// The state every request shares.
pub struct Gateway {
    pub config: GatewayConfig,
    client: OnceCell<Arc<Client>>,
    /// Spreads keyless, partition-less produce requests over partitions.
    pub(crate) next_partition: AtomicUsize,
    pub(crate) consumers: consumers::Consumers,
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    pub(crate) batcher: Arc<batcher::Batcher>,
    pub(crate) cluster_id: OnceCell<String>,
    pub(crate) verified: auth::VerifiedCache,
    pub(crate) connections_per_principal: Arc<auth::PerPrincipal>,
    pub(crate) streams_per_principal: Arc<auth::PerPrincipal>,
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Arc<Gateway> {
        Arc::new(Gateway {
            client: OnceCell::new(),
            next_partition: AtomicUsize::new(0),
            consumers: consumers::Consumers::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(config.max_streams)),
            batcher: Arc::default(),
            cluster_id: OnceCell::new(),
            verified: auth::VerifiedCache::default(),
            connections_per_principal: Arc::default(),
            streams_per_principal: Arc::default(),
            config,
        })
    }

    /// The Kafka client, connected on first use (the gateway inside `strom
    /// serve` starts before its broker accepts connections; a failed
    /// bootstrap is tried again by the next request).
    pub async fn client(&self) -> RestResult<Arc<Client>> {
        self.client
            .get_or_try_init(|| async {
                Client::connect(&self.config.bootstrap, self.config.client_config())
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
            .map_err(|e| RestError::kafka(&e, None))
    }
}

/// A JSON answer with the v2 content type.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = (status, value.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(V2_JSON));
    resp
}

/// Reads a request body of at most `max_request_bytes`: 413 beyond, before
/// reading it when Content-Length says so.
pub async fn read_body(gw: &Gateway, headers: &HeaderMap, body: Body) -> RestResult<Bytes> {
    let limit = gw.config.max_request_bytes;
    let too_large = || {
        RestError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("HTTP 413 Payload Too Large: the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = bytes::BytesMut::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| RestError::bad_request(format!("cannot read the request body: {e}")))?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// Parses a JSON request body; 400 when it is not JSON, 422 when it is JSON
/// of the wrong shape (as Confluent's REST Proxy answers).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> RestResult<T> {
    let parsed = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            RestError::bad_request(format!("the request body is not JSON: {e}"))
        } else {
            RestError::unprocessable(format!("unexpected request body: {e}"))
        }
    })?;
    // Every request body of the API is an object; serde's derive would
    // also take an array of a struct's fields.
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(parsed),
        _ => Err(RestError::unprocessable(
            "unexpected request body: expected a JSON object",
        )),
    }
}

/// A JSON object read as `T`. serde's derived structs also take an array
/// of their fields in order (`[null, null]` as a record), which is no
/// REST Proxy request: this takes objects only.
#[derive(Debug)]
pub struct ObjectOnly<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Objects<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Objects<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(Objects(std::marker::PhantomData))
    }
}

/// A list of JSON objects read as `T`s (see [`ObjectOnly`]).
pub(crate) fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let list = <Vec<ObjectOnly<T>> as serde::Deserialize>::deserialize(d)?;
    Ok(list.into_iter().map(|o| o.0).collect())
}

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { json_response(StatusCode::OK, &serde_json::json!({})) }),
        )
        .route(
            "/openapi.json",
            get(|| async {
                let mut r = json_response(StatusCode::OK, &openapi::document());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            }),
        )
        .merge(v2::routes())
        .merge(consumers::routes())
        .merge(stream::routes())
        .merge(v3::routes())
        .merge(v3::group_routes())
        .merge(v3::config_routes())
        .fallback(|| async { RestError::not_found() })
        .method_not_allowed_fallback(|| async {
            RestError::status(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP 405 Method Not Allowed",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::acl_layer,
        ))
        .layer(axum::middleware::map_response(confluent_rejections))
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::layer,
        ))
        .layer(axum::middleware::from_fn(v3_errors))
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            cors::layer,
        ))
        // Outermost, so that an exchange lasts until the very last body byte.
        .layer(axum::middleware::from_fn(conn::track_exchanges))
        .with_state(gw)
}

/// axum's own rejections (a query string or path that does not parse, a
/// WebSocket upgrade that is not one) are plain text; they are answered in
/// Confluent's error format instead, as every other error is.
async fn confluent_rejections(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // Rejection texts are short; a longer body is cut, not buffered whole.
    let text = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    RestError::status(status, text).into_response()
}

/// Whether a request path is of API v3.
fn is_v3(path: &str) -> bool {
    path == "/v3" || path.starts_with("/v3/")
}

/// v3 answers its errors as it answers everything, in `application/json`
/// (Confluent's v3 `ErrorResponse`: `error_code`, `message`); the handlers,
/// extractors and fallbacks they share with v2 give v2's content type.
async fn v3_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let v3 = is_v3(req.uri().path());
    let mut resp = next.run(req).await;
    let status = resp.status();
    if v3 && (status.is_client_error() || status.is_server_error()) {
        let headers = resp.headers_mut();
        if headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes) == Some(V2_JSON.as_bytes())
        {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(error::V3_JSON),
            );
        }
    }
    resp
}

/// Serves the gateway on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener =
        conn::GatewayListener::new(listener, config.idle_timeout, config.max_connections)
            .with_tls(config.tls.clone());
    let gw = Gateway::new(config);
    let app = router(gw.clone());
    let reaper = tokio::spawn(expire_consumers(gw));
    let served = tokio::select! {
        r = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<conn::ConnState>(),
        ) => r,
        () = shutdown => Ok(()),
    };
    reaper.abort();
    served
}

async fn expire_consumers(gw: Arc<Gateway>) {
    let idle = gw.config.consumer_instance_timeout;
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle));
    loop {
        tick.tick().await;
        let client = gw.client.get().cloned();
        gw.consumers.expire(client, idle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Pair {
        #[serde(default)]
        a: Option<i32>,
        #[serde(default)]
        b: Option<i32>,
    }

    /// The head of the gateway's answer to one request, with no cluster
    /// behind it.
    async fn answer_head(request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = GatewayConfig::new("127.0.0.1:1");
        tokio::spawn(serve(listener, config, std::future::pending()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        text.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn v3_errors_are_application_json_and_v2_errors_v2s() {
        let close = "host: x\r\nconnection: close\r\n\r\n";
        for (path, status, media) in [
            ("/v3/no-such-thing", "404", "application/json"),
            // No cluster: the client's failure, as v3 answers it.
            ("/v3/clusters", "500", "application/json"),
            ("/no-such-thing", "404", V2_JSON),
            ("/topics", "500", V2_JSON),
        ] {
            let head = answer_head(&format!("GET {path} HTTP/1.1\r\n{close}")).await;
            assert!(
                head.starts_with(&format!("http/1.1 {status} ")),
                "{path}: {head}"
            );
            assert!(
                head.contains(&format!("content-type: {media}\r\n"))
                    || head.ends_with(&format!("content-type: {media}")),
                "{path}: {head}"
            );
        }
    }

    #[test]
    fn only_objects_are_read_as_structs() {
        let ok: ObjectOnly<Pair> = parse_json(br#"{"a": 1}"#).unwrap();
        assert_eq!((ok.0.a, ok.0.b), (Some(1), None));
        // serde's derive alone takes this as {"a": null, "b": null}.
        assert!(serde_json::from_slice::<Pair>(b"[null, null]").is_ok());
        for bad in [&b"[null, null]"[..], b"[]", b"5", b"\"x\""] {
            let e = parse_json::<ObjectOnly<Pair>>(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
            // A top-level body is an object whatever T takes.
            let e = parse_json::<serde_json::Value>(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        }
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(deserialize_with = "objects")]
            items: Vec<Pair>,
        }
        let list: List = parse_json(br#"{"items": [{"b": 2}]}"#).unwrap();
        assert_eq!(list.items[0].b, Some(2));
        let e = parse_json::<List>(br#"{"items": [[1, 2]]}"#).err().unwrap();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        // Not JSON at all stays a 400.
        let e = parse_json::<serde_json::Value>(b"[").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
