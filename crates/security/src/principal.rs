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

/// Kafka's `SecurityProtocol`: what a listener speaks (`listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Kafka takes the names case-insensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// What a connection has proven about itself when its principal is built.
#[derive(Debug, Clone, Copy)]
pub enum Authentication<'a> {
    /// PLAINTEXT, or SSL without a client certificate.
    None,
    /// SSL with a client certificate: its subject after `ssl.principal.mapping.rules`.
    TlsClient { mapped_name: &'a str },
    /// SASL_*: the authorization id the mechanism ended with.
    Sasl { authorization_id: &'a str },
}

/// Kafka's `DefaultKafkaPrincipalBuilder`: SASL gives `User:<authorization id>` (also over
/// TLS, where the certificate does not count), a TLS client certificate gives `User:` and
/// its mapped subject, anything else is `User:ANONYMOUS`.
pub fn build_principal(protocol: SecurityProtocol, auth: Authentication<'_>) -> KafkaPrincipal {
    match (protocol.uses_sasl(), auth) {
        (true, Authentication::Sasl { authorization_id }) => KafkaPrincipal::user(authorization_id),
        (false, Authentication::TlsClient { mapped_name }) if protocol.uses_tls() => {
            KafkaPrincipal::user(mapped_name)
        }
        _ => KafkaPrincipal::anonymous(),
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

    #[test]
    fn principal_builder_as_kafka() {
        use SecurityProtocol::*;
        let sasl = Authentication::Sasl {
            authorization_id: "alice",
        };
        let cert = Authentication::TlsClient {
            mapped_name: "CN=bob",
        };
        assert_eq!(build_principal(SaslSsl, sasl).to_string(), "User:alice");
        assert_eq!(
            build_principal(SaslPlaintext, sasl).to_string(),
            "User:alice"
        );
        assert_eq!(build_principal(Ssl, cert).to_string(), "User:CN=bob");
        assert_eq!(build_principal(SaslSsl, cert), KafkaPrincipal::anonymous());
        assert_eq!(
            build_principal(Plaintext, cert),
            KafkaPrincipal::anonymous()
        );
        assert_eq!(
            build_principal(Plaintext, sasl),
            KafkaPrincipal::anonymous()
        );
        assert_eq!(
            build_principal(Ssl, Authentication::None),
            KafkaPrincipal::anonymous()
        );
        assert_eq!(SecurityProtocol::from_name("sasl_ssl"), Some(SaslSsl));
        assert_eq!(SecurityProtocol::from_name("TLS"), None);
    }
}
