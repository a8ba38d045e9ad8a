use proto_kafka::messages::ApiVersionsResponse;

/// Our API ranges, from the one version table (strom-protocol's `api`).
pub fn response() -> ApiVersionsResponse {
    strom_protocol::api::api_versions_response()
}
