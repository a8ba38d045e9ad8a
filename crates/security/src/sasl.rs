//! One SASL exchange on one connection, whatever the mechanism, after Kafka's
//! `SaslServerAuthenticator`: SaslHandshake against `sasl.enabled.mechanisms`, the
//! mechanism's server driven by SaslAuthenticate payloads, the session lifetime sent back
//! for re-authentication (KIP-368, `connections.max.reauth.ms`), and the rule that a
//! re-authentication must not change the principal.
//!
//! Sans-io: the broker passes bytes in and sends what comes out; credentials come from
//! the stores the broker gives ([`ScramCredentialStore`], a [`PlainCallback`], an
//! [`OAuthBearerValidator`]).

use std::sync::Arc;

use crate::oauthbearer::{
    OAuthBearerError, OAuthBearerServer, OAuthBearerStep, OAuthBearerValidator,
};
use crate::plain::{PlainCallback, PlainError};
use crate::principal::KafkaPrincipal;
use crate::scram::{ScramCredential, ScramError, ScramMechanism, ScramServer, ScramStep};

/// Kafka's error codes for the SASL APIs.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// The mechanisms Strom implements. GSSAPI (Kerberos) is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Mechanism names are case-sensitive, as in Kafka.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            "OAUTHBEARER" => SaslMechanism::OAuthBearer,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslConfigError {
    #[error("sasl.enabled.mechanisms: `{0}` is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER are)")]
    Unsupported(String),
    #[error("sasl.enabled.mechanisms must name at least one mechanism")]
    Empty,
}

/// Parses `sasl.enabled.mechanisms` (a comma-separated list; repeats are dropped). Kafka's
/// default is GSSAPI, which Strom does not implement, so the caller must give a value.
pub fn parse_enabled_mechanisms(value: &str) -> Result<Vec<SaslMechanism>, SaslConfigError> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = SaslMechanism::from_name(name)
            .ok_or_else(|| SaslConfigError::Unsupported(name.to_string()))?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(SaslConfigError::Empty);
    }
    Ok(out)
}

/// The SaslHandshake answer: the error code and the enabled mechanisms, which Kafka lists
/// whether or not the requested one is among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub error_code: i16,
    pub mechanisms: Vec<String>,
    /// The mechanism to run, when accepted.
    pub mechanism: Option<SaslMechanism>,
}

pub fn handshake(enabled: &[SaslMechanism], requested: &str) -> HandshakeResponse {
    let mechanism = SaslMechanism::from_name(requested).filter(|m| enabled.contains(m));
    HandshakeResponse {
        error_code: if mechanism.is_some() {
            0
        } else {
            UNSUPPORTED_SASL_MECHANISM
        },
        mechanisms: enabled.iter().map(|m| m.name().to_string()).collect(),
        mechanism,
    }
}

/// Where SCRAM credentials are read from (the metadata image, in the broker).
pub trait ScramCredentialStore: Send + Sync {
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

/// The stores a connection's authenticator needs; a mechanism without its store is
/// refused at the handshake.
#[derive(Clone, Default)]
pub struct SaslStores {
    pub scram: Option<Arc<dyn ScramCredentialStore>>,
    pub plain: Option<Arc<dyn PlainCallback + Send + Sync>>,
    pub oauthbearer: Option<Arc<OAuthBearerValidator>>,
}

/// Why SaslAuthenticate fails. The message is what the client sees, so it says no more
/// than Kafka's does (no "unknown user" versus "wrong password").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("{0}")]
    Scram(#[from] ScramError),
    #[error("{0}")]
    Plain(#[from] PlainError),
    #[error("{0}")]
    OAuthBearer(#[from] OAuthBearerError),
    #[error("Unexpected SaslAuthenticate: the exchange is already complete")]
    AlreadyComplete,
    #[error("{0} is enabled but has no credential store configured")]
    NotConfigured(&'static str),
    #[error("Cannot change principals during re-authentication from {from}: {to}")]
    PrincipalChanged { from: String, to: String },
}

impl SaslError {
    /// The SaslAuthenticate error code.
    pub fn error_code(&self) -> i16 {
        match self {
            SaslError::AlreadyComplete => ILLEGAL_SASL_STATE,
            _ => SASL_AUTHENTICATION_FAILED,
        }
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Answer SaslAuthenticate with these bytes and wait for the next one.
    Continue(Vec<u8>),
    /// Answer with these bytes; the connection is authenticated.
    Complete {
        response: Vec<u8>,
        principal: KafkaPrincipal,
        /// When the credential stops being valid (an OAuth token's `exp`), if it does.
        credential_expiry_ms: Option<u64>,
    },
}

enum Mech {
    Plain(Arc<dyn PlainCallback + Send + Sync>),
    Scram(ScramServer, Arc<dyn ScramCredentialStore>),
    OAuthBearer(OAuthBearerServer),
}

/// The server side of one SASL exchange.
pub struct SaslServer {
    mechanism: SaslMechanism,
    mech: Mech,
    complete: bool,
}

impl SaslServer {
    /// Starts the exchange for a mechanism accepted by [`handshake`].
    pub fn new(mechanism: SaslMechanism, stores: &SaslStores) -> Result<Self, SaslError> {
        let mech = match mechanism {
            SaslMechanism::Plain => Mech::Plain(
                stores
                    .plain
                    .clone()
                    .ok_or(SaslError::NotConfigured("PLAIN"))?,
            ),
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let m = if mechanism == SaslMechanism::ScramSha256 {
                    ScramMechanism::Sha256
                } else {
                    ScramMechanism::Sha512
                };
                let store = stores
                    .scram
                    .clone()
                    .ok_or(SaslError::NotConfigured(m.mechanism_name()))?;
                Mech::Scram(ScramServer::new(m), store)
            }
            SaslMechanism::OAuthBearer => Mech::OAuthBearer(OAuthBearerServer::new(
                stores
                    .oauthbearer
                    .clone()
                    .ok_or(SaslError::NotConfigured("OAUTHBEARER"))?,
            )),
        };
        Ok(SaslServer {
            mechanism,
            mech,
            complete: false,
        })
    }

    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// An OAUTHBEARER token just refused because the JWKS has no key for its `kid`: that
    /// `kid` (see [`OAuthBearerServer::unknown_kid`]).
    pub fn unknown_jwks_kid(&self) -> Option<&str> {
        match &self.mech {
            Mech::OAuthBearer(server) => server.unknown_kid(),
            _ => None,
        }
    }

    /// Takes one SaslAuthenticate payload.
    pub fn evaluate(&mut self, message: &[u8], now_ms: u64) -> Result<SaslStep, SaslError> {
        if self.complete {
            return Err(SaslError::AlreadyComplete);
        }
        let step = match &mut self.mech {
            Mech::Plain(callback) => {
                let user = crate::plain::authenticate(message, callback.as_ref())?;
                SaslStep::Complete {
                    response: Vec::new(),
                    principal: KafkaPrincipal::user(user),
                    credential_expiry_ms: None,
                }
            }
            Mech::Scram(server, store) => {
                let mechanism = server.mechanism();
                match server.evaluate(message, |user| store.credential(user, mechanism))? {
                    ScramStep::Continue(out) => SaslStep::Continue(out),
                    ScramStep::Complete { response, username } => SaslStep::Complete {
                        response,
                        principal: KafkaPrincipal::user(username),
                        credential_expiry_ms: None,
                    },
                }
            }
            Mech::OAuthBearer(server) => match server.evaluate(message, now_ms)? {
                OAuthBearerStep::Challenge(out) => SaslStep::Continue(out),
                OAuthBearerStep::Complete { token, .. } => SaslStep::Complete {
                    response: Vec::new(),
                    principal: KafkaPrincipal::user(token.principal_name),
                    credential_expiry_ms: Some(token.lifetime_ms),
                },
            },
        };
        if matches!(step, SaslStep::Complete { .. }) {
            self.complete = true;
        }
        Ok(step)
    }
}

/// KIP-368's session lifetime sent in SaslAuthenticate (Kafka's
/// `calcCompletionTimesAndReturnSessionLifetimeMs`): the sooner of the credential's expiry
/// and `connections.max.reauth.ms` (0 or unset: no limit); 0 means the session never
/// expires.
pub fn session_lifetime_ms(
    credential_expiry_ms: Option<u64>,
    connections_max_reauth_ms: Option<u64>,
    now_ms: u64,
) -> u64 {
    let max_reauth_ms = connections_max_reauth_ms.filter(|ms| *ms > 0);
    match (credential_expiry_ms, max_reauth_ms) {
        (None, None) => 0,
        (None, Some(max)) => max,
        (Some(expiry), None) => expiry.saturating_sub(now_ms),
        (Some(expiry), Some(max)) => expiry.saturating_sub(now_ms).min(max),
    }
}

/// A re-authentication must end in the principal the connection already has.
pub fn ensure_principal_unchanged(
    previous: &KafkaPrincipal,
    reauthenticated: &KafkaPrincipal,
) -> Result<(), SaslError> {
    if previous == reauthenticated {
        Ok(())
    } else {
        Err(SaslError::PrincipalChanged {
            from: previous.to_string(),
            to: reauthenticated.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plain::StaticPlainUsers;
    use std::collections::HashMap;

    struct Creds(HashMap<(String, ScramMechanism), ScramCredential>);

    impl ScramCredentialStore for Creds {
        fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_string(), m)).cloned()
        }
    }

    #[test]
    fn enabled_mechanisms_and_handshake() {
        let enabled = parse_enabled_mechanisms("SCRAM-SHA-512, PLAIN,PLAIN").unwrap();
        assert_eq!(
            enabled,
            vec![SaslMechanism::ScramSha512, SaslMechanism::Plain]
        );
        assert!(matches!(
            parse_enabled_mechanisms("GSSAPI"),
            Err(SaslConfigError::Unsupported(_))
        ));
        assert_eq!(parse_enabled_mechanisms(" , "), Err(SaslConfigError::Empty));
        let ok = handshake(&enabled, "PLAIN");
        assert_eq!(
            (ok.error_code, ok.mechanism),
            (0, Some(SaslMechanism::Plain))
        );
        let no = handshake(&enabled, "SCRAM-SHA-256");
        assert_eq!(no.error_code, UNSUPPORTED_SASL_MECHANISM);
        assert_eq!(no.mechanisms, ["SCRAM-SHA-512", "PLAIN"]);
        assert_eq!(
            handshake(&enabled, "plain").error_code,
            UNSUPPORTED_SASL_MECHANISM
        );
    }

    #[test]
    fn plain_and_scram_through_one_server_type() {
        let cred = ScramCredential::generate(ScramMechanism::Sha256, "pw", 4096).unwrap();
        let stores = SaslStores {
            scram: Some(Arc::new(Creds(HashMap::from([(
                ("u".to_string(), ScramMechanism::Sha256),
                cred,
            )])))),
            plain: Some(Arc::new(StaticPlainUsers::new([(
                "p".to_string(),
                "pw".to_string(),
            )]))),
            oauthbearer: None,
        };
        let mut plain = SaslServer::new(SaslMechanism::Plain, &stores).unwrap();
        match plain.evaluate(b"\0p\0pw", 0).unwrap() {
            SaslStep::Complete { principal, .. } => assert_eq!(principal.to_string(), "User:p"),
            other => panic!("{other:?}"),
        }
        let again = plain.evaluate(b"\0p\0pw", 0).unwrap_err();
        assert_eq!(again.error_code(), ILLEGAL_SASL_STATE);

        let mut scram = SaslServer::new(SaslMechanism::ScramSha256, &stores).unwrap();
        assert!(matches!(
            scram.evaluate(b"n,,n=u,r=abc", 0).unwrap(),
            SaslStep::Continue(_)
        ));
        let err = scram.evaluate(b"c=biws,r=abc,p=AAAA", 0).unwrap_err();
        assert_eq!(err.error_code(), SASL_AUTHENTICATION_FAILED);

        let mut unknown = SaslServer::new(SaslMechanism::ScramSha256, &stores).unwrap();
        let err = unknown.evaluate(b"n,,n=ghost,r=abc", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Authentication failed: Invalid user credentials"
        );

        assert!(matches!(
            SaslServer::new(SaslMechanism::OAuthBearer, &stores),
            Err(SaslError::NotConfigured("OAUTHBEARER"))
        ));
    }

    #[test]
    fn session_lifetime_as_kafka() {
        assert_eq!(session_lifetime_ms(None, None, 1000), 0);
        assert_eq!(session_lifetime_ms(None, Some(0), 1000), 0);
        assert_eq!(session_lifetime_ms(None, Some(60_000), 1000), 60_000);
        assert_eq!(session_lifetime_ms(Some(31_000), None, 1000), 30_000);
        assert_eq!(
            session_lifetime_ms(Some(31_000), Some(10_000), 1000),
            10_000
        );
        assert_eq!(session_lifetime_ms(Some(500), Some(10_000), 1000), 0);
    }

    #[test]
    fn reauthentication_keeps_the_principal() {
        let a = KafkaPrincipal::user("a");
        assert!(ensure_principal_unchanged(&a, &a).is_ok());
        let err = ensure_principal_unchanged(&a, &KafkaPrincipal::user("b")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cannot change principals during re-authentication from User:a: User:b"
        );
    }
}
