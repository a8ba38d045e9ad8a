//! The dispatcher: from a request frame to its handler's reply. Reads the prefix, checks the
//! version against the API table, decodes the header, finds the handler in the registry, and
//! times the answer.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use strom_protocol::api::{check_version, VersionCheck};
use strom_protocol::header::{decode_header, RequestPrefix};

use crate::broker::Broker;
use crate::handlers::registry::{self, Input};
use crate::request::{ConnectionInfo, Reply, RequestContext, RequestError, ResponseFrame};

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
