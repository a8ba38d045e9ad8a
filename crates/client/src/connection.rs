//! One TCP connection to one broker: size-prefixed frames, correlation ids,
//! ApiVersions negotiation, and typed request/response round trips.
//!
//! Requests may be pipelined: any number of tasks can call [`Connection::send`]
//! at once; a reader task matches responses to requests by correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use proto_kafka::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::{Error, KafkaCode, Result};

/// Settings of a connection.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Sent as the request header's client id.
    pub client_id: String,
    /// Time allowed for one request, from writing it to reading its response.
    pub request_timeout: Duration,
    /// Time allowed for the TCP connect.
    pub connect_timeout: Duration,
    /// Largest response frame accepted; larger ones close the connection.
    pub max_response_bytes: usize,
    /// TLS and SASL (Kafka's client `security.protocol`, `ssl.*`, `sasl.*`); `None` is
    /// PLAINTEXT.
    pub security: Option<Arc<ClientSecurity>>,
}

/// How a connection secures itself, built once from Kafka client properties.
#[derive(Debug)]
pub struct ClientSecurity {
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    pub sasl: Option<strom_security::client_config::ClientSasl>,
}

impl ClientSecurity {
    /// From Kafka client properties (`--command-config`).
    pub fn from_properties(
        props: &HashMap<String, String>,
    ) -> std::result::Result<Option<Self>, String> {
        let c = strom_security::client_config::ClientSecurityConfig::from_properties(props)
            .map_err(|e| e.to_string())?;
        if c.protocol == strom_security::SecurityProtocol::Plaintext {
            return Ok(None);
        }
        let tls = c
            .tls
            .as_ref()
            .map(strom_security::tls::build_client_config)
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Some(ClientSecurity { tls, sasl: c.sasl }))
    }
}

type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "strom-cli".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 128 * 1024 * 1024,
            security: None,
        }
    }
}

type Reply = std::result::Result<Bytes, String>;

struct Pending {
    /// correlation id → (api key, reply channel)
    waiting: HashMap<i32, (i16, oneshot::Sender<Reply>)>,
    /// Set once the connection is unusable, with the reason.
    closed: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn close(&self, reason: String) {
        let mut p = self.lock();
        if p.closed.is_none() {
            p.closed = Some(reason.clone());
        }
        for (_, (_, tx)) in p.waiting.drain() {
            let _ = tx.send(Err(reason.clone()));
        }
    }
}

/// The name of an API key, e.g. `Metadata`.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("api {key}"),
    }
}

pub struct Connection {
    addr: String,
    config: ConnectionConfig,
    writer: tokio::sync::Mutex<BoxWrite>,
    shared: Arc<Shared>,
    next_correlation_id: AtomicI32,
    /// api key → the broker's (min, max) versions.
    versions: HashMap<i16, (i16, i16)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection> {
        let connect_ms = config.connect_timeout.as_millis() as u64;
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("connecting to {addr}"),
                ms: connect_ms,
            })?
            .map_err(|e| Error::Connect {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let security = config.security.clone();
        let (read_half, write_half): (BoxRead, BoxWrite) = match security
            .as_ref()
            .and_then(|s| s.tls.clone())
        {
            Some(tls) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| Error::Connect {
                        addr: addr.to_string(),
                        reason: format!("bad TLS server name {host}: {e}"),
                    })?;
                let connector = tokio_rustls::TlsConnector::from(tls);
                let stream =
                    tokio::time::timeout(config.connect_timeout, connector.connect(name, stream))
                        .await
                        .map_err(|_| Error::Timeout {
                            what: format!("the TLS handshake with {addr}"),
                            ms: connect_ms,
                        })?
                        .map_err(|e| Error::Connect {
                            addr: addr.to_string(),
                            reason: format!("TLS handshake failed: {e}"),
                        })?;
                let (r, w) = tokio::io::split(stream);
                (Box::new(r), Box::new(w))
            }
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                waiting: HashMap::new(),
                closed: None,
            }),
        });
        let reader = tokio::spawn(read_loop(
            read_half,
            Arc::clone(&shared),
            addr.to_string(),
            config.max_response_bytes,
        ));
        let mut conn = Connection {
            addr: addr.to_string(),
            config,
            writer: tokio::sync::Mutex::new(write_half),
            shared,
            next_correlation_id: AtomicI32::new(1),
            versions: HashMap::new(),
            reader,
        };
        conn.versions = conn.negotiate().await?;
        if let Some(sasl) = security.as_ref().and_then(|s| s.sasl.as_ref()) {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1 and SaslAuthenticate: PLAIN, SCRAM or OAUTHBEARER.
    async fn authenticate(&self, sasl: &strom_security::client_config::ClientSasl) -> Result<()> {
        use proto_kafka::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        use strom_security::sasl::SaslMechanism;
        use strom_security::scram::{ScramClient, ScramMechanism};
        let fail = |reason: String| Error::Connect {
            addr: self.addr.clone(),
            reason: format!("SASL authentication failed: {reason}"),
        };
        let mechanism = sasl.mechanism;
        let hs = self
            .send(
                1,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism.name())),
            )
            .await?;
        if hs.error_code != 0 {
            return Err(fail(format!(
                "the broker does not enable {} (it enables {:?})",
                mechanism.name(),
                hs.mechanisms.iter().map(|m| m.as_str()).collect::<Vec<_>>()
            )));
        }
        let version = self.version_capped::<SaslAuthenticateRequest>(1)?;
        // One SaslAuthenticate round: the outer error is the transport's, the inner one the
        // broker's refusal (its error message).
        let round = |bytes: Vec<u8>| async move {
            let r = self
                .send(
                    version,
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                )
                .await?;
            if r.error_code != 0 {
                return Ok(Err(r
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("error code {}", r.error_code))));
            }
            Ok::<_, Error>(Ok(r.auth_bytes.to_vec()))
        };
        let step = |bytes: Vec<u8>| async move {
            round(bytes).await.and_then(|answer| answer.map_err(fail))
        };
        let credentials = || {
            sasl.username_password()
                .ok_or_else(|| fail("no username and password in sasl.jaas.config".into()))
        };
        match mechanism {
            SaslMechanism::Plain => {
                let (user, password) = credentials()?;
                step(strom_security::plain::client_message(user, password)).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let (user, password) = credentials()?;
                let m = if mechanism == SaslMechanism::ScramSha256 {
                    ScramMechanism::Sha256
                } else {
                    ScramMechanism::Sha512
                };
                let mut client = ScramClient::new(m, user, password);
                let first = client.first_message().map_err(|e| fail(e.to_string()))?;
                let server_first = step(first).await?;
                let last = client
                    .final_message(&server_first)
                    .map_err(|e| fail(e.to_string()))?;
                let server_final = step(last).await?;
                client
                    .verify_server_final(&server_final)
                    .map_err(|e| fail(e.to_string()))?;
            }
            SaslMechanism::OAuthBearer => {
                let token = sasl
                    .oauthbearer_token
                    .as_ref()
                    .ok_or_else(|| {
                        fail(
                            "no token: set sasl.oauthbearer.token or sasl.oauthbearer.token.file"
                                .into(),
                        )
                    })?
                    .load()
                    .map_err(|e| fail(e.to_string()))?;
                let first = strom_security::oauthbearer::client_initial_response(&token, &[]);
                let challenge = step(first).await?;
                if !challenge.is_empty() {
                    // RFC 7628 3.2.2: a refused token comes back as an error challenge (JSON);
                    // the client answers with a lone ^A and the server then fails the
                    // exchange, with its reason in the error message.
                    let status = printable(&challenge);
                    return Err(match round(vec![0x01]).await {
                        Ok(Err(reason)) => {
                            fail(format!("{reason} (the broker's challenge: {status})"))
                        }
                        Ok(Ok(_)) => fail(format!(
                            "the broker refused the token (its challenge: {status})"
                        )),
                        Err(e) => fail(format!(
                            "the broker refused the token (its challenge: {status}), then: {e}"
                        )),
                    });
                }
            }
        }
        Ok(())
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// False once the connection failed or was closed by the broker.
    pub fn is_alive(&self) -> bool {
        self.shared.lock().closed.is_none() && !self.reader.is_finished()
    }

    /// The broker's (min, max) versions of an API, if it offers it.
    pub fn broker_versions(&self, api_key: i16) -> Option<(i16, i16)> {
        self.versions.get(&api_key).copied()
    }

    /// Whether both sides speak some version of `R`.
    pub fn supports<R: Request>(&self) -> bool {
        self.version::<R>().is_ok()
    }

    /// The highest version of `R` that both the broker and proto-kafka speak.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.version_capped::<R>(i16::MAX)
    }

    /// As [`Connection::version`], at most `cap`.
    pub fn version_capped<R: Request>(&self, cap: i16) -> Result<i16> {
        let api = api_name(R::KEY);
        let Some((bmin, bmax)) = self.broker_versions(R::KEY) else {
            return Err(Error::UnsupportedApi {
                addr: self.addr.clone(),
                api,
                detail: String::new(),
            });
        };
        let ours = <R as Message>::VERSIONS;
        let lo = bmin.max(ours.min);
        let hi = bmax.min(ours.max).min(cap);
        if lo > hi {
            return Err(Error::UnsupportedApi {
                addr: self.addr.clone(),
                api,
                detail: format!(
                    " in a version this client speaks (broker: v{bmin}-v{bmax}, client: v{}-v{})",
                    ours.min,
                    ours.max.min(cap)
                ),
            });
        }
        Ok(hi)
    }

    /// Sends `req` as version `version` and waits for its response.
    pub async fn send<R: Request>(&self, version: i16, req: &R) -> Result<R::Response> {
        let (frame, correlation_id) = self.encode(version, req)?;
        let bytes = self
            .round_trip(frame, correlation_id, R::KEY)
            .await
            .map_err(|e| self.annotate::<R>(e))?;
        decode_response::<R>(&self.addr, version, bytes)
    }

    /// Sends `req` without waiting for a response (a Produce with acks=0,
    /// which the broker does not answer).
    pub async fn send_no_response<R: Request>(&self, version: i16, req: &R) -> Result<()> {
        let (frame, _) = self.encode(version, req)?;
        let deadline = Instant::now() + self.config.request_timeout;
        self.write(&frame, deadline).await
    }

    /// Sends `req` at the highest common version.
    pub async fn send_latest<R: Request>(&self, req: &R) -> Result<R::Response> {
        let v = self.version::<R>()?;
        self.send(v, req).await
    }

    fn annotate<R: Request>(&self, e: Error) -> Error {
        match e {
            Error::Timeout { ms, .. } => Error::Timeout {
                what: format!("{} request to {}", api_name(R::KEY), self.addr),
                ms,
            },
            other => other,
        }
    }

    fn encode<R: Request>(&self, version: i16, req: &R) -> Result<(BytesMut, i32)> {
        let api = || api_name(R::KEY);
        let err = |e: proto_kafka::ProtoError| Error::Encode {
            api: api(),
            version,
            reason: e.to_string(),
        };
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.config.client_id.clone())));
        let header_version = R::header_version(version);
        let size = header.compute_size(header_version).map_err(err)?
            + req.compute_size(version).map_err(err)?;
        let size_i32 = i32::try_from(size).map_err(|_| Error::Encode {
            api: api(),
            version,
            reason: format!("request of {size} bytes is too large"),
        })?;
        let mut buf = BytesMut::with_capacity(4 + size);
        buf.put_i32(size_i32);
        header.encode(&mut buf, header_version).map_err(err)?;
        req.encode(&mut buf, version).map_err(err)?;
        Ok((buf, correlation_id))
    }

    async fn write(&self, frame: &[u8], deadline: Instant) -> Result<()> {
        if let Some(reason) = self.shared.lock().closed.clone() {
            return Err(Error::Connection {
                addr: self.addr.clone(),
                reason,
            });
        }
        let ms = self.config.request_timeout.as_millis() as u64;
        let result = tokio::time::timeout_at(deadline, async {
            let mut w = self.writer.lock().await;
            w.write_all(frame).await
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.shared.close(reason.clone());
                Err(Error::Connection {
                    addr: self.addr.clone(),
                    reason,
                })
            }
            Err(_) => {
                // A partial write leaves the stream unusable.
                self.shared.close("write timed out".to_string());
                Err(Error::Timeout {
                    what: format!("writing a request to {}", self.addr),
                    ms,
                })
            }
        }
    }

    async fn round_trip(
        &self,
        frame: BytesMut,
        correlation_id: i32,
        api_key: i16,
    ) -> Result<Bytes> {
        let deadline = Instant::now() + self.config.request_timeout;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.shared.lock();
            if let Some(reason) = p.closed.clone() {
                return Err(Error::Connection {
                    addr: self.addr.clone(),
                    reason,
                });
            }
            p.waiting.insert(correlation_id, (api_key, tx));
        }
        if let Err(e) = self.write(&frame, deadline).await {
            self.shared.lock().waiting.remove(&correlation_id);
            return Err(e);
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err(reason))) => Err(Error::Connection {
                addr: self.addr.clone(),
                reason,
            }),
            Ok(Err(_)) => Err(Error::Connection {
                addr: self.addr.clone(),
                reason: "the connection was closed".to_string(),
            }),
            Err(_) => {
                self.shared.lock().waiting.remove(&correlation_id);
                Err(Error::Timeout {
                    what: format!("{} request to {}", api_name(api_key), self.addr),
                    ms: self.config.request_timeout.as_millis() as u64,
                })
            }
        }
    }

    /// ApiVersions: ask with our highest version; a broker that does not
    /// know it answers UNSUPPORTED_VERSION in the v0 format, listing its
    /// range, and we ask again with the highest version it offers.
    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let ours = <ApiVersionsRequest as Message>::VERSIONS;
        let mut version = ours.max;
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req = req
                    .with_client_software_name(StrBytes::from_static_str("strom"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
            }
            let (frame, cid) = self.encode(version, &req)?;
            let bytes = self
                .round_trip(frame, cid, ApiKey::ApiVersions as i16)
                .await?;
            // Parse as the version asked; fall back to v0, the format of an
            // UNSUPPORTED_VERSION answer.
            let resp =
                match decode_response::<ApiVersionsRequest>(&self.addr, version, bytes.clone()) {
                    Ok(r) => r,
                    Err(first) => match decode_response::<ApiVersionsRequest>(&self.addr, 0, bytes)
                    {
                        Ok(r) if r.error_code == KafkaCode::UNSUPPORTED_VERSION => r,
                        _ => return Err(first),
                    },
                };
            if resp.error_code == KafkaCode::UNSUPPORTED_VERSION {
                let broker_max = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                let next = broker_max.min(ours.max);
                if next >= version {
                    break;
                }
                version = next;
                continue;
            }
            return versions_of(&self.addr, resp);
        }
        Err(Error::UnsupportedApi {
            addr: self.addr.clone(),
            api: "ApiVersions".to_string(),
            detail: " in a version this client speaks".to_string(),
        })
    }
}

/// A peer's bytes for a one-line message: control characters dropped, at most 256 chars.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect()
}

fn versions_of(addr: &str, resp: ApiVersionsResponse) -> Result<HashMap<i16, (i16, i16)>> {
    if resp.error_code != 0 {
        return Err(Error::kafka(
            format!("ApiVersions request to {addr}"),
            resp.error_code,
            None,
        ));
    }
    Ok(resp
        .api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect())
}

fn decode_response<R: Request>(addr: &str, version: i16, mut bytes: Bytes) -> Result<R::Response> {
    let err = |e: proto_kafka::ProtoError| Error::Decode {
        addr: addr.to_string(),
        api: api_name(R::KEY),
        version,
        reason: e.to_string(),
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    ResponseHeader::decode(&mut bytes, header_version).map_err(err)?;
    <R::Response as Decodable>::decode(&mut bytes, version).map_err(err)
}

async fn read_loop(mut r: BoxRead, shared: Arc<Shared>, addr: String, max: usize) {
    let reason = loop {
        let mut len = [0u8; 4];
        if let Err(e) = r.read_exact(&mut len).await {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the broker closed the connection".to_string()
            } else {
                e.to_string()
            };
        }
        let size = i32::from_be_bytes(len);
        if &len == b"HTTP" {
            break "the peer is not a Kafka broker: it answered in HTTP".to_string();
        }
        if size < 4 || size as usize > max {
            let api = {
                let p = shared.lock();
                // With one request in flight, name it.
                if p.waiting.len() == 1 {
                    p.waiting
                        .values()
                        .next()
                        .map(|(a, _)| api_name(*a))
                        .unwrap_or_default()
                } else {
                    "a".to_string()
                }
            };
            break Error::ResponseTooLarge {
                addr: addr.clone(),
                api,
                size: i64::from(size),
                max,
            }
            .to_string()
            .replace(&format!("{addr} sent"), "the broker sent");
        }
        let mut buf = BytesMut::zeroed(size as usize);
        if let Err(e) = r.read_exact(&mut buf).await {
            break format!("reading a response: {e}");
        }
        let buf = buf.freeze();
        let correlation_id = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let waiter = shared.lock().waiting.remove(&correlation_id);
        match waiter {
            Some((_, tx)) => {
                let _ = tx.send(Ok(buf));
            }
            None => {
                tracing::debug!(%addr, correlation_id, "response to a request no longer waited for");
            }
        }
    };
    tracing::debug!(%addr, %reason, "connection closed");
    shared.close(reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_kafka::messages::api_versions_response::ApiVersion;
    use proto_kafka::messages::{MetadataRequest, MetadataResponse};
    use tokio::net::TcpListener;

    async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    }

    fn response_frame<T: Encodable>(
        cid: i32,
        header_version: i16,
        version: i16,
        body: &T,
    ) -> Vec<u8> {
        let header = ResponseHeader::default().with_correlation_id(cid);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, header_version).unwrap();
        body.encode(&mut buf, version).unwrap();
        let size = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&size.to_be_bytes());
        buf.to_vec()
    }

    /// A fake broker that speaks only ApiVersions v0-2 (like an old Kafka),
    /// answering v3+ with UNSUPPORTED_VERSION in the v0 format; then answers
    /// one Metadata request with a frame of `metadata_frame_size` bytes.
    async fn fake_broker(metadata_frame_size: Option<i32>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let apis = vec![
                ApiVersion::default()
                    .with_api_key(18)
                    .with_min_version(0)
                    .with_max_version(2),
                ApiVersion::default()
                    .with_api_key(3)
                    .with_min_version(0)
                    .with_max_version(9),
            ];
            while let Some(mut frame) = read_frame(&mut s).await {
                let header =
                    proto_kafka::header_io::decode_request_header_from_buffer(&mut frame).unwrap();
                let cid = header.correlation_id;
                if header.request_api_key == 18 {
                    let v = header.request_api_version;
                    let (resp, rv) = if v > 2 {
                        (
                            ApiVersionsResponse::default()
                                .with_error_code(35)
                                .with_api_keys(apis.clone()),
                            0,
                        )
                    } else {
                        (
                            ApiVersionsResponse::default().with_api_keys(apis.clone()),
                            v,
                        )
                    };
                    s.write_all(&response_frame(cid, 0, rv, &resp))
                        .await
                        .unwrap();
                } else if let Some(size) = metadata_frame_size {
                    let mut f = size.to_be_bytes().to_vec();
                    f.extend_from_slice(&cid.to_be_bytes());
                    s.write_all(&f).await.unwrap();
                } else {
                    let v = header.request_api_version;
                    let resp = MetadataResponse::default();
                    let hv = <MetadataResponse as HeaderVersion>::header_version(v);
                    s.write_all(&response_frame(cid, hv, v, &resp))
                        .await
                        .unwrap();
                }
            }
        });
        addr
    }

    /// A fake broker with one OAUTHBEARER rule: the token `good.token.sig` is accepted,
    /// any other gets RFC 7628's error challenge, and the client's `^A` reply then fails
    /// the exchange with SASL_AUTHENTICATION_FAILED. Sends every SaslAuthenticate payload
    /// it receives down `seen`.
    async fn fake_oauth_broker() -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        use proto_kafka::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let apis: Vec<ApiVersion> = [(18, 0, 3), (3, 0, 9), (17, 0, 1), (36, 0, 1)]
                        .into_iter()
                        .map(|(k, lo, hi)| {
                            ApiVersion::default()
                                .with_api_key(k)
                                .with_min_version(lo)
                                .with_max_version(hi)
                        })
                        .collect();
                    let mut challenged = false;
                    while let Some(mut frame) = read_frame(&mut s).await {
                        let header =
                            proto_kafka::header_io::decode_request_header_from_buffer(&mut frame)
                                .unwrap();
                        let (cid, v) = (header.correlation_id, header.request_api_version);
                        let out = match header.request_api_key {
                            18 => response_frame(
                                cid,
                                0,
                                v,
                                &ApiVersionsResponse::default().with_api_keys(apis.clone()),
                            ),
                            17 => response_frame(
                                cid,
                                0,
                                v,
                                &SaslHandshakeResponse::default().with_mechanisms(vec![
                                    StrBytes::from_static_str("OAUTHBEARER"),
                                ]),
                            ),
                            36 => {
                                let req = SaslAuthenticateRequest::decode(&mut frame, v).unwrap();
                                let bytes = req.auth_bytes.to_vec();
                                seen_tx.send(bytes.clone()).unwrap();
                                let good = strom_security::oauthbearer::client_initial_response(
                                    "good.token.sig",
                                    &[],
                                );
                                let resp = if challenged {
                                    assert_eq!(bytes, b"\x01");
                                    SaslAuthenticateResponse::default()
                                        .with_error_code(58)
                                        .with_error_message(Some(StrBytes::from_static_str(
                                            "Authentication failed: Invalid token: expired",
                                        )))
                                } else if bytes == good {
                                    SaslAuthenticateResponse::default()
                                } else {
                                    challenged = true;
                                    SaslAuthenticateResponse::default().with_auth_bytes(
                                        Bytes::from_static(br#"{"status":"invalid_token"}"#),
                                    )
                                };
                                response_frame(cid, 0, v, &resp)
                            }
                            _ => {
                                let hv = <MetadataResponse as HeaderVersion>::header_version(v);
                                response_frame(cid, hv, v, &MetadataResponse::default())
                            }
                        };
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn oauth_config(token: &str) -> ConnectionConfig {
        use strom_security::client_config::{ClientSasl, OAuthBearerTokenSource};
        ConnectionConfig {
            security: Some(Arc::new(ClientSecurity {
                tls: None,
                sasl: Some(ClientSasl {
                    mechanism: strom_security::sasl::SaslMechanism::OAuthBearer,
                    jaas: None,
                    oauthbearer_token: Some(OAuthBearerTokenSource::Token(token.to_string())),
                }),
            })),
            ..ConnectionConfig::default()
        }
    }

    #[tokio::test]
    async fn oauthbearer_sends_the_token_and_reports_a_refusal() {
        let (addr, mut seen) = fake_oauth_broker().await;
        let conn = Connection::connect(&addr, oauth_config("good.token.sig"))
            .await
            .unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            b"n,,\x01auth=Bearer good.token.sig\x01\x01"
        );
        let req = MetadataRequest::default().with_topics(None);
        conn.send(9, &req).await.unwrap();

        let err = Connection::connect(&addr, oauth_config("expired.token.sig"))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            seen.recv().await.unwrap(),
            b"n,,\x01auth=Bearer expired.token.sig\x01\x01"
        );
        assert_eq!(seen.recv().await.unwrap(), b"\x01");
        assert!(
            err.contains(
                "SASL authentication failed: Authentication failed: Invalid token: expired"
            ) && err.contains(r#"{"status":"invalid_token"}"#)
                && !err.contains('\n'),
            "{err}"
        );
    }

    #[tokio::test]
    async fn negotiates_down_to_an_old_broker() {
        let addr = fake_broker(None).await;
        let conn = Connection::connect(&addr, ConnectionConfig::default())
            .await
            .unwrap();
        assert_eq!(conn.broker_versions(18), Some((0, 2)));
        assert_eq!(conn.version::<MetadataRequest>().unwrap(), 9);
        assert_eq!(conn.version_capped::<MetadataRequest>(4).unwrap(), 4);
        assert!(conn
            .version::<proto_kafka::messages::FetchRequest>()
            .is_err());
        let req = MetadataRequest::default().with_topics(None);
        let resp = conn.send(9, &req).await.unwrap();
        assert!(resp.brokers.is_empty());
    }

    #[tokio::test]
    async fn refuses_oversized_responses() {
        let addr = fake_broker(Some(1 << 30)).await;
        let config = ConnectionConfig {
            max_response_bytes: 1 << 20,
            ..ConnectionConfig::default()
        };
        let conn = Connection::connect(&addr, config).await.unwrap();
        let req = MetadataRequest::default().with_topics(None);
        let err = conn.send(9, &req).await.unwrap_err();
        assert!(err.to_string().contains("more than the limit"), "{err}");
        assert!(!conn.is_alive());
    }

    #[tokio::test]
    async fn times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _keep = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let config = ConnectionConfig {
            request_timeout: Duration::from_millis(200),
            ..ConnectionConfig::default()
        };
        let err = Connection::connect(&addr, config).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
    }
}
