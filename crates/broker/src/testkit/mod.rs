//! An in-process broker for tests (feature `testkit`, always in this crate's own tests): a
//! broker on a directory, built the way `server::run` builds one minus the listeners and the
//! background loops, that takes encoded request frames straight into the dispatcher
//! (`request::handle`) as a connection would, and that can also serve over a loopback socket.

#[cfg(test)]
mod handler_errors;
#[cfg(test)]
mod read_committed;
#[cfg(test)]
mod txn_tests;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use proto_kafka::messages::RequestHeader;
use proto_kafka::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::{BrokerConfig, RawConfig};
use crate::metadata::metadata_log::MetadataLog;
use crate::network::connection::{ConnectionInfo, WaitCancel};
use crate::network::zero_copy::Piece;
use crate::replica_manager::ReplicaManager;
use crate::request::{Reply, RequestError, ResponseFrame};

/// Longest one request may take before a test calls it a hang.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The config of a test broker: defaults, on `data_dir`, acknowledging without waiting for
/// fsync and without the initial rebalance delay, then `overrides`.
pub fn test_config(data_dir: &Path, overrides: &[(&str, &str)]) -> anyhow::Result<BrokerConfig> {
    let mut raw = RawConfig::defaults();
    let dir = data_dir.to_str().context("data directory is not UTF-8")?;
    raw.set("log.dirs", dir, "testkit")?;
    raw.set(
        "log.flush.interval.messages",
        &i64::MAX.to_string(),
        "testkit",
    )?;
    raw.set("group.initial.rebalance.delay.ms", "0", "testkit")?;
    for (name, value) in overrides {
        raw.set(name, value, "testkit")?;
    }
    Ok(BrokerConfig::from_raw(raw)?)
}

/// Opens (or creates) a broker of one node on `config`'s data directory: metadata replayed,
/// partitions opened, the broker registered, groups loaded. No listener, no upkeep loop.
pub async fn open_broker(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
    let data_dir = config.log_dir.clone();
    std::fs::create_dir_all(&data_dir)?;
    let (metadata_log, image) = MetadataLog::open(&data_dir)?;
    let replicas = ReplicaManager::new(config.node_id, &data_dir);
    replicas.apply_image(&image, &config.raw)?;
    let broker = Broker::new(
        config,
        "testkit-cluster".to_string(),
        metadata_log,
        image,
        replicas,
        crate::wiring::services,
    );
    crate::server::register_broker(&broker).await?;
    broker.groups.on_image(&broker.image())?;
    Ok(broker)
}

/// The connection a test's requests arrive on.
pub fn test_connection() -> (watch::Sender<bool>, Arc<ConnectionInfo>) {
    let (cancel_tx, cancel) = WaitCancel::new();
    let info = Arc::new(ConnectionInfo::new(
        "PLAINTEXT".into(),
        ([127, 0, 0, 1], 40000).into(),
        cancel,
    ));
    (cancel_tx, info)
}

/// Encodes a request frame (header and body, no size prefix).
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
) -> Result<BytesMut, proto_kafka::ProtoError> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("testkit")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version))?;
    req.encode(&mut buf, version)?;
    Ok(buf)
}

/// A response's bytes in one buffer, file pieces read from their files.
pub fn flatten(frame: ResponseFrame) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    match frame {
        ResponseFrame::Flat(b) => Ok(b.to_vec()),
        ResponseFrame::Pieces(pieces) => {
            let mut out = Vec::new();
            for p in pieces {
                match p {
                    Piece::Bytes(b) => out.extend_from_slice(&b),
                    Piece::File(r) => {
                        let start = out.len();
                        out.resize(start + r.len, 0);
                        r.file.read_exact_at(&mut out[start..], r.position)?;
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Why a test request got no decoded response.
#[derive(Debug, thiserror::Error)]
pub enum TestRequestError {
    /// The dispatcher refused it: a connection would close.
    #[error("refused: {0}")]
    Refused(#[from] RequestError),
    #[error("no response (acks=0)")]
    NoResponse,
    #[error("response malformed: {0}")]
    Malformed(String),
}

/// A broker on a temporary directory, and the one connection tests speak on.
pub struct TestBroker {
    pub broker: Arc<Broker>,
    info: Arc<ConnectionInfo>,
    cancel: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> anyhow::Result<TestBroker> {
        Self::start_with(&[]).await
    }

    /// A broker with `overrides` over the test config (`test_config`).
    pub async fn start_with(overrides: &[(&str, &str)]) -> anyhow::Result<TestBroker> {
        let dir = tempfile::tempdir()?;
        let broker = open_broker(test_config(dir.path(), overrides)?).await?;
        let (cancel, info) = test_connection();
        let (stop, _) = watch::channel(false);
        Ok(TestBroker {
            broker,
            info,
            cancel,
            stop,
            dir,
        })
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Ends the waits of requests parked on the test connection, as a peer that has gone.
    pub fn cancel_waits(&self) {
        self.cancel.send_replace(true);
    }

    /// Sends one frame (no size prefix) through the dispatcher and returns the response as
    /// sent (size prefix included); `Ok(None)` for no response (acks=0).
    pub async fn send_frame(&self, frame: BytesMut) -> Result<Option<Vec<u8>>, RequestError> {
        let reply = match crate::dispatch::handle(&self.broker, &self.info, frame).await? {
            Reply::Now(r) => r,
            Reply::Later(pending) => tokio::time::timeout(REQUEST_DEADLINE, pending)
                .await
                .unwrap_or_else(|_| panic!("a request did not finish in {REQUEST_DEADLINE:?}")),
        };
        Ok(reply.map(|r| flatten(r).expect("a file piece of a response cannot be read")))
    }

    /// Sends `req` at `version` and decodes the response.
    pub async fn request<R: Request>(
        &self,
        version: i16,
        req: &R,
    ) -> Result<R::Response, TestRequestError> {
        let correlation_id = 0x5eed;
        let frame = encode_request(req, version, correlation_id)
            .map_err(|e| TestRequestError::Malformed(format!("cannot encode: {e}")))?;
        let bytes = self
            .send_frame(frame)
            .await?
            .ok_or(TestRequestError::NoResponse)?;
        decode_response::<R>(&bytes, version, correlation_id)
    }

    /// Serves this broker's Kafka protocol on a loopback port until the TestBroker is dropped.
    pub async fn serve_loopback(&self) -> anyhow::Result<SocketAddr> {
        let buffers = crate::network::listener::SocketBuffers::from_config(&self.broker.config);
        let listener = crate::network::listener::bind("127.0.0.1", 0, buffers).await?;
        let addr = listener.local_addr()?;
        let broker = self.broker.clone();
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                let Ok((stream, peer)) = accepted else {
                    return;
                };
                let b = broker.clone();
                let rx = stop.clone();
                tokio::spawn(crate::network::connection::serve(
                    b,
                    stream,
                    "PLAINTEXT".into(),
                    peer,
                    rx,
                ));
            }
        });
        Ok(addr)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.cancel.send_replace(true);
    }
}

/// Decodes a response frame (size prefix included) to `R`'s response.
pub fn decode_response<R: Request>(
    bytes: &[u8],
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, TestRequestError> {
    let malformed = |what: String| TestRequestError::Malformed(what);
    let (size, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("no size prefix".into()))?;
    if i32::from_be_bytes(*size) as usize != rest.len() {
        return Err(malformed(format!(
            "size prefix {size:?}, {} bytes",
            rest.len()
        )));
    }
    let mut buf = Bytes::copy_from_slice(rest);
    let header_version =
        <R::Response as proto_kafka::protocol::HeaderVersion>::header_version(version);
    let header = proto_kafka::messages::ResponseHeader::decode(&mut buf, header_version)
        .map_err(|e| malformed(format!("header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(malformed(format!(
            "correlation id {} for {correlation_id}",
            header.correlation_id
        )));
    }
    let response =
        R::Response::decode(&mut buf, version).map_err(|e| malformed(format!("body: {e}")))?;
    if !buf.is_empty() {
        return Err(malformed(format!("{} bytes after the body", buf.len())));
    }
    Ok(response)
}
