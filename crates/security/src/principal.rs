//! Kafka's `KafkaPrincipal`: a type and a name, written `User:alice`. ACLs name principals
//! this way, and every authenticator (SASL, the SSL principal mapper) ends in one.

use std::fmt;

/// Kafka's `KafkaPrincipal.USER_TYPE`.
pub const USER_TYPE: &str = "User";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KafkaPrincipal {
    pub principal_type: String,
    pub name: String,
}

/// A principal string without the `Type:` prefix (Kafka's `SecurityUtils.parseKafkaPrincipal`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Could not parse principal from `{0}` (no colon is found between the principal type and the name)")]
pub struct PrincipalParseError(pub String);

impl KafkaPrincipal {
    pub fn user(name: impl Into<String>) -> Self {
        KafkaPrincipal {
            principal_type: USER_TYPE.to_string(),
            name: name.into(),
        }
    }

    /// Kafka's `ANONYMOUS` principal: what a PLAINTEXT or unauthenticated SSL client is.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `Type:name`; the name may itself contain colons (only the first one splits).
    pub fn parse(text: &str) -> Result<Self, PrincipalParseError> {
        match text.split_once(':') {
            Some((t, n)) if !t.is_empty() => Ok(KafkaPrincipal {
                principal_type: t.to_string(),
                name: n.to_string(),
            }),
            _ => Err(PrincipalParseError(text.to_string())),
        }
    }

    /// `User:*`, the wildcard principal of an ACL binding.
    pub fn is_wildcard(&self) -> bool {
        self.name == "*"
    }
}

impl fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let p = KafkaPrincipal::parse("User:CN=a:b").unwrap();
        assert_eq!(p.principal_type, "User");
        assert_eq!(p.name, "CN=a:b");
        assert_eq!(p.to_string(), "User:CN=a:b");
        assert!(KafkaPrincipal::parse("alice").is_err());
        assert!(KafkaPrincipal::parse(":alice").is_err());
        assert!(KafkaPrincipal::parse("User:*").unwrap().is_wildcard());
    }
}
