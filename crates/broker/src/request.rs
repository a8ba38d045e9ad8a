//! From a frame to a response: check and decode the header, check the version, decode the body
//! with the generated codecs, call the handler, frame the response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use proto_kafka::messages::{
    ApiKey, ApiVersionsResponse, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, ResponseHeader,
};
use proto_kafka::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DeleteGroupsRequest,
    DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use proto_kafka::protocol::buf::SegmentedBuf;
use proto_kafka::protocol::{Decodable, Encodable, Message};
use proto_kafka::ResponseError;
use thiserror::Error;

use crate::broker::Broker;
use crate::handlers;
use crate::network::connection::ConnectionInfo;
use crate::network::zero_copy::{self, FileRanges, Piece};

pub type PendingReply = Pin<Box<dyn Future<Output = Option<ResponseFrame>> + Send>>;

/// An encoded response, size prefix included. Fetch responses leave record bytes in the
/// segment files (pieces), to be sent from there with sendfile.
pub enum ResponseFrame {
    Flat(BytesMut),
    Pieces(Vec<Piece>),
}

impl ResponseFrame {
    pub fn len(&self) -> usize {
        match self {
            ResponseFrame::Flat(b) => b.len(),
            ResponseFrame::Pieces(p) => p.iter().map(Piece::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A handler's answer: ready now, or later (waiting for durability or data). `None` is no
/// response at all (a produce with acks=0).
pub enum Reply {
    Now(Option<ResponseFrame>),
    Later(PendingReply),
}

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} response: {reason}")]
    Encode { api: ApiKey, reason: String },
}

/// The APIs and versions this broker serves. Produce is advertised from v0 as Kafka does:
/// librdkafka disables compression against brokers that do not list v0. Versions below what
/// the codecs decode are refused when actually used.
impl RequestError {
    pub fn api_name(&self) -> &'static str {
        match self {
            RequestError::UnknownApiKey(_) => "Unknown",
            RequestError::UnsupportedVersion { api, .. }
            | RequestError::Decode { api, .. }
            | RequestError::Encode { api, .. } => crate::metrics::api_name(*api),
        }
    }
}

pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(_, min, max)| (*min, *max))
}

pub struct RequestContext {
    pub api: ApiKey,
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

    /// As `respond`, for a body whose byte fields (records) are placeholders of `ranges`: their
    /// bytes stay in the files.
    pub fn respond_with_files<R: Encodable>(
        &self,
        body: &R,
        ranges: FileRanges,
    ) -> Result<ResponseFrame, RequestError> {
        let err = |e: proto_kafka::ProtoError| RequestError::Encode {
            api: self.api,
            reason: e.to_string(),
        };
        let header = ResponseHeader::default().with_correlation_id(self.correlation_id);
        let header_version = self.api.response_header_version(self.version);
        let size = header.compute_size(header_version).map_err(err)?
            + body.compute_size(self.version).map_err(err)?;
        let mut buf = SegmentedBuf::new();
        buf.put_i32(size as i32);
        header.encode(&mut buf, header_version).map_err(err)?;
        body.encode(&mut buf, self.version).map_err(err)?;
        debug_assert_eq!(bytes::Buf::remaining(&buf), 4 + size);
        let pieces = zero_copy::split(buf, ranges).map_err(|e| RequestError::Encode {
            api: self.api,
            reason: e.to_string(),
        })?;
        Ok(ResponseFrame::Pieces(pieces))
    }
}

pub fn encode_response<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<BytesMut, RequestError> {
    let err = |e: proto_kafka::ProtoError| RequestError::Encode {
        api,
        reason: e.to_string(),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let size = header.compute_size(header_version).map_err(err)?
        + body.compute_size(version).map_err(err)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version).map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf)
}

fn decode<T: Decodable + Message>(
    api: ApiKey,
    version: i16,
    body: &mut Bytes,
) -> Result<T, RequestError> {
    if version < T::VERSIONS.min || version > T::VERSIONS.max {
        return Err(RequestError::UnsupportedVersion { api, version });
    }
    T::decode(body, version).map_err(|e| RequestError::Decode {
        api,
        version,
        reason: e.to_string(),
    })
}

/// The ApiVersions answer to a version we do not know: v0 format, UNSUPPORTED_VERSION, and our
/// ranges, so the client can retry with a version we speak (KIP-511).
fn api_versions_unsupported(correlation_id: i32) -> Result<BytesMut, RequestError> {
    let body = handlers::api_versions::response()
        .with_error_code(ResponseError::UnsupportedVersion.code());
    encode_response::<ApiVersionsResponse>(ApiKey::ApiVersions, 0, correlation_id, &body)
}

pub async fn handle(
    broker: &Arc<Broker>,
    info: &Arc<ConnectionInfo>,
    frame: BytesMut,
) -> Result<Reply, RequestError> {
    let started = Instant::now();
    // `frame` keeps the whole request; `buf` is the view the decoders consume.
    let frame = frame.freeze();
    let mut buf = frame.clone();
    // The frame layer guarantees the 8 bytes of api key, version and correlation id; the
    // generated header decoder would panic on fewer.
    if buf.len() < crate::network::frame::MIN_REQUEST_BYTES {
        return Err(RequestError::UnknownApiKey(-1));
    }
    let raw_key = i16::from_be_bytes([buf[0], buf[1]]);
    let version = i16::from_be_bytes([buf[2], buf[3]]);
    let correlation_id = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let api = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
    crate::metrics::request_received(api, buf.len() + 4);
    let Some((min, max)) = supported_range(api) else {
        return Err(RequestError::UnsupportedVersion { api, version });
    };
    if api == ApiKey::ApiVersions && version > max {
        return Ok(Reply::Now(Some(ResponseFrame::Flat(
            api_versions_unsupported(correlation_id)?,
        ))));
    }
    if version < min || version > max {
        return Err(RequestError::UnsupportedVersion { api, version });
    }
    let header =
        proto_kafka::header_io::decode_request_header_from_buffer(&mut buf).map_err(|e| {
            RequestError::Decode {
                api,
                version,
                reason: format!("header: {e}"),
            }
        })?;
    let ctx = RequestContext {
        api,
        version,
        correlation_id,
        client_id: header.client_id.map(|c| c.to_string()).unwrap_or_default(),
        info: info.clone(),
    };
    // The header's fields are views of the frame too; none may outlive this point for the
    // produce handler to get the frame back as its own.
    drop(header.unknown_tagged_fields);
    let body = &mut buf;
    let reply = match api {
        ApiKey::ApiVersions => Reply::Now(Some(ctx.respond(&handlers::api_versions::response())?)),
        ApiKey::Metadata => {
            let req: MetadataRequest = decode(api, version, body)?;
            Reply::Now(Some(
                ctx.respond(&handlers::metadata::handle(broker, &ctx, req).await)?,
            ))
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode(api, version, body)?;
            // Only `frame` and the request's own views of it remain: the handler can patch the
            // record batches where they are.
            drop(std::mem::take(body));
            handlers::produce::handle(broker, ctx, req, frame)
        }
        ApiKey::Fetch => {
            let req: FetchRequest = decode(api, version, body)?;
            handlers::fetch::handle(broker, ctx, req)
        }
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = decode(api, version, body)?;
            Reply::Now(Some(
                ctx.respond(&handlers::list_offsets::handle(broker, &ctx, req))?,
            ))
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::admin::create_topics(broker, &ctx, req).await,
            )?))
        }
        ApiKey::DeleteTopics => {
            let req: DeleteTopicsRequest = decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::admin::delete_topics(broker, &ctx, req).await,
            )?))
        }
        ApiKey::DescribeConfigs => {
            let req: DescribeConfigsRequest = decode(api, version, body)?;
            Reply::Now(Some(
                ctx.respond(&handlers::admin::describe_configs(broker, &ctx, req))?,
            ))
        }
        ApiKey::DescribeCluster => {
            let req: DescribeClusterRequest = decode(api, version, body)?;
            Reply::Now(Some(
                ctx.respond(&handlers::admin::describe_cluster(broker, &ctx, req))?,
            ))
        }
        ApiKey::CreatePartitions => {
            let req: proto_kafka::messages::CreatePartitionsRequest = decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::topic_admin::create_partitions(broker, req).await,
            )?))
        }
        ApiKey::AlterConfigs => {
            let req: proto_kafka::messages::AlterConfigsRequest = decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::topic_admin::alter_configs(broker, req).await,
            )?))
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: proto_kafka::messages::IncrementalAlterConfigsRequest =
                decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::topic_admin::incremental_alter_configs(broker, req).await,
            )?))
        }
        ApiKey::DeleteRecords => {
            let req: proto_kafka::messages::DeleteRecordsRequest = decode(api, version, body)?;
            Reply::Now(Some(
                ctx.respond(&handlers::topic_admin::delete_records(broker, req))?,
            ))
        }
        ApiKey::DescribeLogDirs => {
            let req: proto_kafka::messages::DescribeLogDirsRequest = decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::topic_admin::describe_log_dirs(broker, &ctx, req),
            )?))
        }
        ApiKey::DescribeTopicPartitions => {
            let req: proto_kafka::messages::DescribeTopicPartitionsRequest =
                decode(api, version, body)?;
            Reply::Now(Some(ctx.respond(
                &handlers::topic_admin::describe_topic_partitions(broker, req),
            )?))
        }
        ApiKey::InitProducerId => {
            let req: InitProducerIdRequest = decode(api, version, body)?;
            Reply::Now(Some(
                ctx.respond(&handlers::init_producer_id::handle(broker, req).await)?,
            ))
        }
        ApiKey::FindCoordinator => {
            let req: FindCoordinatorRequest = decode(api, version, body)?;
            handlers::group::find_coordinator(broker, ctx, req)?
        }
        ApiKey::JoinGroup => {
            let req: JoinGroupRequest = decode(api, version, body)?;
            handlers::group::join_group(broker, ctx, req)?
        }
        ApiKey::SyncGroup => {
            let req: SyncGroupRequest = decode(api, version, body)?;
            handlers::group::sync_group(broker, ctx, req)?
        }
        ApiKey::Heartbeat => {
            let req: HeartbeatRequest = decode(api, version, body)?;
            handlers::group::heartbeat(broker, ctx, req)?
        }
        ApiKey::LeaveGroup => {
            let req: LeaveGroupRequest = decode(api, version, body)?;
            handlers::group::leave_group(broker, ctx, req)?
        }
        ApiKey::OffsetCommit => {
            let req: OffsetCommitRequest = decode(api, version, body)?;
            handlers::group::offset_commit(broker, ctx, req)?
        }
        ApiKey::OffsetFetch => {
            let req: OffsetFetchRequest = decode(api, version, body)?;
            handlers::group::offset_fetch(broker, ctx, req)?
        }
        ApiKey::ListGroups => {
            let req: ListGroupsRequest = decode(api, version, body)?;
            handlers::group::list_groups(broker, ctx, req)?
        }
        ApiKey::DescribeGroups => {
            let req: DescribeGroupsRequest = decode(api, version, body)?;
            handlers::group::describe_groups(broker, ctx, req)?
        }
        ApiKey::DeleteGroups => {
            let req: DeleteGroupsRequest = decode(api, version, body)?;
            handlers::group::delete_groups(broker, ctx, req)?
        }
        ApiKey::OffsetDelete => {
            let req: OffsetDeleteRequest = decode(api, version, body)?;
            handlers::group::offset_delete(broker, ctx, req)?
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let req: ConsumerGroupHeartbeatRequest = decode(api, version, body)?;
            handlers::consumer_group::heartbeat(broker, ctx, req)?
        }
        ApiKey::ConsumerGroupDescribe => {
            let req: ConsumerGroupDescribeRequest = decode(api, version, body)?;
            handlers::consumer_group::describe(broker, ctx, req)?
        }
        _ => return Err(RequestError::UnsupportedVersion { api, version }),
    };
    Ok(match reply {
        Reply::Now(bytes) => {
            crate::metrics::request_done(api, started);
            Reply::Now(bytes)
        }
        Reply::Later(fut) => Reply::Later(Box::pin(async move {
            let out = fut.await;
            crate::metrics::request_done(api, started);
            out
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A request body that declares i32::MAX array elements followed by a few bytes: the
    /// codecs must refuse it, not try to allocate it (kafka-protocol 0.18 aborted here).
    #[test]
    fn hostile_array_lengths_are_errors_not_aborts() {
        let mut body = BytesMut::new();
        body.put_i32(i32::MAX);
        body.put_slice(&[0u8; 16]);
        let mut b = body.clone().freeze();
        assert!(decode::<MetadataRequest>(ApiKey::Metadata, 1, &mut b).is_err());

        let mut produce = BytesMut::new();
        produce.put_i16(-1); // transactional id: null
        produce.put_i16(1); // acks
        produce.put_i32(1000); // timeout
        produce.put_i32(i32::MAX); // topic count
        produce.put_slice(&[0u8; 8]);
        let mut b = produce.freeze();
        assert!(decode::<ProduceRequest>(ApiKey::Produce, 3, &mut b).is_err());

        let mut fetch = BytesMut::new();
        fetch.put_i32(-1); // replica id
        fetch.put_i32(500);
        fetch.put_i32(1);
        fetch.put_i32(1024);
        fetch.put_i8(0);
        fetch.put_i32(i32::MAX); // topic count
        let mut b = fetch.freeze();
        assert!(decode::<FetchRequest>(ApiKey::Fetch, 4, &mut b).is_err());
    }

    #[test]
    fn api_versions_too_new_answers_v0_unsupported() {
        let reply = api_versions_unsupported(7).unwrap();
        // size, correlation id, error code
        assert_eq!(&reply[4..8], &7i32.to_be_bytes());
        assert_eq!(
            &reply[8..10],
            &ResponseError::UnsupportedVersion.code().to_be_bytes()
        );
        let produce = SUPPORTED_APIS
            .iter()
            .find(|(k, _, _)| *k == ApiKey::Produce)
            .unwrap();
        assert_eq!(produce.1, 0, "Produce is advertised from v0, as Kafka does");
    }
}
