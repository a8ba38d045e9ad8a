//! The security APIs. With an authorizer (`authorizer.class.name`), CreateAcls, DescribeAcls
//! and DeleteAcls go through the controller (Kafka's `AclControlManager`) after an ALTER /
//! DESCRIBE check on the cluster; without one they answer as Kafka does then, instead of
//! closing the connection: SECURITY_DISABLED ("No Authorizer is configured."). Clients and
//! admin tools then report a clear error (kafkajs's describeAcls, `kafka-acls.sh --list`)
//! rather than a broken connection. AlterUserScramCredentials and
//! DescribeUserScramCredentials (KIP-554) are served whether or not an authorizer is
//! configured, as in Kafka. The SASL APIs on a listener that is not SASL say
//! ILLEGAL_SASL_STATE.

use proto_kafka::messages::create_acls_response::AclCreationResult;
use proto_kafka::messages::delete_acls_response::DeleteAclsFilterResult;
use proto_kafka::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use std::collections::BTreeMap;
use std::sync::Arc;

use proto_kafka::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use proto_kafka::messages::delete_acls_response::DeleteAclsMatchingAcl;
use proto_kafka::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use proto_kafka::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use proto_kafka::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use proto_kafka::ResponseError;
use strom_security::authorizer::{AclBinding, AclBindingFilter, AclOperation};
use strom_security::scram::{ScramDeletion, ScramUpsertion};

use super::str_bytes;
use crate::authz;
use crate::broker::Broker;
use crate::metadata::controller::ApiError;
use crate::request::RequestContext;

fn api_error(e: strom_security::authorizer::AclError) -> ApiError {
    ApiError::new(ResponseError::InvalidRequest, e.to_string())
}

fn cluster_denied() -> ApiError {
    ApiError::new(
        ResponseError::ClusterAuthorizationFailed,
        ResponseError::ClusterAuthorizationFailed.to_string(),
    )
}

/// DescribeAcls: DESCRIBE on the cluster, then the ACLs the filter matches, grouped by
/// resource pattern as Kafka answers.
pub fn describe_acls_authorized(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if broker.authz.is_none() {
        return describe_acls(req);
    }
    let fail = |e: ApiError| {
        DescribeAclsResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(str_bytes(&e.message)))
    };
    if !authz::authorize_cluster(broker, &ctx.info, AclOperation::Describe) {
        return fail(cluster_denied());
    }
    let filter = match AclBindingFilter::from_wire(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => return fail(api_error(e)),
    };
    let image = broker.image();
    let mut by_pattern: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for binding in image.acls.values().filter(|b| filter.matches(b)) {
        let e = &binding.entry;
        by_pattern.entry(binding.pattern.clone()).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(&e.principal.to_string()))
                .with_host(str_bytes(&e.host))
                .with_operation(e.operation.code())
                .with_permission_type(e.permission_type.code()),
        );
    }
    let resources = by_pattern
        .into_iter()
        .map(|(p, acls)| {
            DescribeAclsResource::default()
                .with_resource_type(p.resource_type.code())
                .with_resource_name(str_bytes(&p.name))
                .with_pattern_type(p.pattern_type.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

/// CreateAcls: ALTER on the cluster, each creation checked as Kafka's `AclControlManager`.
pub async fn create_acls_authorized(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    if broker.authz.is_none() {
        return create_acls(req);
    }
    let allowed = authz::authorize_cluster(broker, &ctx.info, AclOperation::Alter);
    let creations = req
        .creations
        .iter()
        .map(|c| {
            if !allowed {
                return Err(cluster_denied());
            }
            AclBinding::from_wire(
                c.resource_type,
                &c.resource_name,
                c.resource_pattern_type,
                &c.principal,
                &c.host,
                c.operation,
                c.permission_type,
            )
            .map_err(api_error)
        })
        .collect();
    let results = broker
        .controller()
        .create_acls(creations)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(()) => AclCreationResult::default(),
            Err(e) => AclCreationResult::default()
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(&e.message))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// DeleteAcls: ALTER on the cluster, then per filter the ACLs it matched and removed.
pub async fn delete_acls_authorized(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    if broker.authz.is_none() {
        return delete_acls(req);
    }
    let allowed = authz::authorize_cluster(broker, &ctx.info, AclOperation::Alter);
    let filters = req
        .filters
        .iter()
        .map(|f| {
            if !allowed {
                return Err(cluster_denied());
            }
            AclBindingFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
            .map_err(api_error)
        })
        .collect();
    let results = broker
        .controller()
        .delete_acls(filters)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(bindings) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.pattern.resource_type.code())
                            .with_resource_name(str_bytes(&b.pattern.name))
                            .with_pattern_type(b.pattern.pattern_type.code())
                            .with_principal(str_bytes(&b.entry.principal.to_string()))
                            .with_host(str_bytes(&b.entry.host))
                            .with_operation(b.entry.operation.code())
                            .with_permission_type(b.entry.permission_type.code())
                    })
                    .collect(),
            ),
            Err(e) => DeleteAclsFilterResult::default()
                .with_error_code(e.code)
                .with_error_message(Some(str_bytes(&e.message))),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// AlterUserScramCredentials (KIP-554): ALTER on the cluster, then the controller's checks
/// against the image; one result per user named.
pub async fn alter_user_scram_credentials(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !authz::authorize_cluster(broker, &ctx.info, AclOperation::Alter) {
        let mut users: Vec<&str> = req
            .deletions
            .iter()
            .map(|d| d.name.as_str())
            .chain(req.upsertions.iter().map(|u| u.name.as_str()))
            .collect();
        users.sort_unstable();
        users.dedup();
        let e = cluster_denied();
        let results = users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(u))
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message)))
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    let deletions = req
        .deletions
        .iter()
        .map(|d| ScramDeletion {
            name: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .collect();
    let upsertions = req
        .upsertions
        .iter()
        .map(|u| ScramUpsertion {
            name: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    let results = broker
        .controller()
        .alter_user_scram_credentials(deletions, upsertions)
        .await
        .into_iter()
        .map(|(user, r)| {
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
            match r {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(&e.message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// DescribeUserScramCredentials (KIP-554): DESCRIBE on the cluster; every user with a
/// credential when `users` is null or empty, else each named user (RESOURCE_NOT_FOUND for one
/// without credentials, DUPLICATE_RESOURCE for one named twice). Salts and keys are never
/// shown: only mechanisms and iterations.
pub fn describe_user_scram_credentials(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !authz::authorize_cluster(broker, &ctx.info, AclOperation::Describe) {
        let e = cluster_denied();
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(e.code)
            .with_error_message(Some(str_bytes(&e.message)));
    }
    let image = broker.image();
    let describe = |user: &str| -> DescribeUserScramCredentialsResult {
        let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
        match image.scram_credentials.get(user) {
            Some(by_mechanism) if !by_mechanism.is_empty() => {
                let mut infos: Vec<CredentialInfo> = by_mechanism
                    .values()
                    .map(|c| {
                        CredentialInfo::default()
                            .with_mechanism(c.mechanism.type_code())
                            .with_iterations(c.iterations as i32)
                    })
                    .collect();
                infos.sort_by_key(|i| i.mechanism);
                result.with_credential_infos(infos)
            }
            _ => result
                .with_error_code(ResponseError::ResourceNotFound.code())
                .with_error_message(Some(str_bytes(&format!(
                    "Attempt to describe a user credential that does not exist: {user}"
                )))),
        }
    };
    let results = match req.users.as_deref() {
        None | Some([]) => {
            let mut users: Vec<&String> = image.scram_credentials.keys().collect();
            users.sort();
            users.into_iter().map(|u| describe(u)).collect()
        }
        Some(named) => {
            let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
            for u in named {
                *seen.entry(u.name.as_str()).or_default() += 1;
            }
            let mut done = std::collections::BTreeSet::new();
            named
                .iter()
                .filter(|u| done.insert(u.name.as_str()))
                .map(|u| {
                    if seen[u.name.as_str()] > 1 {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(u.name.clone())
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {}",
                                u.name.as_str()
                            ))))
                    } else {
                        describe(&u.name)
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

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
