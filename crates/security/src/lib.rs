//! Strom's security layer, after Kafka's `org.apache.kafka.common.security` (SASL servers,
//! principals, SSL principal mapping) and `org.apache.kafka.metadata.authorizer` (the
//! `StandardAuthorizer`).
//!
//! Everything here is sans-io where it can be: the SASL servers take a message and answer
//! one, the authorizer answers from the ACLs it was given, and the TLS module only builds
//! rustls configurations from Kafka's `ssl.*` settings. Wiring into listeners, the handler
//! table and the metadata log belongs to the broker.
//!
//! - [`sasl`]: one exchange whatever the mechanism (SaslHandshake, SaslAuthenticate,
//!   KIP-368 session lifetime), over [`scram`] (SCRAM-SHA-256/512 server and client,
//!   KIP-554 credentials and AlterUserScramCredentials), [`plain`] and [`oauthbearer`]
//!   (KIP-768 JWT validation against a JWKS), and [`scram_password`] (a PLAIN or HTTP Basic
//!   password checked against SCRAM credentials, with a cache of successes);
//! - [`authorizer`]: ACL bindings and filters, the `StandardAuthorizer`;
//! - [`tls`] and [`principal_mapper`]: rustls server and client configurations from
//!   `ssl.*`, reloading, and `ssl.principal.mapping.rules`;
//! - [`principal`]: `KafkaPrincipal`, security protocols, the default principal builder;
//! - [`auth_failures`]: the delay and per-address limit after failed authentications;
//! - [`client_config`]: a Kafka client's properties file (`--command-config`).

pub mod auth_failures;
pub mod authorizer;
pub mod client_config;
pub mod oauthbearer;
pub mod plain;
pub mod principal;
pub mod principal_mapper;
pub mod sasl;
pub mod scram;
pub mod scram_password;
pub mod tls;

pub use principal::{build_principal, Authentication, KafkaPrincipal, SecurityProtocol};

/// Compares two secrets in time that depends only on their lengths, so a client cannot learn
/// a password or key byte by byte from response times.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq_compares() {
        assert!(super::ct_eq(b"abc", b"abc"));
        assert!(!super::ct_eq(b"abc", b"abd"));
        assert!(!super::ct_eq(b"abc", b"ab"));
        assert!(super::ct_eq(b"", b""));
    }
}
