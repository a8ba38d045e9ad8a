//! ACLs and the authorizer, after Kafka's `org.apache.kafka.common.acl`,
//! `org.apache.kafka.common.resource` and `org.apache.kafka.metadata.authorizer`
//! (`StandardAuthorizer`, `StandardAuthorizerData`, `AclControlManager`'s validation).
//!
//! Semantics are Kafka's: a DENY that matches wins over any ALLOW; an ALLOW of READ, WRITE,
//! DELETE or ALTER also allows DESCRIBE, and ALTER_CONFIGS allows DESCRIBE_CONFIGS; `User:*`
//! and host `*` are wildcards; a resource with no ACL at all is allowed only with
//! `allow.everyone.if.no.acl.found`; `super.users` skip the ACLs.
//!
//! Lookups: literal ACLs are found by exact key; prefixed ACLs are kept sorted by name and
//! found by walking down from the resource name, jumping to the common prefix each time a
//! key does not match (Kafka does the same on its sorted set), so a lookup costs
//! O((m + 1) log n) for m matching prefixes among n prefixed ACLs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::principal::{KafkaPrincipal, USER_TYPE};

/// Kafka's `ResourcePattern.WILDCARD_RESOURCE`: a literal ACL on `*` covers every name.
pub const WILDCARD_RESOURCE: &str = "*";
/// Kafka's `AclEntry.WILDCARD_HOST`.
pub const WILDCARD_HOST: &str = "*";
/// The one name of the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// "Authorized operations were not requested" (the schema's default, Integer.MIN_VALUE).
pub const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// Kafka's 32-bit field of operations: bit `code` set for each.
pub fn bit_field(ops: &[AclOperation]) -> i32 {
    ops.iter().fold(0, |bits, op| bits | (1 << op.code()))
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(i8)]
        pub enum $name { $($variant = $code,)* }

        impl $name {
            /// The wire code (Kafka's `code()`).
            pub fn code(self) -> i8 { self as i8 }
            /// The value of a wire code; an unknown code is Kafka's UNKNOWN.
            pub fn from_code(code: i8) -> Self {
                match code { $($code => $name::$variant,)* _ => $name::Unknown }
            }
            /// Kafka's upper-case name, as in kafka-acls.sh output.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        /// Case-insensitive, `_` optional (`DescribeConfigs`, `DESCRIBE_CONFIGS`), as
        /// kafka-acls.sh takes them.
        impl FromStr for $name {
            type Err = AclError;
            fn from_str(s: &str) -> Result<Self, AclError> {
                let norm: String = s.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_uppercase();
                $(if norm == $text.replace('_', "") { return Ok($name::$variant); })*
                Err(AclError::InvalidRequest(format!("Unknown {} `{s}`", stringify!($name))))
            }
        }
    };
}

wire_enum!(
    /// Kafka's `ResourceType`.
    ResourceType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
        DelegationToken = 6, "DELEGATION_TOKEN";
        User = 7, "USER";
    }
);

wire_enum!(
    /// Kafka's `PatternType`. ANY and MATCH exist only in filters.
    PatternType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Match = 2, "MATCH";
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
);

wire_enum!(
    /// Kafka's `AclOperation`.
    AclOperation {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
        CreateTokens = 13, "CREATE_TOKENS";
        DescribeTokens = 14, "DESCRIBE_TOKENS";
    }
);

wire_enum!(
    /// Kafka's `AclPermissionType`.
    AclPermissionType {
        Unknown = 0, "UNKNOWN";
        Any = 1, "ANY";
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
);

impl ResourceType {
    /// The operations an ACL on this resource type can grant (Kafka's
    /// `AclEntry.supportedOperations`), which authorized-operations fields are made of.
    /// Groups have the configs operations since Kafka 4 (KIP-848 group configs).
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation as Op;
        match self {
            ResourceType::Topic => &[
                Op::Read,
                Op::Write,
                Op::Create,
                Op::Delete,
                Op::Alter,
                Op::Describe,
                Op::DescribeConfigs,
                Op::AlterConfigs,
            ],
            ResourceType::Group => &[
                Op::Read,
                Op::Delete,
                Op::Describe,
                Op::DescribeConfigs,
                Op::AlterConfigs,
            ],
            ResourceType::Cluster => &[
                Op::Create,
                Op::Alter,
                Op::Describe,
                Op::ClusterAction,
                Op::DescribeConfigs,
                Op::AlterConfigs,
                Op::IdempotentWrite,
            ],
            ResourceType::TransactionalId => &[Op::Write, Op::Describe],
            ResourceType::DelegationToken => &[Op::Describe],
            ResourceType::User => &[Op::CreateTokens, Op::DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }
}

/// What CreateAcls, DeleteAcls and DescribeAcls refuse; the broker answers
/// INVALID_REQUEST with the message, as Kafka's `AclControlManager` does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("{0}")]
    InvalidRequest(String),
}

fn invalid(msg: impl Into<String>) -> AclError {
    AclError::InvalidRequest(msg.into())
}

/// Kafka's `ResourcePattern`: a resource type, a name, LITERAL or PREFIXED.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern_type: PatternType,
}

/// Kafka's `AccessControlEntry`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessControlEntry {
    pub principal: KafkaPrincipal,
    pub host: String,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

/// Kafka's `AclBinding`: what one `AccessControlEntryRecord` in the metadata log holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AccessControlEntry,
}

impl AclBinding {
    /// Builds a binding from the wire fields of a CreateAcls creation, with
    /// `AclControlManager.validateNewAcl`'s checks.
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission_type: i8,
    ) -> Result<Self, AclError> {
        let binding = AclBinding {
            pattern: ResourcePattern {
                resource_type: ResourceType::from_code(resource_type),
                name: resource_name.to_string(),
                pattern_type: PatternType::from_code(pattern_type),
            },
            entry: AccessControlEntry {
                principal: KafkaPrincipal::parse(principal).map_err(|e| invalid(e.to_string()))?,
                host: host.to_string(),
                operation: AclOperation::from_code(operation),
                permission_type: AclPermissionType::from_code(permission_type),
            },
        };
        binding.validate()?;
        Ok(binding)
    }

    /// Kafka's checks of a new ACL, in its order: the broker's (`AclApis`: CLUSTER only by
    /// its one name, no empty name), then the controller's (`AclControlManager.validateNewAcl`:
    /// concrete types only, so a filter's ANY or MATCH is refused).
    pub fn validate(&self) -> Result<(), AclError> {
        let p = &self.pattern;
        if p.resource_type == ResourceType::Cluster && p.name != CLUSTER_NAME {
            return Err(invalid(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            )));
        }
        if p.name.is_empty() {
            return Err(invalid("Invalid empty resource name"));
        }
        match p.resource_type {
            ResourceType::Unknown | ResourceType::Any => {
                return Err(invalid(format!("Invalid resourceType {}", p.resource_type)))
            }
            _ => {}
        }
        match p.pattern_type {
            PatternType::Literal | PatternType::Prefixed => {}
            other => return Err(invalid(format!("Invalid patternType {other}"))),
        }
        let e = &self.entry;
        match e.operation {
            AclOperation::Unknown | AclOperation::Any => {
                return Err(invalid(format!("Invalid operation {}", e.operation)))
            }
            _ => {}
        }
        match e.permission_type {
            AclPermissionType::Allow | AclPermissionType::Deny => {}
            other => return Err(invalid(format!("Invalid permissionType {other}"))),
        }
        Ok(())
    }
}

/// Kafka's `ResourcePatternFilter`: `None` name matches any name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePatternFilter {
    pub resource_type: ResourceType,
    pub name: Option<String>,
    pub pattern_type: PatternType,
}

impl ResourcePatternFilter {
    /// Kafka's `ResourcePatternFilter.matches`. MATCH means "every ACL that would apply to
    /// this resource": the literal name, the literal wildcard, and prefixes of the name.
    pub fn matches(&self, pattern: &ResourcePattern) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != pattern.resource_type {
            return false;
        }
        if self.pattern_type != PatternType::Any
            && self.pattern_type != PatternType::Match
            && self.pattern_type != pattern.pattern_type
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern_type == PatternType::Any || self.pattern_type == pattern.pattern_type {
            return *name == pattern.name;
        }
        match pattern.pattern_type {
            PatternType::Literal => *name == pattern.name || pattern.name == WILDCARD_RESOURCE,
            PatternType::Prefixed => name.starts_with(&pattern.name),
            _ => false,
        }
    }
}

/// Kafka's `AccessControlEntryFilter`: `None` principal or host matches any. The principal
/// is compared as the string `Type:name`, as Kafka does, so one that does not parse simply
/// matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessControlEntryFilter {
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission_type: AclPermissionType,
}

impl AccessControlEntryFilter {
    pub fn matches(&self, entry: &AccessControlEntry) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|p| *p == entry.principal.to_string())
            && self.host.as_ref().is_none_or(|h| *h == entry.host)
            && (self.operation == AclOperation::Any || self.operation == entry.operation)
            && (self.permission_type == AclPermissionType::Any
                || self.permission_type == entry.permission_type)
    }
}

/// Kafka's `AclBindingFilter`, as DescribeAcls and DeleteAcls carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclBindingFilter {
    pub pattern: ResourcePatternFilter,
    pub entry: AccessControlEntryFilter,
}

impl AclBindingFilter {
    /// The filter that matches every ACL (kafka-acls.sh --list with no options).
    pub fn any() -> Self {
        AclBindingFilter {
            pattern: ResourcePatternFilter {
                resource_type: ResourceType::Any,
                name: None,
                pattern_type: PatternType::Any,
            },
            entry: AccessControlEntryFilter {
                principal: None,
                host: None,
                operation: AclOperation::Any,
                permission_type: AclPermissionType::Any,
            },
        }
    }

    /// Builds a filter from DescribeAcls/DeleteAcls wire fields with Kafka's validation
    /// (`AclControlManager.validateFilter`): UNKNOWN in the pattern or the entry part is
    /// INVALID_REQUEST.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission_type: i8,
    ) -> Result<Self, AclError> {
        let resource_type = ResourceType::from_code(resource_type);
        let pattern_type = PatternType::from_code(pattern_type);
        if resource_type == ResourceType::Unknown || pattern_type == PatternType::Unknown {
            return Err(invalid("Unknown patternFilter."));
        }
        let operation = AclOperation::from_code(operation);
        let permission_type = AclPermissionType::from_code(permission_type);
        if operation == AclOperation::Unknown || permission_type == AclPermissionType::Unknown {
            return Err(invalid("Unknown entryFilter."));
        }
        Ok(AclBindingFilter {
            pattern: ResourcePatternFilter {
                resource_type,
                name: resource_name.map(str::to_string),
                pattern_type,
            },
            entry: AccessControlEntryFilter {
                principal: principal.map(str::to_string),
                host: host.map(str::to_string),
                operation,
                permission_type,
            },
        })
    }

    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.pattern.matches(&binding.pattern) && self.entry.matches(&binding.entry)
    }
}

/// Kafka's `AuthorizationResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationResult {
    Allowed,
    Denied,
}

/// The authorizer's static settings, by their Kafka names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `super.users`: principals that skip the ACLs.
    pub super_users: HashSet<KafkaPrincipal>,
    /// `allow.everyone.if.no.acl.found` (default false).
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerConfig {
    /// Parses `super.users` as Kafka does: principals separated by `;`, blanks trimmed.
    pub fn parse_super_users(value: &str) -> Result<HashSet<KafkaPrincipal>, AclError> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| KafkaPrincipal::parse(s).map_err(|e| invalid(e.to_string())))
            .collect()
    }
}

/// An ACL as the index keeps it: the entry and the id of its metadata record.
#[derive(Debug, Clone)]
struct IndexedEntry {
    id: Uuid,
    entry: AccessControlEntry,
}

/// ACL entries by resource name, per resource type, so lookups borrow the name.
type ByName<M> = HashMap<ResourceType, M>;

/// Kafka's `StandardAuthorizer` over its `StandardAuthorizerData`: the ACLs, applied from
/// metadata records by id, and the lookups that answer `authorize`.
#[derive(Debug, Default)]
pub struct StandardAuthorizer {
    config: AuthorizerConfig,
    by_id: HashMap<Uuid, AclBinding>,
    literal: ByName<HashMap<String, Vec<IndexedEntry>>>,
    prefixed: ByName<BTreeMap<String, Vec<IndexedEntry>>>,
}

impl StandardAuthorizer {
    pub fn new(config: AuthorizerConfig) -> Self {
        StandardAuthorizer {
            config,
            ..Default::default()
        }
    }

    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    pub fn acl_count(&self) -> usize {
        self.by_id.len()
    }

    /// The id of an ACL equal to `binding`, if there is one: CreateAcls of an existing ACL
    /// succeeds without a second record, as in Kafka.
    pub fn find(&self, binding: &AclBinding) -> Option<Uuid> {
        self.by_id
            .iter()
            .find(|(_, b)| *b == binding)
            .map(|(id, _)| *id)
    }

    /// Applies an `AccessControlEntryRecord`. The binding must have passed
    /// [`AclBinding::validate`]; an id seen before is replaced.
    pub fn add_acl(&mut self, id: Uuid, binding: AclBinding) {
        self.remove_acl(id);
        let (rt, name) = (binding.pattern.resource_type, binding.pattern.name.clone());
        let indexed = IndexedEntry {
            id,
            entry: binding.entry.clone(),
        };
        match binding.pattern.pattern_type {
            PatternType::Prefixed => self
                .prefixed
                .entry(rt)
                .or_default()
                .entry(name)
                .or_default()
                .push(indexed),
            _ => self
                .literal
                .entry(rt)
                .or_default()
                .entry(name)
                .or_default()
                .push(indexed),
        }
        self.by_id.insert(id, binding);
    }

    /// Applies a `RemoveAccessControlEntryRecord`; the removed binding, if it was there.
    pub fn remove_acl(&mut self, id: Uuid) -> Option<AclBinding> {
        let binding = self.by_id.remove(&id)?;
        let (rt, name) = (binding.pattern.resource_type, binding.pattern.name.as_str());
        fn drop_entry<M: NameMap>(index: &mut ByName<M>, rt: ResourceType, name: &str, id: Uuid) {
            let Some(by_name) = index.get_mut(&rt) else {
                return;
            };
            if by_name.retain_in(name, id) {
                by_name.remove_name(name);
            }
            if by_name.is_empty_map() {
                index.remove(&rt);
            }
        }
        if binding.pattern.pattern_type == PatternType::Prefixed {
            drop_entry(&mut self.prefixed, rt, name, id);
        } else {
            drop_entry(&mut self.literal, rt, name, id);
        }
        Some(binding)
    }

    /// The ACLs a DescribeAcls or DeleteAcls filter selects, with their ids, in a stable
    /// order. Callers validate the filter with [`AclBindingFilter::from_wire`].
    pub fn acls_matching(&self, filter: &AclBindingFilter) -> Vec<(Uuid, AclBinding)> {
        let mut out: Vec<(Uuid, AclBinding)> = self
            .by_id
            .iter()
            .filter(|(_, b)| filter.matches(b))
            .map(|(id, b)| (*id, b.clone()))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Kafka's `Authorizer.authorize` for one action on one concrete resource.
    pub fn authorize(
        &self,
        principal: &KafkaPrincipal,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> AuthorizationResult {
        if self.config.super_users.contains(principal) {
            return AuthorizationResult::Allowed;
        }
        // ANY, ALL and UNKNOWN are not actions; Kafka throws, a denial is the safe answer.
        if matches!(
            operation,
            AclOperation::Any | AclOperation::All | AclOperation::Unknown
        ) {
            return AuthorizationResult::Denied;
        }
        let mut found_resource_acl = false;
        let mut allowed = false;
        let mut visit = |entries: &[IndexedEntry]| -> bool {
            for e in entries {
                found_resource_acl = true;
                match entry_decision(&e.entry, principal, host, operation) {
                    Some(AclPermissionType::Deny) => return true,
                    Some(AclPermissionType::Allow) => allowed = true,
                    _ => {}
                }
            }
            false
        };
        if let Some(by_name) = self.literal.get(&resource_type) {
            let wildcard = (resource_name != WILDCARD_RESOURCE).then_some(WILDCARD_RESOURCE);
            for key in std::iter::once(resource_name).chain(wildcard) {
                if let Some(entries) = by_name.get(key) {
                    if visit(entries) {
                        return AuthorizationResult::Denied;
                    }
                }
            }
        }
        if self.visit_prefixes(resource_type, resource_name, &mut visit) {
            return AuthorizationResult::Denied;
        }
        if allowed || (!found_resource_acl && self.config.allow_everyone_if_no_acl_found) {
            AuthorizationResult::Allowed
        } else {
            AuthorizationResult::Denied
        }
    }

    /// Kafka's `Authorizer.authorizeByResourceType`: may the principal perform `operation`
    /// on at least one resource of this type? (InitProducerId asks it for WRITE on any
    /// topic, KIP-679.) Super users, `allow.everyone.if.no.acl.found` and a wildcard ALLOW
    /// say yes; a wildcard literal DENY says no; otherwise some ALLOW must not be covered
    /// by a DENY of the same literal name or of a prefix of it.
    pub fn authorize_by_resource_type(
        &self,
        principal: &KafkaPrincipal,
        host: &str,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> AuthorizationResult {
        // Kafka checks a made-up name first, so super users pass whatever the DENYs say.
        if self.authorize(principal, host, operation, resource_type, "hardcode")
            == AuthorizationResult::Allowed
        {
            return AuthorizationResult::Allowed;
        }
        let mut deny_literal = HashSet::new();
        let mut deny_prefixed = HashSet::new();
        let mut allow: Vec<(PatternType, &str)> = Vec::new();
        let wildcard = KafkaPrincipal::user("*");
        let mut wildcard_allow = false;
        for binding in self.by_id.values() {
            let (p, e) = (&binding.pattern, &binding.entry);
            if p.resource_type != resource_type
                || (e.host != WILDCARD_HOST && e.host != host)
                || (e.principal != *principal && e.principal != wildcard)
                || (e.operation != operation && e.operation != AclOperation::All)
            {
                continue;
            }
            match (e.permission_type, p.pattern_type) {
                (AclPermissionType::Deny, PatternType::Literal) => {
                    if p.name == WILDCARD_RESOURCE {
                        return AuthorizationResult::Denied;
                    }
                    deny_literal.insert(p.name.as_str());
                }
                (AclPermissionType::Deny, PatternType::Prefixed) => {
                    deny_prefixed.insert(p.name.as_str());
                }
                (AclPermissionType::Allow, PatternType::Literal) if p.name == WILDCARD_RESOURCE => {
                    // Not returned at once: a wildcard DENY met later still wins.
                    wildcard_allow = true;
                }
                (AclPermissionType::Allow, pt) => allow.push((pt, p.name.as_str())),
                _ => {}
            }
        }
        if wildcard_allow {
            return AuthorizationResult::Allowed;
        }
        let allowed = allow.iter().any(|(pt, name)| {
            if *pt == PatternType::Literal && deny_literal.contains(name) {
                return false;
            }
            !name
                .char_indices()
                .map(|(i, c)| &name[..i + c.len_utf8()])
                .any(|prefix| deny_prefixed.contains(prefix))
        });
        if allowed {
            AuthorizationResult::Allowed
        } else {
            AuthorizationResult::Denied
        }
    }

    /// The operations the principal may perform on a resource, as the 32-bit field of
    /// Metadata, DescribeCluster, DescribeGroups and friends (`includeXxxAuthorizedOperations`):
    /// each of the type's supported operations, authorized one by one, as Kafka does.
    pub fn authorized_operations(
        &self,
        principal: &KafkaPrincipal,
        host: &str,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> i32 {
        resource_type
            .supported_operations()
            .iter()
            .filter(|op| {
                self.authorize(principal, host, **op, resource_type, resource_name)
                    == AuthorizationResult::Allowed
            })
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// [`Self::authorized_operations`] when the request asked for them, else Kafka's
    /// "not requested" value.
    pub fn authorized_operations_if(
        &self,
        requested: bool,
        principal: &KafkaPrincipal,
        host: &str,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> i32 {
        if requested {
            self.authorized_operations(principal, host, resource_type, resource_name)
        } else {
            OPS_NOT_REQUESTED
        }
    }

    /// Calls `visit` on every prefixed ACL list whose name is a prefix of `name`, longest
    /// first; stops early (and returns true) when `visit` does.
    fn visit_prefixes(
        &self,
        resource_type: ResourceType,
        name: &str,
        visit: &mut impl FnMut(&[IndexedEntry]) -> bool,
    ) -> bool {
        use std::ops::Bound;
        let Some(by_name) = self.prefixed.get(&resource_type) else {
            return false;
        };
        let mut upper: Bound<&str> = Bound::Included(name);
        loop {
            let Some((key_name, entries)) = by_name
                .range::<str, _>((Bound::Unbounded, upper))
                .next_back()
            else {
                return false;
            };
            if name.starts_with(key_name.as_str()) {
                if visit(entries) {
                    return true;
                }
                upper = Bound::Excluded(key_name.as_str());
            } else {
                // No key between this one and `name` is a prefix of `name`, and none longer
                // than the common prefix can be: jump there.
                let common = common_prefix_len(name, key_name);
                upper = Bound::Included(&name[..common]);
            }
        }
    }
}

/// The two maps of the index, removal-wise.
trait NameMap {
    /// Drops entry `id` under `name`; true when that name has no entries left.
    fn retain_in(&mut self, name: &str, id: Uuid) -> bool;
    fn remove_name(&mut self, name: &str);
    fn is_empty_map(&self) -> bool;
}

impl NameMap for HashMap<String, Vec<IndexedEntry>> {
    fn retain_in(&mut self, name: &str, id: Uuid) -> bool {
        self.get_mut(name).is_some_and(|list| {
            list.retain(|e| e.id != id);
            list.is_empty()
        })
    }
    fn remove_name(&mut self, name: &str) {
        self.remove(name);
    }
    fn is_empty_map(&self) -> bool {
        self.is_empty()
    }
}

impl NameMap for BTreeMap<String, Vec<IndexedEntry>> {
    fn retain_in(&mut self, name: &str, id: Uuid) -> bool {
        self.get_mut(name).is_some_and(|list| {
            list.retain(|e| e.id != id);
            list.is_empty()
        })
    }
    fn remove_name(&mut self, name: &str) {
        self.remove(name);
    }
    fn is_empty_map(&self) -> bool {
        self.is_empty()
    }
}

/// The longest common prefix of two strings, cut back to a char boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    let mut n = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    while !a.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Whether one ACL entry applies to this principal, host and operation, and how
/// (Kafka's `StandardAuthorizerData.findResult`).
fn entry_decision(
    entry: &AccessControlEntry,
    principal: &KafkaPrincipal,
    host: &str,
    operation: AclOperation,
) -> Option<AclPermissionType> {
    // Kafka's matchingPrincipals: the principal itself and exactly `User:*`.
    let principal_matches = entry.principal == *principal
        || (entry.principal.is_wildcard() && entry.principal.principal_type == USER_TYPE);
    if !principal_matches {
        return None;
    }
    if entry.host != WILDCARD_HOST && entry.host != host {
        return None;
    }
    if !operation_matches(entry.operation, entry.permission_type, operation) {
        return None;
    }
    Some(entry.permission_type)
}

/// ALL matches everything; an ALLOW of READ, WRITE, DELETE or ALTER also allows DESCRIBE,
/// an ALLOW of ALTER_CONFIGS also DESCRIBE_CONFIGS; a DENY denies only its own operation.
fn operation_matches(
    acl_operation: AclOperation,
    permission: AclPermissionType,
    operation: AclOperation,
) -> bool {
    use AclOperation as Op;
    if acl_operation == Op::All || acl_operation == operation {
        return true;
    }
    if permission != AclPermissionType::Allow {
        return false;
    }
    match operation {
        Op::Describe => matches!(acl_operation, Op::Read | Op::Write | Op::Delete | Op::Alter),
        Op::DescribeConfigs => acl_operation == Op::AlterConfigs,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        host: &str,
        op: AclOperation,
        perm: AclPermissionType,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type: rt,
                name: name.into(),
                pattern_type: pt,
            },
            entry: AccessControlEntry {
                principal: KafkaPrincipal::parse(principal).unwrap(),
                host: host.into(),
                operation: op,
                permission_type: perm,
            },
        }
    }

    use AclOperation as Op;
    use AclPermissionType::{Allow, Deny};
    use PatternType::{Literal, Prefixed};
    use ResourceType::{Group, Topic};

    fn alice() -> KafkaPrincipal {
        KafkaPrincipal::user("alice")
    }

    fn authz(acls: Vec<AclBinding>, config: AuthorizerConfig) -> StandardAuthorizer {
        let mut a = StandardAuthorizer::new(config);
        for b in acls {
            b.validate().unwrap();
            a.add_acl(Uuid::new_v4(), b);
        }
        a
    }

    #[test]
    fn literal_prefixed_and_wildcards() {
        let a = authz(
            vec![
                binding(
                    Topic,
                    "orders",
                    Literal,
                    "User:alice",
                    "*",
                    Op::Write,
                    Allow,
                ),
                binding(Topic, "logs-", Prefixed, "User:alice", "*", Op::Read, Allow),
                binding(Topic, "*", Literal, "User:*", "10.0.0.1", Op::Read, Allow),
            ],
            AuthorizerConfig::default(),
        );
        let ok = AuthorizationResult::Allowed;
        let no = AuthorizationResult::Denied;
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Write, Topic, "orders"),
            ok
        );
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Describe, Topic, "orders"),
            ok
        );
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Read, Topic, "orders"),
            no
        );
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Write, Topic, "other"),
            no
        );
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Read, Topic, "logs-app"),
            ok
        );
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Read, Topic, "logs"),
            no
        );
        let bob = KafkaPrincipal::user("bob");
        assert_eq!(
            a.authorize(&bob, "10.0.0.1", Op::Read, Topic, "anything"),
            ok
        );
        assert_eq!(
            a.authorize(&bob, "10.0.0.2", Op::Read, Topic, "anything"),
            no
        );
        assert_eq!(
            a.authorize(&alice(), "1.1.1.1", Op::Write, Group, "orders"),
            no
        );
    }

    #[test]
    fn deny_beats_allow_and_implications() {
        let a = authz(
            vec![
                binding(Topic, "t", Prefixed, "User:*", "*", Op::All, Allow),
                binding(Topic, "top", Literal, "User:alice", "*", Op::Write, Deny),
                binding(
                    Topic,
                    "c",
                    Literal,
                    "User:alice",
                    "*",
                    Op::AlterConfigs,
                    Allow,
                ),
                binding(Topic, "d", Literal, "User:alice", "*", Op::Describe, Deny),
                binding(Topic, "d", Literal, "User:alice", "*", Op::Read, Allow),
            ],
            AuthorizerConfig::default(),
        );
        let ok = AuthorizationResult::Allowed;
        let no = AuthorizationResult::Denied;
        assert_eq!(a.authorize(&alice(), "h", Op::Write, Topic, "top"), no);
        assert_eq!(a.authorize(&alice(), "h", Op::Read, Topic, "top"), ok);
        assert_eq!(a.authorize(&alice(), "h", Op::Write, Topic, "tx"), ok);
        assert_eq!(
            a.authorize(&alice(), "h", Op::DescribeConfigs, Topic, "c"),
            ok
        );
        assert_eq!(a.authorize(&alice(), "h", Op::Describe, Topic, "c"), no);
        // A DENY of DESCRIBE does not deny READ, and beats the DESCRIBE that READ implies.
        assert_eq!(a.authorize(&alice(), "h", Op::Read, Topic, "d"), ok);
        assert_eq!(a.authorize(&alice(), "h", Op::Describe, Topic, "d"), no);
    }

    #[test]
    fn super_users_and_no_acl_rule() {
        let config = AuthorizerConfig {
            super_users: AuthorizerConfig::parse_super_users("User:admin; User:ops").unwrap(),
            allow_everyone_if_no_acl_found: true,
        };
        let a = authz(
            vec![binding(
                Topic,
                "secret",
                Literal,
                "User:bob",
                "*",
                Op::Read,
                Allow,
            )],
            config,
        );
        let ok = AuthorizationResult::Allowed;
        let no = AuthorizationResult::Denied;
        assert_eq!(
            a.authorize(
                &KafkaPrincipal::user("ops"),
                "h",
                Op::Delete,
                Topic,
                "secret"
            ),
            ok
        );
        assert_eq!(a.authorize(&alice(), "h", Op::Read, Topic, "secret"), no);
        assert_eq!(a.authorize(&alice(), "h", Op::Read, Topic, "open"), ok);
        let strict = authz(vec![], AuthorizerConfig::default());
        assert_eq!(strict.authorize(&alice(), "h", Op::Read, Topic, "open"), no);
        assert!(AuthorizerConfig::parse_super_users("admin").is_err());
    }

    #[test]
    fn by_resource_type_follows_kafka() {
        let ok = AuthorizationResult::Allowed;
        let no = AuthorizationResult::Denied;
        let by_type = |acls: Vec<AclBinding>| {
            authz(acls, AuthorizerConfig::default()).authorize_by_resource_type(
                &alice(),
                "h",
                Op::Write,
                Topic,
            )
        };
        assert_eq!(by_type(vec![]), no);
        assert_eq!(
            by_type(vec![binding(
                Topic,
                "a",
                Literal,
                "User:alice",
                "*",
                Op::Write,
                Allow
            )]),
            ok
        );
        // Denied by the same literal, or by a prefix of it.
        assert_eq!(
            by_type(vec![
                binding(Topic, "abc", Literal, "User:alice", "*", Op::Write, Allow),
                binding(Topic, "ab", Prefixed, "User:*", "*", Op::All, Deny),
            ]),
            no
        );
        assert_eq!(
            by_type(vec![
                binding(Topic, "abc", Literal, "User:alice", "*", Op::Write, Allow),
                binding(Topic, "abc", Literal, "User:alice", "*", Op::Write, Deny),
                binding(Topic, "x", Prefixed, "User:alice", "*", Op::Write, Allow),
            ]),
            ok
        );
        assert_eq!(
            by_type(vec![
                binding(Topic, "abc", Literal, "User:alice", "*", Op::Write, Allow),
                binding(Topic, "*", Literal, "User:alice", "*", Op::Write, Deny),
            ]),
            no
        );
        assert_eq!(
            by_type(vec![binding(
                Group,
                "g",
                Literal,
                "User:alice",
                "*",
                Op::Write,
                Allow
            )]),
            no
        );
        let a = authz(
            vec![binding(Topic, "*", Literal, "User:*", "*", Op::All, Deny)],
            AuthorizerConfig {
                super_users: AuthorizerConfig::parse_super_users("User:alice").unwrap(),
                allow_everyone_if_no_acl_found: false,
            },
        );
        assert_eq!(
            a.authorize_by_resource_type(&alice(), "h", Op::Write, Topic),
            ok
        );
    }

    #[test]
    fn authorized_operations_bit_field() {
        let a = authz(
            vec![
                binding(Topic, "t", Literal, "User:alice", "*", Op::Write, Allow),
                binding(
                    Topic,
                    "t",
                    Literal,
                    "User:alice",
                    "*",
                    Op::AlterConfigs,
                    Allow,
                ),
            ],
            AuthorizerConfig::default(),
        );
        let bits = a.authorized_operations(&alice(), "h", Topic, "t");
        let ops: Vec<i8> = (0..32).filter(|b| bits & (1 << b) != 0).collect();
        // WRITE, DESCRIBE (implied), DESCRIBE_CONFIGS (implied), ALTER_CONFIGS.
        assert_eq!(ops, vec![4, 8, 10, 11]);
        assert_eq!(a.authorized_operations(&alice(), "h", Group, "t"), 0);
        assert_eq!(
            a.authorized_operations_if(false, &alice(), "h", Topic, "t"),
            OPS_NOT_REQUESTED
        );
        // A super user gets every supported operation: Kafka's sets, as acl.rs has them.
        let sup = authz(
            vec![],
            AuthorizerConfig {
                super_users: AuthorizerConfig::parse_super_users("User:alice").unwrap(),
                allow_everyone_if_no_acl_found: false,
            },
        );
        let ops_of = |rt| -> Vec<i8> {
            let bits = sup.authorized_operations(&alice(), "h", rt, "x");
            (0..32).filter(|b| bits & (1 << b) != 0).collect()
        };
        assert_eq!(ops_of(Topic), vec![3, 4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(ops_of(ResourceType::Cluster), vec![5, 7, 8, 9, 10, 11, 12]);
        assert_eq!(ops_of(Group), vec![3, 6, 8, 10, 11]);
        assert_eq!(ops_of(ResourceType::TransactionalId), vec![4, 8]);
        assert_eq!(ops_of(ResourceType::DelegationToken), vec![8]);
        assert_eq!(ops_of(ResourceType::User), vec![13, 14]);
        assert_eq!(
            bit_field(ResourceType::Topic.supported_operations()),
            sup.authorized_operations(&alice(), "h", Topic, "x")
        );
    }

    #[test]
    fn remove_acl_takes_effect() {
        let mut a = StandardAuthorizer::new(AuthorizerConfig::default());
        let id = Uuid::new_v4();
        let b = binding(Topic, "p", Prefixed, "User:alice", "*", Op::Read, Allow);
        a.add_acl(id, b.clone());
        assert_eq!(a.find(&b), Some(id));
        assert_eq!(
            a.authorize(&alice(), "h", Op::Read, Topic, "pq"),
            AuthorizationResult::Allowed
        );
        assert_eq!(a.remove_acl(id), Some(b));
        assert_eq!(
            a.authorize(&alice(), "h", Op::Read, Topic, "pq"),
            AuthorizationResult::Denied
        );
        assert_eq!(a.acl_count(), 0);
        assert!(a.prefixed.is_empty());
    }

    #[test]
    fn create_validation() {
        let lit = PatternType::Literal.code();
        let ok = AclBinding::from_wire(2, "t", lit, "User:a", "*", 3, 3);
        assert!(ok.is_ok());
        for (rt, name, pt, principal, op, perm) in [
            (2, "t", PatternType::Match.code(), "User:a", 3, 3),
            (2, "t", PatternType::Any.code(), "User:a", 3, 3),
            (1, "t", lit, "User:a", 3, 3),
            (0, "t", lit, "User:a", 3, 3),
            (2, "", lit, "User:a", 3, 3),
            (2, "t", lit, "alice", 3, 3),
            (2, "t", lit, "User:a", 1, 3),
            (2, "t", lit, "User:a", 3, 1),
            (2, "t", lit, "User:a", 99, 3),
            (4, "other", lit, "User:a", 5, 3),
        ] {
            assert!(
                matches!(
                    AclBinding::from_wire(rt, name, pt, principal, "*", op, perm),
                    Err(AclError::InvalidRequest(_))
                ),
                "{rt} {name} {pt} {principal} {op} {perm}"
            );
        }
        assert!(AclBinding::from_wire(4, CLUSTER_NAME, lit, "User:a", "*", 5, 3).is_ok());
    }

    #[test]
    fn filter_validation_and_matching() {
        assert!(AclBindingFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
        assert!(AclBindingFilter::from_wire(1, None, 0, None, None, 1, 1).is_err());
        assert!(AclBindingFilter::from_wire(1, None, 1, None, None, 0, 1).is_err());
        assert!(AclBindingFilter::from_wire(1, None, 1, None, None, 1, 0).is_err());
        // A principal that does not parse is no error: it matches nothing.
        assert!(AclBindingFilter::from_wire(1, None, 1, Some("bad"), None, 1, 1).is_ok());

        let a = authz(
            vec![
                binding(
                    Topic,
                    "orders",
                    Literal,
                    "User:alice",
                    "*",
                    Op::Write,
                    Allow,
                ),
                binding(Topic, "ord", Prefixed, "User:alice", "*", Op::Read, Allow),
                binding(Topic, "*", Literal, "User:bob", "*", Op::Read, Allow),
                binding(Group, "orders", Literal, "User:alice", "*", Op::Read, Allow),
            ],
            AuthorizerConfig::default(),
        );
        let names = |f: AclBindingFilter| -> Vec<String> {
            a.acls_matching(&f)
                .into_iter()
                .map(|(_, b)| {
                    format!(
                        "{}:{}:{}",
                        b.pattern.resource_type, b.pattern.pattern_type, b.pattern.name
                    )
                })
                .collect()
        };
        let f = |name: Option<&str>, pt: PatternType| {
            AclBindingFilter::from_wire(Topic.code(), name, pt.code(), None, None, 1, 1).unwrap()
        };
        assert_eq!(
            names(f(Some("orders"), PatternType::Literal)),
            ["TOPIC:LITERAL:orders"]
        );
        assert_eq!(
            names(f(Some("orders"), PatternType::Any)),
            ["TOPIC:LITERAL:orders"]
        );
        assert_eq!(
            names(f(Some("ord"), PatternType::Any)),
            ["TOPIC:PREFIXED:ord"]
        );
        assert_eq!(
            names(f(Some("orders"), PatternType::Match)),
            [
                "TOPIC:LITERAL:*",
                "TOPIC:PREFIXED:ord",
                "TOPIC:LITERAL:orders"
            ]
        );
        assert_eq!(
            names(f(None, PatternType::Prefixed)),
            ["TOPIC:PREFIXED:ord"]
        );
        assert_eq!(names(AclBindingFilter::any()).len(), 4);
        let by_principal =
            AclBindingFilter::from_wire(1, None, 1, Some("User:bob"), Some("*"), 3, 3).unwrap();
        assert_eq!(names(by_principal), ["TOPIC:LITERAL:*"]);
    }

    #[test]
    fn names_parse_like_kafka_acls() {
        assert_eq!(
            "describe_configs".parse::<AclOperation>().unwrap(),
            Op::DescribeConfigs
        );
        assert_eq!(
            "DescribeConfigs".parse::<AclOperation>().unwrap(),
            Op::DescribeConfigs
        );
        assert_eq!(
            "transactional-id".parse::<ResourceType>().unwrap(),
            ResourceType::TransactionalId
        );
        assert!("nope".parse::<AclOperation>().is_err());
        assert_eq!(AclOperation::from_code(14), Op::DescribeTokens);
        assert_eq!(AclOperation::from_code(-3), Op::Unknown);
    }

    /// Not a pass/fail test: prints what a lookup costs among many prefixed ACLs
    /// (`cargo test -p strom-security lookup_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn lookup_cost() {
        for n in [1_000usize, 10_000, 100_000] {
            let mut a = StandardAuthorizer::new(AuthorizerConfig::default());
            let mut all = Vec::new();
            for i in 0..n {
                let b = binding(
                    Topic,
                    &format!("team-{i:06}-"),
                    Prefixed,
                    "User:alice",
                    "*",
                    Op::Read,
                    Allow,
                );
                all.push(b.clone());
                a.add_acl(Uuid::new_v4(), b);
            }
            let lookups = 2_000;
            let start = std::time::Instant::now();
            for i in 0..lookups {
                let name = format!("team-{:06}-orders", (i * 7919) % n);
                assert_eq!(
                    a.authorize(&alice(), "h", Op::Read, Topic, &name),
                    AuthorizationResult::Allowed
                );
            }
            let indexed_us = start.elapsed().as_secs_f64() * 1e6 / lookups as f64;
            let config = AuthorizerConfig::default();
            let start = std::time::Instant::now();
            for i in 0..200 {
                let name = format!("team-{:06}-orders", (i * 7919) % n);
                let _ = naive(&all, &config, &alice(), "h", Op::Read, Topic, &name);
            }
            let naive_us = start.elapsed().as_secs_f64() * 1e6 / 200.0;
            println!("{n} prefixed ACLs: index {indexed_us:.1} us/lookup, linear {naive_us:.1} us/lookup");
        }
    }

    /// Kafka's semantics written the slow, obvious way: every ACL checked against the resource.
    fn naive(
        acls: &[AclBinding],
        config: &AuthorizerConfig,
        principal: &KafkaPrincipal,
        host: &str,
        op: AclOperation,
        rt: ResourceType,
        name: &str,
    ) -> AuthorizationResult {
        if config.super_users.contains(principal) {
            return AuthorizationResult::Allowed;
        }
        let on_resource: Vec<&AclBinding> = acls
            .iter()
            .filter(|b| {
                b.pattern.resource_type == rt
                    && match b.pattern.pattern_type {
                        PatternType::Literal => b.pattern.name == name || b.pattern.name == "*",
                        PatternType::Prefixed => name.starts_with(&b.pattern.name),
                        _ => false,
                    }
            })
            .collect();
        let applies = |b: &&&AclBinding| {
            let e = &b.entry;
            (e.principal == *principal || e.principal == KafkaPrincipal::user("*"))
                && (e.host == "*" || e.host == host)
        };
        let denied = on_resource.iter().filter(applies).any(|b| {
            b.entry.permission_type == Deny
                && (b.entry.operation == Op::All || b.entry.operation == op)
        });
        if denied {
            return AuthorizationResult::Denied;
        }
        let implied: &[AclOperation] = match op {
            Op::Describe => &[
                Op::Describe,
                Op::Read,
                Op::Write,
                Op::Delete,
                Op::Alter,
                Op::All,
            ],
            Op::DescribeConfigs => &[Op::DescribeConfigs, Op::AlterConfigs, Op::All],
            _ => &[],
        };
        let allowed = on_resource.iter().filter(applies).any(|b| {
            b.entry.permission_type == Allow
                && (b.entry.operation == Op::All
                    || b.entry.operation == op
                    || implied.contains(&b.entry.operation))
        });
        if allowed || (on_resource.is_empty() && config.allow_everyone_if_no_acl_found) {
            AuthorizationResult::Allowed
        } else {
            AuthorizationResult::Denied
        }
    }

    fn small_name() -> impl Strategy<Value = String> {
        // A tiny alphabet so that prefixes collide often; "*" for the literal wildcard.
        prop_oneof![
            Just("*".to_string()),
            proptest::string::string_regex("[abé]{0,4}").unwrap(),
        ]
    }

    fn arb_binding() -> impl Strategy<Value = AclBinding> {
        (
            prop_oneof![Just(Topic), Just(Group)],
            small_name().prop_filter("non-empty", |n| !n.is_empty()),
            prop_oneof![Just(Literal), Just(Prefixed)],
            prop_oneof![Just("User:alice"), Just("User:bob"), Just("User:*")],
            prop_oneof![Just("*"), Just("h1")],
            prop_oneof![
                Just(Op::All),
                Just(Op::Read),
                Just(Op::Write),
                Just(Op::Describe),
                Just(Op::AlterConfigs),
                Just(Op::DescribeConfigs)
            ],
            prop_oneof![Just(Allow), Just(Deny)],
        )
            .prop_map(|(rt, name, pt, p, h, op, perm)| binding(rt, &name, pt, p, h, op, perm))
    }

    proptest! {
        #[test]
        fn index_agrees_with_naive_matcher(
            acls in proptest::collection::vec(arb_binding(), 0..40),
            removed in proptest::collection::vec(any::<bool>(), 40),
            allow_if_none in any::<bool>(),
            queries in proptest::collection::vec((
                prop_oneof![Just("alice"), Just("bob"), Just("carol")],
                prop_oneof![Just("h1"), Just("h2")],
                prop_oneof![Just(Op::Read), Just(Op::Write), Just(Op::Describe), Just(Op::DescribeConfigs), Just(Op::AlterConfigs)],
                prop_oneof![Just(Topic), Just(Group)],
                proptest::string::string_regex("[abé]{0,5}").unwrap(),
            ), 1..30),
        ) {
            let config = AuthorizerConfig { super_users: HashSet::new(), allow_everyone_if_no_acl_found: allow_if_none };
            let mut index = StandardAuthorizer::new(config.clone());
            let mut kept = Vec::new();
            let mut ids = Vec::new();
            for b in &acls {
                let id = Uuid::new_v4();
                index.add_acl(id, b.clone());
                ids.push(id);
            }
            for (i, b) in acls.iter().enumerate() {
                if removed[i] { index.remove_acl(ids[i]); } else { kept.push(b.clone()); }
            }
            for (user, host, op, rt, name) in queries {
                let p = KafkaPrincipal::user(user);
                prop_assert_eq!(
                    index.authorize(&p, host, op, rt, &name),
                    naive(&kept, &config, &p, host, op, rt, &name),
                    "{} {} {:?} {:?} {:?}", user, host, op, rt, name
                );
            }
        }
    }
}
