use proto_kafka::messages::api_versions_response::ApiVersion;
use proto_kafka::messages::ApiVersionsResponse;

use crate::request::SUPPORTED_APIS;

/// Our API ranges. Features stay empty, so no tagged fields are written: librdkafka 2.0.x
/// mis-skips them in ApiVersions responses (Kafka, too, writes them only when set).
pub fn response() -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}
