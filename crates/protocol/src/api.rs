//! The APIs this broker serves and their versions: the one table ApiVersions answers from, the
//! dispatcher checks against and the metrics name APIs by.

use proto_kafka::messages::api_versions_response::ApiVersion;
use proto_kafka::messages::{ApiKey, ApiVersionsResponse};
use proto_kafka::ResponseError;

/// One served API: its key, the name metrics label it with, and the versions advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSpec {
    pub key: ApiKey,
    pub name: &'static str,
    pub min_version: i16,
    pub max_version: i16,
}

const fn api(key: ApiKey, name: &'static str, min_version: i16, max_version: i16) -> ApiSpec {
    ApiSpec {
        key,
        name,
        min_version,
        max_version,
    }
}

/// Produce is advertised from v0 as Kafka does: librdkafka disables compression against brokers
/// that do not list v0. Versions below what the codecs decode are refused when actually used.
pub const SUPPORTED_APIS: &[ApiSpec] = &[
    // v12 is v11 for the broker, but a transaction version 2 client's v12 adds the
    // partition to its transaction (KIP-890 part 2).
    api(ApiKey::Produce, "Produce", 0, 12),
    api(ApiKey::Fetch, "Fetch", 4, 16),
    api(ApiKey::ListOffsets, "ListOffsets", 1, 8),
    api(ApiKey::Metadata, "Metadata", 0, 12),
    api(ApiKey::ApiVersions, "ApiVersions", 0, 4),
    api(ApiKey::CreateTopics, "CreateTopics", 2, 7),
    api(ApiKey::DeleteTopics, "DeleteTopics", 1, 6),
    api(ApiKey::DescribeConfigs, "DescribeConfigs", 1, 4),
    api(ApiKey::DescribeCluster, "DescribeCluster", 0, 1),
    api(ApiKey::InitProducerId, "InitProducerId", 0, 5),
    api(ApiKey::FindCoordinator, "FindCoordinator", 0, 6),
    api(ApiKey::JoinGroup, "JoinGroup", 0, 9),
    api(ApiKey::SyncGroup, "SyncGroup", 0, 5),
    api(ApiKey::Heartbeat, "Heartbeat", 0, 4),
    api(ApiKey::LeaveGroup, "LeaveGroup", 0, 5),
    api(ApiKey::OffsetCommit, "OffsetCommit", 2, 9),
    api(ApiKey::OffsetFetch, "OffsetFetch", 1, 9),
    api(ApiKey::ListGroups, "ListGroups", 0, 5),
    api(ApiKey::DescribeGroups, "DescribeGroups", 0, 6),
    api(ApiKey::DeleteGroups, "DeleteGroups", 0, 2),
    api(ApiKey::OffsetDelete, "OffsetDelete", 0, 0),
    api(ApiKey::CreatePartitions, "CreatePartitions", 0, 3),
    api(ApiKey::AlterConfigs, "AlterConfigs", 0, 2),
    api(
        ApiKey::IncrementalAlterConfigs,
        "IncrementalAlterConfigs",
        0,
        1,
    ),
    api(ApiKey::DeleteRecords, "DeleteRecords", 0, 2),
    api(ApiKey::DescribeLogDirs, "DescribeLogDirs", 1, 4),
    api(
        ApiKey::DescribeTopicPartitions,
        "DescribeTopicPartitions",
        0,
        0,
    ),
    api(
        ApiKey::ConsumerGroupHeartbeat,
        "ConsumerGroupHeartbeat",
        0,
        1,
    ),
    api(ApiKey::ConsumerGroupDescribe, "ConsumerGroupDescribe", 0, 1),
    // Answered as Kafka answers them with no authenticator or authorizer configured.
    api(ApiKey::SaslHandshake, "SaslHandshake", 0, 1),
    api(ApiKey::SaslAuthenticate, "SaslAuthenticate", 0, 2),
    api(ApiKey::DescribeAcls, "DescribeAcls", 1, 3),
    api(ApiKey::CreateAcls, "CreateAcls", 1, 3),
    api(ApiKey::DeleteAcls, "DeleteAcls", 1, 3),
    // Transactions (KIP-98, KIP-447, KIP-664, KIP-890). EndTxn v5 and TxnOffsetCommit v5 are
    // transaction version 2 (an epoch bump per transaction, offsets joining the transaction
    // with their commit), used by clients only where the broker finalizes
    // `transaction.version` 2; AddPartitionsToTxn v4+ is the brokers' batched form.
    api(ApiKey::AddPartitionsToTxn, "AddPartitionsToTxn", 0, 4),
    api(ApiKey::AddOffsetsToTxn, "AddOffsetsToTxn", 0, 4),
    api(ApiKey::EndTxn, "EndTxn", 0, 5),
    api(ApiKey::TxnOffsetCommit, "TxnOffsetCommit", 0, 5),
    api(ApiKey::DescribeTransactions, "DescribeTransactions", 0, 0),
    api(ApiKey::ListTransactions, "ListTransactions", 0, 2),
    api(ApiKey::DescribeProducers, "DescribeProducers", 0, 0),
    api(
        ApiKey::DescribeUserScramCredentials,
        "DescribeUserScramCredentials",
        0,
        0,
    ),
    api(
        ApiKey::AlterUserScramCredentials,
        "AlterUserScramCredentials",
        0,
        0,
    ),
];

/// The metrics label of an API that is not served.
pub const UNSERVED_API_NAME: &str = "Other";

pub fn spec(api: ApiKey) -> Option<&'static ApiSpec> {
    SUPPORTED_APIS.iter().find(|s| s.key == api)
}

pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    spec(api).map(|s| (s.min_version, s.max_version))
}

/// The name metrics label `api` with: the table's, or "Other" for an API not served.
pub fn api_name(api: ApiKey) -> &'static str {
    spec(api).map_or(UNSERVED_API_NAME, |s| s.name)
}

/// What the dispatcher does with a request's api key and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    Supported,
    /// An ApiVersions newer than ours: answered in v0 with UNSUPPORTED_VERSION and our ranges,
    /// so the client can retry with a version we speak (KIP-511).
    ApiVersionsTooNew,
    /// Anything else outside the table: the connection is closed, as Kafka does.
    Unsupported,
}

pub fn check_version(api: ApiKey, version: i16) -> VersionCheck {
    let Some((min, max)) = supported_range(api) else {
        return VersionCheck::Unsupported;
    };
    if api == ApiKey::ApiVersions && version > max {
        return VersionCheck::ApiVersionsTooNew;
    }
    if version < min || version > max {
        return VersionCheck::Unsupported;
    }
    VersionCheck::Supported
}

/// Our API ranges. Features stay empty, so no tagged fields are written: librdkafka 2.0.x
/// mis-skips them in ApiVersions responses (Kafka, too, writes them only when set).
pub fn api_versions_response() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min_version)
                .with_max_version(s.max_version)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// The body of the answer to an ApiVersions newer than ours (to be encoded as v0).
pub fn api_versions_unsupported_response() -> ApiVersionsResponse {
    api_versions_response().with_error_code(ResponseError::UnsupportedVersion.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_table_names_each_api_once_with_sane_ranges() {
        let mut keys = HashSet::new();
        let mut names = HashSet::new();
        for s in SUPPORTED_APIS {
            assert!(keys.insert(s.key), "{:?} listed twice", s.key);
            assert!(names.insert(s.name), "name {} used twice", s.name);
            assert!(s.min_version <= s.max_version, "{:?}: empty range", s.key);
            let codec = s.key.valid_versions();
            // The codecs must decode everything advertised at the top; below their minimum a
            // version is advertised only for Produce (see SUPPORTED_APIS) and refused when used.
            assert!(s.max_version <= codec.max, "{:?}: above the codec", s.key);
            assert_eq!(
                format!("{:?}", s.key),
                s.name,
                "metrics name of {:?}",
                s.key
            );
        }
    }

    #[test]
    fn produce_is_advertised_from_v0() {
        assert_eq!(supported_range(ApiKey::Produce), Some((0, 12)));
        let response = api_versions_response();
        let produce = response
            .api_keys
            .iter()
            .find(|a| a.api_key == ApiKey::Produce as i16)
            .map(|a| a.min_version);
        assert_eq!(
            produce,
            Some(0),
            "Produce is advertised from v0, as Kafka does"
        );
        assert_eq!(response.api_keys.len(), SUPPORTED_APIS.len());
    }

    #[test]
    fn version_checks() {
        assert_eq!(check_version(ApiKey::Fetch, 4), VersionCheck::Supported);
        assert_eq!(check_version(ApiKey::Fetch, 3), VersionCheck::Unsupported);
        assert_eq!(check_version(ApiKey::Fetch, 17), VersionCheck::Unsupported);
        assert_eq!(
            check_version(ApiKey::ApiVersions, 5),
            VersionCheck::ApiVersionsTooNew
        );
        assert_eq!(
            check_version(ApiKey::ApiVersions, -1),
            VersionCheck::Unsupported
        );
        // Inter-broker only: a client's WriteTxnMarkers is not served.
        assert_eq!(
            check_version(ApiKey::WriteTxnMarkers, 0),
            VersionCheck::Unsupported
        );
        assert_eq!(api_name(ApiKey::WriteTxnMarkers), UNSERVED_API_NAME);
        assert_eq!(check_version(ApiKey::EndTxn, 5), VersionCheck::Supported);
        assert_eq!(check_version(ApiKey::EndTxn, 6), VersionCheck::Unsupported);
        assert_eq!(api_name(ApiKey::Produce), "Produce");
    }
}
