//! The security APIs while no authenticator or authorizer is configured, answered as Kafka
//! answers them then, instead of closing the connection: the ACL APIs say SECURITY_DISABLED
//! ("No Authorizer is configured."), and the SASL APIs on a listener that is not SASL say
//! ILLEGAL_SASL_STATE. Clients and admin tools then report a clear error (kafkajs's
//! describeAcls, `kafka-acls.sh --list`) rather than a broken connection.

use proto_kafka::messages::create_acls_response::AclCreationResult;
use proto_kafka::messages::delete_acls_response::DeleteAclsFilterResult;
use proto_kafka::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use proto_kafka::ResponseError;

use super::str_bytes;

const NO_AUTHORIZER: &str = "No Authorizer is configured.";

pub fn describe_acls(_req: DescribeAclsRequest) -> DescribeAclsResponse {
    DescribeAclsResponse::default()
        .with_error_code(ResponseError::SecurityDisabled.code())
        .with_error_message(Some(str_bytes(NO_AUTHORIZER)))
}

/// One SECURITY_DISABLED result per creation asked for.
pub fn create_acls(req: CreateAclsRequest) -> CreateAclsResponse {
    let results = req
        .creations
        .iter()
        .map(|_| {
            AclCreationResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str_bytes(NO_AUTHORIZER)))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// One SECURITY_DISABLED result per filter asked for.
pub fn delete_acls(req: DeleteAclsRequest) -> DeleteAclsResponse {
    let results = req
        .filters
        .iter()
        .map(|_| {
            DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::SecurityDisabled.code())
                .with_error_message(Some(str_bytes(NO_AUTHORIZER)))
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// Every listener is PLAINTEXT today: no mechanism is enabled on it.
pub fn sasl_handshake(_req: SaslHandshakeRequest) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code())
}

pub fn sasl_authenticate(_req: SaslAuthenticateRequest) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received on a listener without SASL",
        )))
}
