//! `strom acl create|list|delete` (kafka-acls.sh's options where they fit) and `strom user
//! create|list|delete` (SCRAM credentials, as `kafka-configs.sh --entity-type users
//! --alter --add-config 'SCRAM-SHA-256=[password=...]'`): CreateAcls / DescribeAcls /
//! DeleteAcls and AlterUserScramCredentials / DescribeUserScramCredentials against the
//! controller. The password is salted and hashed here; only the salted password is sent.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use proto_kafka::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use proto_kafka::messages::create_acls_request::AclCreation;
use proto_kafka::messages::delete_acls_request::DeleteAclsFilter;
use proto_kafka::messages::describe_user_scram_credentials_request::UserName;
use proto_kafka::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use proto_kafka::protocol::StrBytes;
use proto_kafka::ResponseError;
use serde_json::json;
use strom_security::authorizer::{
    AclOperation, AclPermissionType, PatternType, ResourceType, CLUSTER_NAME,
};
use strom_security::scram::{new_salt, salted_password, ScramMechanism};

use super::output::{print, print_json, Table};
use super::{ClientOpts, OutputFormat};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let name = ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"));
    match message {
        Some(m) if !m.is_empty() => bail!("{what}: {name}: {}", m.as_str()),
        _ => bail!("{what}: {name}"),
    }
}

// --- acl -------------------------------------------------------------------------

#[derive(Args)]
pub struct AclArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: AclCommand,
}

/// The resource an ACL is on (kafka-acls.sh's --topic, --group, --cluster, --transactional-id).
#[derive(Args, Clone, Debug, Default)]
pub struct ResourceOpts {
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// The cluster resource (kafka-cluster).
    #[arg(long)]
    cluster: bool,
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// literal or prefixed; for list and delete also any and match (default: literal for
    /// create, any otherwise).
    #[arg(long, value_enum, value_name = "TYPE")]
    resource_pattern_type: Option<PatternArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PatternArg {
    Literal,
    Prefixed,
    Any,
    Match,
}

impl PatternArg {
    fn pattern(self) -> PatternType {
        match self {
            PatternArg::Literal => PatternType::Literal,
            PatternArg::Prefixed => PatternType::Prefixed,
            PatternArg::Any => PatternType::Any,
            PatternArg::Match => PatternType::Match,
        }
    }
}

impl ResourceOpts {
    /// The one resource named, or `None` when none is (list and delete then match all).
    fn resource(&self) -> anyhow::Result<Option<(ResourceType, String)>> {
        let mut chosen = Vec::new();
        if let Some(t) = &self.topic {
            chosen.push((ResourceType::Topic, t.clone()));
        }
        if let Some(g) = &self.group {
            chosen.push((ResourceType::Group, g.clone()));
        }
        if self.cluster {
            chosen.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        if let Some(x) = &self.transactional_id {
            chosen.push((ResourceType::TransactionalId, x.clone()));
        }
        if chosen.len() > 1 {
            bail!("name one resource: --topic, --group, --cluster or --transactional-id");
        }
        Ok(chosen.pop())
    }
}

#[derive(Subcommand)]
pub enum AclCommand {
    /// Add ACLs: each principal gets each operation on the resource.
    Create {
        #[command(flatten)]
        resource: ResourceOpts,
        /// Principal to allow, e.g. User:alice (repeatable).
        #[arg(long, value_name = "PRINCIPAL")]
        allow_principal: Vec<String>,
        /// Principal to deny (repeatable).
        #[arg(long, value_name = "PRINCIPAL")]
        deny_principal: Vec<String>,
        /// Host the allow applies to (default: every host, *).
        #[arg(long, default_value = "*", value_name = "HOST")]
        allow_host: String,
        /// Host the deny applies to (default: every host, *).
        #[arg(long, default_value = "*", value_name = "HOST")]
        deny_host: String,
        /// Operation, e.g. Read, Write, Describe, All (repeatable).
        #[arg(long, required = true, value_name = "OPERATION")]
        operation: Vec<String>,
    },
    /// List the ACLs matching the options (every ACL without any).
    List {
        #[command(flatten)]
        resource: ResourceOpts,
        /// Only ACLs of this principal.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },
    /// Remove the ACLs matching the options (as many as `list` with them shows).
    Delete {
        #[command(flatten)]
        resource: ResourceOpts,
        /// Only ACLs of this principal.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
        /// Only ACLs of this operation.
        #[arg(long, value_name = "OPERATION")]
        operation: Option<String>,
        /// Remove everything the filter matches, even with no resource named.
        #[arg(long)]
        force: bool,
    },
}

struct Filter {
    resource_type: ResourceType,
    name: Option<String>,
    pattern: PatternType,
    principal: Option<String>,
    operation: AclOperation,
}

fn filter(
    resource: &ResourceOpts,
    principal: Option<String>,
    operation: Option<&str>,
) -> anyhow::Result<Filter> {
    let (resource_type, name) = match resource.resource()? {
        Some((t, n)) => (t, Some(n)),
        None => (ResourceType::Any, None),
    };
    let operation = match operation {
        Some(o) => o.parse::<AclOperation>()?,
        None => AclOperation::Any,
    };
    Ok(Filter {
        resource_type,
        name,
        pattern: resource
            .resource_pattern_type
            .map_or(PatternType::Any, PatternArg::pattern),
        principal,
        operation,
    })
}

pub async fn run_acl(args: AclArgs) -> anyhow::Result<()> {
    let client = args.opts.connect().await?;
    let conn = client.controller().await?;
    let output = args.opts.output;
    match args.command {
        AclCommand::Create {
            resource,
            allow_principal,
            deny_principal,
            allow_host,
            deny_host,
            operation,
        } => {
            let Some((resource_type, name)) = resource.resource()? else {
                bail!("name the resource: --topic, --group, --cluster or --transactional-id");
            };
            let pattern = resource
                .resource_pattern_type
                .map_or(PatternType::Literal, PatternArg::pattern);
            if !matches!(pattern, PatternType::Literal | PatternType::Prefixed) {
                bail!("--resource-pattern-type of a new ACL is literal or prefixed");
            }
            if allow_principal.is_empty() && deny_principal.is_empty() {
                bail!("give --allow-principal or --deny-principal");
            }
            let ops = operation
                .iter()
                .map(|o| o.parse::<AclOperation>())
                .collect::<Result<Vec<_>, _>>()?;
            let mut creations = Vec::new();
            let entries = allow_principal
                .iter()
                .map(|p| (p, &allow_host, AclPermissionType::Allow))
                .chain(
                    deny_principal
                        .iter()
                        .map(|p| (p, &deny_host, AclPermissionType::Deny)),
                );
            for (principal, host, perm) in entries {
                for op in &ops {
                    creations.push(
                        AclCreation::default()
                            .with_resource_type(resource_type.code())
                            .with_resource_name(s(&name))
                            .with_resource_pattern_type(pattern.code())
                            .with_principal(s(principal))
                            .with_host(s(host))
                            .with_operation(op.code())
                            .with_permission_type(perm.code()),
                    );
                }
            }
            let version = conn.version::<CreateAclsRequest>()?;
            let n = creations.len();
            let resp = conn
                .send(
                    version,
                    &CreateAclsRequest::default().with_creations(creations),
                )
                .await?;
            for r in &resp.results {
                check(r.error_code, r.error_message.as_ref(), "create ACL")?;
            }
            match output {
                OutputFormat::Json => print_json(&json!({ "created": n })),
                OutputFormat::Table => print(&format!("created {n} ACL(s)\n")),
            }
        }
        AclCommand::List {
            resource,
            principal,
        } => {
            let f = filter(&resource, principal, None)?;
            let req = DescribeAclsRequest::default()
                .with_resource_type_filter(f.resource_type.code())
                .with_resource_name_filter(f.name.as_deref().map(s))
                .with_pattern_type_filter(f.pattern.code())
                .with_principal_filter(f.principal.as_deref().map(s))
                .with_host_filter(None)
                .with_operation(f.operation.code())
                .with_permission_type(AclPermissionType::Any.code());
            let version = conn.version::<DescribeAclsRequest>()?;
            let resp = conn.send(version, &req).await?;
            check(resp.error_code, resp.error_message.as_ref(), "list ACLs")?;
            let mut rows = Vec::new();
            for r in &resp.resources {
                for a in &r.acls {
                    rows.push((
                        ResourceType::from_code(r.resource_type).to_string(),
                        r.resource_name.to_string(),
                        PatternType::from_code(r.pattern_type).to_string(),
                        a.principal.to_string(),
                        a.host.to_string(),
                        AclOperation::from_code(a.operation).to_string(),
                        AclPermissionType::from_code(a.permission_type).to_string(),
                    ));
                }
            }
            print_acls(output, &rows)
        }
        AclCommand::Delete {
            resource,
            principal,
            operation,
            force,
        } => {
            let f = filter(&resource, principal, operation.as_deref())?;
            if f.name.is_none() && f.principal.is_none() && !force {
                bail!(
                    "this would delete every ACL: name a resource or a principal, or give --force"
                );
            }
            let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_resource_type_filter(f.resource_type.code())
                .with_resource_name_filter(f.name.as_deref().map(s))
                .with_pattern_type_filter(f.pattern.code())
                .with_principal_filter(f.principal.as_deref().map(s))
                .with_host_filter(None)
                .with_operation(f.operation.code())
                .with_permission_type(AclPermissionType::Any.code())]);
            let version = conn.version::<DeleteAclsRequest>()?;
            let resp = conn.send(version, &req).await?;
            let mut rows = Vec::new();
            for r in &resp.filter_results {
                check(r.error_code, r.error_message.as_ref(), "delete ACLs")?;
                for a in &r.matching_acls {
                    rows.push((
                        ResourceType::from_code(a.resource_type).to_string(),
                        a.resource_name.to_string(),
                        PatternType::from_code(a.pattern_type).to_string(),
                        a.principal.to_string(),
                        a.host.to_string(),
                        AclOperation::from_code(a.operation).to_string(),
                        AclPermissionType::from_code(a.permission_type).to_string(),
                    ));
                }
            }
            print_acls(output, &rows)
        }
    }
}

type AclRow = (String, String, String, String, String, String, String);

fn print_acls(output: OutputFormat, rows: &[AclRow]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&json!(rows
            .iter()
            .map(|(t, n, p, pr, h, o, perm)| json!({
                "resource_type": t, "resource_name": n, "pattern_type": p,
                "principal": pr, "host": h, "operation": o, "permission_type": perm,
            }))
            .collect::<Vec<_>>())),
        OutputFormat::Table => {
            let mut table = Table::new(&[
                "RESOURCE-TYPE",
                "NAME",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ]);
            for (t, n, p, pr, h, o, perm) in rows {
                table.row(vec![
                    t.clone(),
                    n.clone(),
                    p.clone(),
                    pr.clone(),
                    h.clone(),
                    o.clone(),
                    perm.clone(),
                ]);
            }
            print(&table.render())
        }
    }
}

// --- user ------------------------------------------------------------------------

#[derive(Args)]
pub struct UserArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MechanismArg {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl MechanismArg {
    fn mechanism(self) -> ScramMechanism {
        match self {
            MechanismArg::ScramSha256 => ScramMechanism::Sha256,
            MechanismArg::ScramSha512 => ScramMechanism::Sha512,
        }
    }
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a SCRAM credential for a user, or replace it (the password is salted here).
    Create {
        name: String,
        /// The password (default: the STROM_USER_PASSWORD environment variable).
        #[arg(long, env = "STROM_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, value_enum, default_value = "SCRAM-SHA-256")]
        mechanism: MechanismArg,
        /// PBKDF2 iterations (Kafka's default and minimum: 4096; at most 16384).
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
    /// Users with SCRAM credentials: mechanisms and iterations (never keys or salts).
    List {
        /// Only these users.
        names: Vec<String>,
    },
    /// Remove a user's SCRAM credential for a mechanism.
    Delete {
        name: String,
        #[arg(long, value_enum, default_value = "SCRAM-SHA-256")]
        mechanism: MechanismArg,
    },
}

pub async fn run_user(args: UserArgs) -> anyhow::Result<()> {
    let client = args.opts.connect().await?;
    let conn = client.controller().await?;
    let output = args.opts.output;
    match args.command {
        UserCommand::Create {
            name,
            password,
            mechanism,
            iterations,
        } => {
            let mechanism = mechanism.mechanism();
            let salt = new_salt();
            let salted = salted_password(mechanism, &password, &salt, iterations)
                .context("cannot derive the credential")?;
            let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                ScramCredentialUpsertion::default()
                    .with_name(s(&name))
                    .with_mechanism(mechanism.type_code())
                    .with_iterations(iterations as i32)
                    .with_salt(salt.into())
                    .with_salted_password(salted.into()),
            ]);
            let version = conn.version::<AlterUserScramCredentialsRequest>()?;
            let resp = conn.send(version, &req).await?;
            for r in &resp.results {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("user {}", r.user.as_str()),
                )?;
            }
            match output {
                OutputFormat::Json => {
                    print_json(&json!({ "user": name, "mechanism": mechanism.mechanism_name() }))
                }
                OutputFormat::Table => print(&format!(
                    "user {name}: {} credential set\n",
                    mechanism.mechanism_name()
                )),
            }
        }
        UserCommand::Delete { name, mechanism } => {
            let mechanism = mechanism.mechanism();
            let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
                ScramCredentialDeletion::default()
                    .with_name(s(&name))
                    .with_mechanism(mechanism.type_code()),
            ]);
            let version = conn.version::<AlterUserScramCredentialsRequest>()?;
            let resp = conn.send(version, &req).await?;
            for r in &resp.results {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("user {}", r.user.as_str()),
                )?;
            }
            match output {
                OutputFormat::Json => {
                    print_json(&json!({ "deleted": name, "mechanism": mechanism.mechanism_name() }))
                }
                OutputFormat::Table => print(&format!(
                    "user {name}: {} credential removed\n",
                    mechanism.mechanism_name()
                )),
            }
        }
        UserCommand::List { names } => {
            let users = (!names.is_empty()).then(|| {
                names
                    .iter()
                    .map(|n| UserName::default().with_name(s(n)))
                    .collect()
            });
            let req = DescribeUserScramCredentialsRequest::default().with_users(users);
            let version = conn.version::<DescribeUserScramCredentialsRequest>()?;
            let resp = conn.send(version, &req).await?;
            check(resp.error_code, resp.error_message.as_ref(), "list users")?;
            let mut rows = Vec::new();
            for r in &resp.results {
                check(
                    r.error_code,
                    r.error_message.as_ref(),
                    &format!("user {}", r.user.as_str()),
                )?;
                for c in &r.credential_infos {
                    let m = ScramMechanism::from_type_code(c.mechanism)
                        .map_or("UNKNOWN", ScramMechanism::mechanism_name);
                    rows.push((r.user.to_string(), m, c.iterations));
                }
            }
            match output {
                OutputFormat::Json => print_json(&json!(rows
                    .iter()
                    .map(|(u, m, i)| json!({"user": u, "mechanism": m, "iterations": i}))
                    .collect::<Vec<_>>())),
                OutputFormat::Table => {
                    let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
                    for (u, m, i) in rows {
                        table.row(vec![u, m.to_string(), i.to_string()]);
                    }
                    print(&table.render())
                }
            }
        }
    }
}
