//! One shape for every API (mini-redis's parse → apply → respond): a [`Handler`] names its API
//! and request type, and takes the decoded request; [`REGISTRY`] lists one per API of the
//! version table. The adapters here call the handler functions of the other modules with their
//! own signatures, whichever of their shapes (answer now or later, async or not, with the
//! request context or without).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use proto_kafka::messages::{self as m, ApiKey};
use proto_kafka::protocol::VersionRange;
use strom_protocol::header::decode_body;

use super::{
    admin, api_versions, authorize, consumer_group, fetch, group, init_producer_id, list_offsets,
    metadata, produce, security, topic_admin, txn,
};
use crate::broker::Broker;
use crate::request::{Reply, RequestContext, RequestError};

/// A request past its header: the whole frame (Produce patches its batches in it) and the
/// body still to decode (a view of the frame).
pub struct Input {
    pub frame: Bytes,
    pub body: Bytes,
}

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, RequestError>> + Send + 'a>>;
pub type HandlerFn = for<'a> fn(&'a Arc<Broker>, RequestContext, Input) -> HandlerFuture<'a>;

/// A Kafka API as the broker serves it.
pub trait Handler {
    const API: ApiKey;
    type Request: proto_kafka::protocol::Request + Send + 'static;

    /// Answers a decoded request. `frame` is the whole request frame, which nothing else holds
    /// once the body is decoded (only the request's own views of it).
    fn handle<'a>(
        broker: &'a Arc<Broker>,
        ctx: RequestContext,
        req: Self::Request,
        frame: Bytes,
    ) -> impl Future<Output = Result<Reply, RequestError>> + Send + 'a;
}

/// The entry of one API in the registry.
pub struct Registration {
    pub api: ApiKey,
    /// The request type's own key, which must be `api` (checked by a test).
    pub request_key: i16,
    /// The versions the request codec decodes.
    pub request_versions: VersionRange,
    pub call: HandlerFn,
}

/// Decodes the body as `H::Request` and calls `H`.
fn call<H: Handler>(broker: &Arc<Broker>, ctx: RequestContext, input: Input) -> HandlerFuture<'_> {
    Box::pin(async move {
        let Input { frame, mut body } = input;
        let req: H::Request = decode_body(ctx.api, ctx.version, &mut body)?;
        // Only `frame` and the request's own views of it remain: Produce can patch the record
        // batches where they are.
        drop(body);
        H::handle(broker, ctx, req, frame).await
    })
}

const fn register<H: Handler>() -> Registration {
    Registration {
        api: H::API,
        request_key: <H::Request as proto_kafka::protocol::Request>::KEY,
        request_versions: <H::Request as proto_kafka::protocol::Message>::VERSIONS,
        call: call::<H>,
    }
}

/// A unit type per API, named as its `ApiKey`, whose `handle` is `$body` with the broker, the
/// context, the request and the frame bound to the names given.
macro_rules! handlers {
    ($($api:ident($req:ty) = |$b:ident, $ctx:ident, $r:ident, $frame:pat_param| $body:expr;)*) => {
        $(
            pub struct $api;
            impl Handler for $api {
                const API: ApiKey = ApiKey::$api;
                type Request = $req;
                #[allow(unused_variables)]
                fn handle<'a>(
                    $b: &'a Arc<Broker>,
                    $ctx: RequestContext,
                    $r: $req,
                    $frame: Bytes,
                ) -> impl Future<Output = Result<Reply, RequestError>> + Send + 'a {
                    async move { $body }
                }
            }
        )*
        /// Every API served, each with its handler.
        pub static REGISTRY: &[Registration] = &[$(register::<$api>(),)*];
    };
}

handlers! {
    Produce(m::ProduceRequest) = |b, ctx, req, frame| Ok(produce::handle(b, ctx, req, frame));
    Fetch(m::FetchRequest) = |b, ctx, req, _| Ok(fetch::handle(b, ctx, req));
    ListOffsets(m::ListOffsetsRequest) = |b, ctx, req, _| {
        let mut req = req;
        let denied = authorize::split_list_offsets(b, &ctx, &mut req);
        let mut body = list_offsets::handle(b, &ctx, req);
        body.topics.extend(denied);
        reply_counted(&ctx, &body)
    };
    Metadata(m::MetadataRequest) = |b, ctx, req, _| {
        let body = metadata::handle(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    ApiVersions(m::ApiVersionsRequest) = |b, ctx, req, _| ctx.reply_now(&api_versions::response(b));
    CreateTopics(m::CreateTopicsRequest) = |b, ctx, req, _| {
        let body = admin::create_topics(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    DeleteTopics(m::DeleteTopicsRequest) = |b, ctx, req, _| {
        let body = admin::delete_topics(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    DescribeConfigs(m::DescribeConfigsRequest) = |b, ctx, req, _| {
        let mut req = req;
        let denied = authorize::split_describe_configs(b, &ctx, &mut req);
        let mut body = admin::describe_configs(b, &ctx, req);
        body.results.extend(denied);
        reply_counted(&ctx, &body)
    };
    DescribeCluster(m::DescribeClusterRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &admin::describe_cluster(b, &ctx, req));
    InitProducerId(m::InitProducerIdRequest) = |b, ctx, req, _| {
        if let Some(refused) = authorize::init_producer_id(b, &ctx, &req) {
            return reply_counted(&ctx, &refused);
        }
        let body = init_producer_id::handle(b, ctx.version, req).await;
        reply_counted(&ctx, &body)
    };
    FindCoordinator(m::FindCoordinatorRequest) = |b, ctx, req, _| {
        if let Some((refused, code)) = authorize::find_coordinator(b, &ctx, &req) {
            crate::metrics::request_error_code("FindCoordinator", code);
            return ctx.reply_now(&refused);
        }
        group::find_coordinator(b, ctx, req)
    };
    JoinGroup(m::JoinGroupRequest) = |b, ctx, req, _| group::join_group(b, ctx, req);
    SyncGroup(m::SyncGroupRequest) = |b, ctx, req, _| group::sync_group(b, ctx, req);
    Heartbeat(m::HeartbeatRequest) = |b, ctx, req, _| group::heartbeat(b, ctx, req);
    LeaveGroup(m::LeaveGroupRequest) = |b, ctx, req, _| group::leave_group(b, ctx, req);
    OffsetCommit(m::OffsetCommitRequest) = |b, ctx, req, _| group::offset_commit(b, ctx, req);
    OffsetFetch(m::OffsetFetchRequest) = |b, ctx, req, _| group::offset_fetch(b, ctx, req);
    ListGroups(m::ListGroupsRequest) = |b, ctx, req, _| group::list_groups(b, ctx, req);
    DescribeGroups(m::DescribeGroupsRequest) =
        |b, ctx, req, _| group::describe_groups(b, ctx, req);
    DeleteGroups(m::DeleteGroupsRequest) = |b, ctx, req, _| group::delete_groups(b, ctx, req);
    OffsetDelete(m::OffsetDeleteRequest) = |b, ctx, req, _| group::offset_delete(b, ctx, req);
    CreatePartitions(m::CreatePartitionsRequest) = |b, ctx, req, _| {
        let mut req = req;
        let denied = authorize::split_create_partitions(b, &ctx, &mut req);
        let mut body = topic_admin::create_partitions(b, req).await;
        body.results.extend(denied);
        reply_counted(&ctx, &body)
    };
    AlterConfigs(m::AlterConfigsRequest) = |b, ctx, req, _| {
        let mut req = req;
        let denied = authorize::split_alter_configs(b, &ctx, &mut req);
        let mut body = topic_admin::alter_configs(b, req).await;
        body.responses.extend(denied);
        reply_counted(&ctx, &body)
    };
    IncrementalAlterConfigs(m::IncrementalAlterConfigsRequest) = |b, ctx, req, _| {
        let mut req = req;
        let denied = authorize::split_incremental_alter_configs(b, &ctx, &mut req);
        let mut body = topic_admin::incremental_alter_configs(b, req).await;
        body.responses.extend(denied);
        reply_counted(&ctx, &body)
    };
    DeleteRecords(m::DeleteRecordsRequest) = |b, ctx, req, _| {
        let mut req = req;
        let denied = authorize::split_delete_records(b, &ctx, &mut req);
        let mut body = topic_admin::delete_records(b, req).await;
        body.topics.extend(denied);
        reply_counted(&ctx, &body)
    };
    DescribeLogDirs(m::DescribeLogDirsRequest) = |b, ctx, req, _| {
        if let Some(refused) = authorize::describe_log_dirs(b, &ctx) {
            return reply_counted(&ctx, &refused);
        }
        reply_counted(&ctx, &topic_admin::describe_log_dirs(b, &ctx, req))
    };
    DescribeTopicPartitions(m::DescribeTopicPartitionsRequest) = |b, ctx, req, _| {
        let named = !req.topics.is_empty();
        let mut body = topic_admin::describe_topic_partitions(b, req);
        authorize::filter_describe_topic_partitions(b, &ctx, named, &mut body);
        reply_counted(&ctx, &body)
    };
    ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatRequest) =
        |b, ctx, req, _| consumer_group::heartbeat(b, ctx, req);
    ConsumerGroupDescribe(m::ConsumerGroupDescribeRequest) =
        |b, ctx, req, _| consumer_group::describe(b, ctx, req);
    SaslHandshake(m::SaslHandshakeRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &security::sasl_handshake(req));
    SaslAuthenticate(m::SaslAuthenticateRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &security::sasl_authenticate(req));
    DescribeAcls(m::DescribeAclsRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &security::describe_acls_authorized(b, &ctx, req));
    CreateAcls(m::CreateAclsRequest) = |b, ctx, req, _| {
        let body = security::create_acls_authorized(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    DeleteAcls(m::DeleteAclsRequest) = |b, ctx, req, _| {
        let body = security::delete_acls_authorized(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    AlterUserScramCredentials(m::AlterUserScramCredentialsRequest) = |b, ctx, req, _| {
        let body = security::alter_user_scram_credentials(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    DescribeUserScramCredentials(m::DescribeUserScramCredentialsRequest) = |b, ctx, req, _| {
        reply_counted(&ctx, &security::describe_user_scram_credentials(b, &ctx, req))
    };
    AddPartitionsToTxn(m::AddPartitionsToTxnRequest) = |b, ctx, req, _| {
        let body = txn::add_partitions_to_txn(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    AddOffsetsToTxn(m::AddOffsetsToTxnRequest) = |b, ctx, req, _| {
        let body = txn::add_offsets_to_txn(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    EndTxn(m::EndTxnRequest) = |b, ctx, req, _| {
        let body = txn::end_txn(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    TxnOffsetCommit(m::TxnOffsetCommitRequest) = |b, ctx, req, _| {
        let body = txn::txn_offset_commit(b, &ctx, req).await;
        reply_counted(&ctx, &body)
    };
    DescribeTransactions(m::DescribeTransactionsRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &txn::describe_transactions(b, req));
    ListTransactions(m::ListTransactionsRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &txn::list_transactions(b, &ctx, req));
    DescribeProducers(m::DescribeProducersRequest) =
        |b, ctx, req, _| reply_counted(&ctx, &txn::describe_producers(b, req));
}

/// Answers now with `body`, its error codes counted under the API.
fn reply_counted<R>(ctx: &RequestContext, body: &R) -> Result<Reply, RequestError>
where
    R: proto_kafka::protocol::Encodable + super::error_codes::ErrorCodes,
{
    super::error_codes::count(ctx, body);
    ctx.reply_now(body)
}

/// The registration of `api`, if it is served.
pub fn find(api: ApiKey) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.api == api)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::api::SUPPORTED_APIS;

    #[test]
    fn every_api_in_the_table_has_exactly_one_handler_and_back() {
        for spec in SUPPORTED_APIS {
            let n = REGISTRY.iter().filter(|r| r.api == spec.key).count();
            assert_eq!(n, 1, "{:?} has {n} handlers", spec.key);
        }
        for r in REGISTRY {
            let n = SUPPORTED_APIS.iter().filter(|s| s.key == r.api).count();
            assert_eq!(n, 1, "{:?} is handled but {n} times in the table", r.api);
        }
        assert_eq!(REGISTRY.len(), SUPPORTED_APIS.len());
    }

    #[test]
    fn each_handler_decodes_its_own_api_up_to_the_advertised_version() {
        for r in REGISTRY {
            assert_eq!(
                r.request_key, r.api as i16,
                "{:?}: wrong request type",
                r.api
            );
            let Some((_, max)) = strom_protocol::supported_range(r.api) else {
                panic!("{:?} not in the table", r.api);
            };
            assert!(
                max <= r.request_versions.max,
                "{:?} advertised to v{max}, decoded to v{}",
                r.api,
                r.request_versions.max
            );
        }
    }
}
