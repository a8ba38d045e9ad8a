use proto_kafka::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use proto_kafka::messages::ApiVersionsResponse;
use proto_kafka::protocol::StrBytes;

use crate::broker::Broker;
use crate::config::txns::MAX_TRANSACTION_VERSION;

/// Kafka's name of the transaction protocol feature (KIP-1022).
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";

/// The epoch of the finalized features: they are static settings here, so they never
/// change while a broker runs; Kafka's clients take any epoch above their -1.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

/// Our API ranges, from the one version table (strom-protocol's `api`), and the features
/// finalized. With none finalized no feature is written at all: librdkafka 2.0.x mis-skips
/// the tagged fields they travel in, so only a broker that enables one sends them.
pub fn response(broker: &Broker) -> ApiVersionsResponse {
    with_features(
        strom_protocol::api::api_versions_response(),
        broker.config.txns.transaction_version_level,
    )
}

fn with_features(base: ApiVersionsResponse, transaction_version_level: i16) -> ApiVersionsResponse {
    if transaction_version_level <= 0 {
        return base;
    }
    let name = StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    base.with_supported_features(vec![SupportedFeatureKey::default()
        .with_name(name.clone())
        .with_min_version(0)
        .with_max_version(MAX_TRANSACTION_VERSION)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(name)
            .with_min_version_level(transaction_version_level)
            .with_max_version_level(transaction_version_level)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_version_is_finalized_only_when_enabled() {
        let off = with_features(ApiVersionsResponse::default(), 0);
        assert!(off.finalized_features.is_empty() && off.supported_features.is_empty());
        let on = with_features(ApiVersionsResponse::default(), 2);
        assert_eq!(on.finalized_features.len(), 1);
        assert_eq!(
            on.finalized_features[0].name.as_str(),
            "transaction.version"
        );
        assert_eq!(on.finalized_features[0].max_version_level, 2);
        assert_eq!(on.supported_features[0].max_version, 2);
        assert!(on.finalized_features_epoch >= 0);
    }
}
