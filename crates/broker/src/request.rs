//! From a frame to a response: read the header (strom-protocol), check the version against the
//! one API table, and hand the request to its handler through the registry
//! (`handlers::registry`), which decodes the body with the generated codec and frames the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use proto_kafka::protocol::Encodable;
use strom_protocol::api::{check_version, VersionCheck};
use strom_protocol::header::{decode_header, RequestPrefix};
use strom_protocol::zero_copy::FileRanges;

use crate::broker::Broker;
use crate::handlers::registry::{self, Input};
use crate::network::connection::ConnectionInfo;

/// Kept as paths of this crate for the handlers and tests that name them here.
pub use strom_protocol::api::{supported_range, SUPPORTED_APIS};
pub use strom_protocol::{encode_response, RequestError, ResponseFrame};

pub type PendingReply = Pin<Box<dyn Future<Output = Option<ResponseFrame>> + Send>>;

/// A handler's answer: ready now, or later (waiting for durability or data). `None` is no
/// response at all (a produce with acks=0).
pub enum Reply {
    Now(Option<ResponseFrame>),
    Later(PendingReply),
}

pub struct RequestContext {
    pub api: proto_kafka::messages::ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    /// The header's client id ("" when null): group member ids and DescribeGroups use it.
    pub client_id: String,
    pub info: Arc<ConnectionInfo>,
}

impl RequestContext {
    pub fn respond<R: Encodable>(&self, body: &R) -> Result<ResponseFrame, RequestError> {
        encode_response(self.api, self.version, self.correlation_id, body).map(ResponseFrame::Flat)
    }

    /// `respond`, as a reply ready now.
    pub fn reply_now<R: Encodable>(&self, body: &R) -> Result<Reply, RequestError> {
        Ok(Reply::Now(Some(self.respond(body)?)))
    }

    /// As `respond`, for a body whose byte fields (records) are placeholders of `ranges`: their
    /// bytes stay in the files.
    pub fn respond_with_files<R: Encodable>(
        &self,
        body: &R,
        ranges: FileRanges,
    ) -> Result<ResponseFrame, RequestError> {
        strom_protocol::encode_response_with_files(
            self.api,
            self.version,
            self.correlation_id,
            body,
            ranges,
        )
    }
}

/// Handles one request frame (without its size prefix). An error closes the connection.
pub async fn handle(
    broker: &Arc<Broker>,
    info: &Arc<ConnectionInfo>,
    frame: BytesMut,
) -> Result<Reply, RequestError> {
    let started = Instant::now();
    // `frame` keeps the whole request; `body` is the view the decoders consume.
    let frame = frame.freeze();
    let prefix = RequestPrefix::parse(&frame)?;
    let RequestPrefix {
        api,
        version,
        correlation_id,
    } = prefix;
    crate::metrics::request_received(api, frame.len() + 4);
    match check_version(api, version) {
        VersionCheck::Supported => {}
        VersionCheck::ApiVersionsTooNew => {
            let answer = strom_protocol::response::api_versions_unsupported(correlation_id)?;
            return Ok(Reply::Now(Some(ResponseFrame::Flat(answer))));
        }
        VersionCheck::Unsupported => return Err(RequestError::UnsupportedVersion { api, version }),
    }
    let Some(registration) = registry::find(api) else {
        return Err(RequestError::UnsupportedVersion { api, version });
    };
    assert_eq!(
        registration.api, api,
        "the registry answered for another API"
    );
    let mut body = frame.clone();
    let header = decode_header(&prefix, &mut body)?;
    debug_assert!(
        body.len() < frame.len(),
        "a decoded header took no bytes of the frame"
    );
    let ctx = RequestContext {
        api,
        version,
        correlation_id,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        info: info.clone(),
    };
    // The header's fields are views of the frame too; none may outlive this point for the
    // produce handler to get the frame back as its own.
    drop(header);
    let reply = (registration.call)(broker, ctx, Input { frame, body }).await?;
    Ok(timed(reply, api, started))
}

/// Counts the request and its latency once its answer is ready.
fn timed(reply: Reply, api: proto_kafka::messages::ApiKey, started: Instant) -> Reply {
    match reply {
        Reply::Now(bytes) => {
            crate::metrics::request_done(api, started);
            Reply::Now(bytes)
        }
        Reply::Later(fut) => Reply::Later(Box::pin(async move {
            let out = fut.await;
            crate::metrics::request_done(api, started);
            out
        })),
    }
}
