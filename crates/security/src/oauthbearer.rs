//! SASL/OAUTHBEARER, server side (RFC 7628), with KIP-768's JWT validation, after Kafka's
//! `OAuthBearerSaslServer`, `OAuthBearerClientInitialResponse` and
//! `oauthbearer.internals.secured` (`BrokerJwtValidator`, the JWKS key resolver).
//!
//! The client's initial response is `n,[a=authzid],^Aauth=Bearer <jws>^A[key=value^A]*^A`.
//! The JWS is verified against a JWKS (the file's or endpoint's bytes; fetching them is the
//! caller's job) and its claims checked with Kafka's `sasl.oauthbearer.*` settings, with
//! the current time given by the caller. A bad token is answered, as RFC 7628 and Kafka do,
//! with the challenge `{"status":"invalid_token"}`; the client's `^A` reply then fails the
//! exchange.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// RFC 7628's key/value separator.
const KVSEP: char = '\u{1}';
/// The challenge Kafka sends for any token it refuses.
pub const INVALID_TOKEN_RESPONSE: &[u8] = br#"{"status":"invalid_token"}"#;
/// Kafka's `OAuthBearerClientInitialResponse.AUTH_KEY`, reserved among the extensions.
const AUTH_KEY: &str = "auth";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthBearerError {
    #[error("Invalid OAUTHBEARER client first message: {0}")]
    InvalidClientResponse(&'static str),
    #[error("Invalid token: {0}")]
    InvalidToken(String),
    /// No key of the JWKS fits the token's `kid` and algorithm: a key set fetched again
    /// may have it (an identity provider that rotated its keys).
    #[error("Invalid token: {message}")]
    UnknownKey {
        kid: Option<String>,
        message: String,
    },
    #[error("Authentication failed: {0}")]
    AuthenticationFailed(String),
    #[error("Authentication failed: Client requested an authorization id that is different from the token's principal name")]
    AuthorizationIdMismatch,
    #[error("Invalid JWKS: {0}")]
    InvalidJwks(String),
    #[error("Invalid configuration {name}: {reason}")]
    InvalidConfig { name: &'static str, reason: String },
    #[error("The OAUTHBEARER exchange is already finished")]
    ExchangeFinished,
}

/// A parsed client initial response (Kafka's `OAuthBearerClientInitialResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInitialResponse {
    pub authzid: Option<String>,
    pub token: String,
    /// SASL extensions (KIP-342), without `auth`.
    pub extensions: BTreeMap<String, String>,
}

/// Parses RFC 7628's initial client response with Kafka's rules: GS2 header `n,` only,
/// `auth=Bearer <token>` (scheme case-insensitive), extension keys of letters only and
/// values of printable ASCII. A repeated `auth` is refused (Kafka keeps the last one):
/// no client sends two, and which token was checked must never be in doubt.
pub fn parse_client_initial_response(
    message: &[u8],
) -> Result<ClientInitialResponse, OAuthBearerError> {
    use OAuthBearerError::InvalidClientResponse as Bad;
    let text = std::str::from_utf8(message).map_err(|_| Bad("not UTF-8"))?;
    let rest = text
        .strip_prefix("n,")
        .ok_or(Bad("GS2 header must start with n,"))?;
    let (authz, rest) = rest.split_once(',').ok_or(Bad("no GS2 header"))?;
    let authzid = if authz.is_empty() {
        None
    } else {
        let a = authz.strip_prefix("a=").ok_or(Bad("bad authzid"))?;
        // Kafka's SASLNAME: ASCII without ',' and with '=' only as =2C / =3D.
        if a.is_empty()
            || !a.bytes().all(|b| (0x01..=0x7f).contains(&b))
            || crate::scram::decode_saslname(a).is_none()
        {
            return Err(Bad("bad authzid"));
        }
        Some(a.to_string())
    };
    // kvsep, then "key=value" kvsep per pair, then kvsep: at least one pair (auth) means
    // the message ends in two separators.
    let body = rest
        .strip_prefix(KVSEP)
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
        .ok_or(Bad("missing key/value separators"))?;
    let mut token = None;
    let mut extensions = BTreeMap::new();
    for pair in body.split(KVSEP) {
        let (key, value) = pair.split_once('=').ok_or(Bad("bad key/value pair"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Bad("bad extension key"));
        }
        if key == AUTH_KEY {
            if token.is_some() {
                return Err(Bad("auth given twice"));
            }
            let (scheme, value) = value.split_once(' ').ok_or(Bad("bad auth value"))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Bad("auth scheme is not Bearer"));
            }
            if scheme.is_empty()
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(Bad("bad auth scheme"));
            }
            // Kafka's token: [-_~+/.a-zA-Z0-9]+ then any '=' padding.
            let value = value.trim_start_matches(' ');
            let body = value.trim_end_matches('=');
            if body.is_empty()
                || !body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_~+/.".contains(&b))
            {
                return Err(Bad("bad token characters"));
            }
            token = Some(value.to_string());
        } else {
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b))
            {
                return Err(Bad("bad extension value"));
            }
            if extensions
                .insert(key.to_string(), value.to_string())
                .is_some()
            {
                return Err(Bad("extension given twice"));
            }
        }
    }
    Ok(ClientInitialResponse {
        authzid,
        token: token.ok_or(Bad("no auth"))?,
        extensions,
    })
}

/// The client's initial response for a token (Kafka's `OAuthBearerClientInitialResponse
/// .toBytes()`), with optional SASL extensions (KIP-342), given as (key, value) pairs.
pub fn client_initial_response(token: &str, extensions: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("n,,{KVSEP}auth=Bearer {token}{KVSEP}");
    for (key, value) in extensions {
        out.push_str(&format!("{key}={value}{KVSEP}"));
    }
    out.push(KVSEP);
    out.into_bytes()
}

/// KIP-768's broker-side validation settings, by their Kafka names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerValidatorConfig {
    /// `sasl.oauthbearer.expected.audience`: if not empty, the token's `aud` must hold one.
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`: if set, `iss` must equal it.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`): the principal's claim.
    pub sub_claim_name: String,
    /// `sasl.oauthbearer.scope.claim.name` (default `scope`).
    pub scope_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds` (default 30).
    pub clock_skew_seconds: u64,
}

impl Default for OAuthBearerValidatorConfig {
    fn default() -> Self {
        OAuthBearerValidatorConfig {
            expected_audience: Vec::new(),
            expected_issuer: None,
            sub_claim_name: "sub".into(),
            scope_claim_name: "scope".into(),
            clock_skew_seconds: 30,
        }
    }
}

impl OAuthBearerValidatorConfig {
    /// Reads the settings from Kafka properties; absent names keep their defaults.
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Self, OAuthBearerError> {
        let mut config = Self::default();
        if let Some(v) = props.get("sasl.oauthbearer.expected.audience") {
            config.expected_audience = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(v) = props.get("sasl.oauthbearer.expected.issuer") {
            let v = v.trim();
            config.expected_issuer = (!v.is_empty()).then(|| v.to_string());
        }
        for (name, slot) in [
            (
                "sasl.oauthbearer.sub.claim.name",
                &mut config.sub_claim_name,
            ),
            (
                "sasl.oauthbearer.scope.claim.name",
                &mut config.scope_claim_name,
            ),
        ] {
            if let Some(v) = props.get(name) {
                let v = v.trim();
                if v.is_empty() {
                    return Err(OAuthBearerError::InvalidConfig {
                        name,
                        reason: "must not be empty".into(),
                    });
                }
                *slot = v.to_string();
            }
        }
        if let Some(v) = props.get("sasl.oauthbearer.clock.skew.seconds") {
            config.clock_skew_seconds =
                v.trim().parse().map_err(|e: std::num::ParseIntError| {
                    OAuthBearerError::InvalidConfig {
                        name: "sasl.oauthbearer.clock.skew.seconds",
                        reason: e.to_string(),
                    }
                })?;
        }
        Ok(config)
    }
}

/// The public keys of a JWKS that can verify a signature. Symmetric (`oct`) keys are
/// dropped: a JWKS is public, and accepting HS256 with a public key as the secret is the
/// classic algorithm-confusion hole.
pub struct Jwks {
    keys: Vec<(Option<String>, Jwk, DecodingKey)>,
}

impl Jwks {
    /// Parses a JWKS document (RFC 7517) as read from `sasl.oauthbearer.jwks.endpoint.url`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, OAuthBearerError> {
        let set: JwkSet = serde_json::from_slice(bytes)
            .map_err(|e| OAuthBearerError::InvalidJwks(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in set.keys {
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                tracing::warn!(kid = ?jwk.common.key_id, "JWKS: symmetric key ignored");
                continue;
            }
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => keys.push((jwk.common.key_id.clone(), jwk, key)),
                Err(e) => {
                    tracing::warn!(kid = ?jwk.common.key_id, error = %e, "JWKS: key ignored")
                }
            }
        }
        if keys.is_empty() {
            return Err(OAuthBearerError::InvalidJwks("no usable public key".into()));
        }
        Ok(Jwks { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    use Algorithm::*;
    let family_ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), RS256 | RS384 | RS512 | PS256 | PS384 | PS512) => true,
        (AlgorithmParameters::EllipticCurve(ec), ES256) => {
            ec.curve == jsonwebtoken::jwk::EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), ES384) => {
            ec.curve == jsonwebtoken::jwk::EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(_), EdDSA) => true,
        _ => false,
    };
    // A key that names its algorithm is used for that one only.
    let alg_ok = match jwk.common.key_algorithm {
        Some(ka) => format!("{ka:?}") == format!("{alg:?}"),
        None => true,
    };
    family_ok && alg_ok
}

/// A validated token: Kafka's `OAuthBearerToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerToken {
    pub principal_name: String,
    pub scopes: Vec<String>,
    /// `exp`, in milliseconds since the epoch (KIP-368 re-authentication needs it).
    pub lifetime_ms: u64,
    /// `iat`, if the token has one.
    pub start_time_ms: Option<u64>,
}

fn claim_seconds_ms(
    claims: &serde_json::Value,
    name: &str,
) -> Result<Option<u64>, OAuthBearerError> {
    match claims.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some((s * 1000.0) as u64)),
            _ => Err(OAuthBearerError::InvalidToken(format!(
                "claim {name} is not a number of seconds"
            ))),
        },
    }
}

/// Kafka's `BrokerJwtValidator`: signature against the JWKS, then `exp` (required), `nbf`,
/// `iat`, `aud`, `iss`, and the subject and scope claims.
pub struct OAuthBearerValidator {
    config: OAuthBearerValidatorConfig,
    jwks: Jwks,
}

impl OAuthBearerValidator {
    pub fn new(config: OAuthBearerValidatorConfig, jwks: Jwks) -> Self {
        OAuthBearerValidator { config, jwks }
    }

    /// The `kid`s of the key set's keys (those that have one).
    pub fn key_ids(&self) -> Vec<String> {
        self.jwks
            .keys
            .iter()
            .filter_map(|(kid, _, _)| kid.clone())
            .collect()
    }

    pub fn validate(&self, token: &str, now_ms: u64) -> Result<OAuthBearerToken, OAuthBearerError> {
        let bad = |m: String| OAuthBearerError::InvalidToken(m);
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        let alg = header.alg;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(bad(format!("algorithm {alg:?} is not allowed")));
        }
        let candidates: Vec<&(Option<String>, Jwk, DecodingKey)> = self
            .jwks
            .keys
            .iter()
            .filter(|(kid, jwk, _)| {
                header
                    .kid
                    .as_ref()
                    .is_none_or(|want| kid.as_ref() == Some(want))
                    && key_fits(jwk, alg)
            })
            .collect();
        if candidates.is_empty() {
            return Err(OAuthBearerError::UnknownKey {
                message: format!(
                    "no key in the JWKS for kid {:?} and algorithm {alg:?}",
                    header.kid
                ),
                kid: header.kid,
            });
        }
        let mut validation = Validation::new(alg);
        // Time and audience are checked below against the caller's clock and Kafka's rules.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut last_error = None;
        let mut claims = None;
        for (_, _, key) in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        let claims = claims.ok_or_else(|| bad(last_error.unwrap_or_default()))?;
        if !claims.is_object() {
            return Err(bad("claims are not a JSON object".into()));
        }
        let skew_ms = self.config.clock_skew_seconds.saturating_mul(1000);
        let exp_ms = claim_seconds_ms(&claims, "exp")?.ok_or_else(|| bad("no exp claim".into()))?;
        if now_ms >= exp_ms.saturating_add(skew_ms) {
            return Err(bad(format!(
                "token expired at {exp_ms} ms, now {now_ms} ms"
            )));
        }
        if let Some(nbf_ms) = claim_seconds_ms(&claims, "nbf")? {
            if now_ms.saturating_add(skew_ms) < nbf_ms {
                return Err(bad(format!("token not valid before {nbf_ms} ms")));
            }
        }
        let iat_ms = claim_seconds_ms(&claims, "iat")?;
        if let Some(iat) = iat_ms {
            if iat > exp_ms {
                return Err(bad("iat is after exp".into()));
            }
        }
        if !self.config.expected_audience.is_empty() {
            let auds: Vec<&str> = match claims.get("aud") {
                Some(serde_json::Value::String(s)) => vec![s.as_str()],
                Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => Vec::new(),
            };
            if !auds
                .iter()
                .any(|a| self.config.expected_audience.iter().any(|e| e == a))
            {
                return Err(bad("audience is not one of the expected".into()));
            }
        }
        if let Some(iss) = &self.config.expected_issuer {
            if claims.get("iss").and_then(|v| v.as_str()) != Some(iss.as_str()) {
                return Err(bad("issuer is not the expected one".into()));
            }
        }
        let principal_name = match claims.get(&self.config.sub_claim_name) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                return Err(bad(format!(
                    "no non-empty string claim {}",
                    self.config.sub_claim_name
                )))
            }
        };
        let scopes = match claims.get(&self.config.scope_claim_name) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => {
                s.split_whitespace().map(str::to_string).collect()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("scope entries must be strings".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("scope is neither a string nor a list".into())),
        };
        Ok(OAuthBearerToken {
            principal_name,
            scopes,
            lifetime_ms: exp_ms,
            start_time_ms: iat_ms,
        })
    }
}

/// Where `sasl.oauthbearer.jwks.endpoint.url` points: a `file:` URL is read here (and
/// re-read by [`JwksFileReloader`]); an `https:` one is fetched by the caller, every
/// `sasl.oauthbearer.jwks.endpoint.refresh.ms`, and handed to [`Jwks::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

impl JwksSource {
    pub fn from_properties(props: &HashMap<String, String>) -> Result<Self, OAuthBearerError> {
        const NAME: &str = "sasl.oauthbearer.jwks.endpoint.url";
        let value = props
            .get(NAME)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or(OAuthBearerError::InvalidConfig {
                name: NAME,
                reason: "required for OAUTHBEARER".into(),
            })?;
        if let Some(path) = value.strip_prefix("file://") {
            Ok(JwksSource::File(path.into()))
        } else if value.starts_with("https://") || value.starts_with("http://") {
            Ok(JwksSource::Url(value.to_string()))
        } else {
            Err(OAuthBearerError::InvalidConfig {
                name: NAME,
                reason: format!("`{value}` is neither a file:// nor an http(s):// URL"),
            })
        }
    }
}

/// An [`OAuthBearerValidator`] over a JWKS file that follows the file: the listener polls
/// [`Self::maybe_reload`]; a file that does not parse keeps the previous keys.
pub struct JwksFileReloader {
    path: std::path::PathBuf,
    config: OAuthBearerValidatorConfig,
    state: std::sync::RwLock<(Vec<u8>, Arc<OAuthBearerValidator>)>,
}

impl JwksFileReloader {
    pub fn new(
        path: std::path::PathBuf,
        config: OAuthBearerValidatorConfig,
    ) -> Result<Self, OAuthBearerError> {
        let bytes = std::fs::read(&path)
            .map_err(|e| OAuthBearerError::InvalidJwks(format!("{}: {e}", path.display())))?;
        let validator = Arc::new(OAuthBearerValidator::new(
            config.clone(),
            Jwks::from_json(&bytes)?,
        ));
        Ok(JwksFileReloader {
            path,
            config,
            state: std::sync::RwLock::new((bytes, validator)),
        })
    }

    pub fn current(&self) -> Arc<OAuthBearerValidator> {
        match self.state.read() {
            Ok(g) => g.1.clone(),
            Err(p) => p.into_inner().1.clone(),
        }
    }

    /// True when the file changed and its new keys are in use.
    pub fn maybe_reload(&self) -> Result<bool, OAuthBearerError> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| OAuthBearerError::InvalidJwks(format!("{}: {e}", self.path.display())))?;
        {
            let g = match self.state.read() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if g.0 == bytes {
                return Ok(false);
            }
        }
        let validator = Arc::new(OAuthBearerValidator::new(
            self.config.clone(),
            Jwks::from_json(&bytes)?,
        ));
        let mut g = match self.state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = (bytes, validator);
        tracing::info!(path = %self.path.display(), "JWKS reloaded");
        Ok(true)
    }
}

/// The outcome of one [`OAuthBearerServer::evaluate`] step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthBearerStep {
    /// Authenticated; the broker answers SaslAuthenticate with an empty payload.
    Complete {
        token: OAuthBearerToken,
        extensions: BTreeMap<String, String>,
    },
    /// The token was refused: send this challenge; the client's `^A` reply fails the
    /// exchange.
    Challenge(Vec<u8>),
}

enum State {
    Initial,
    ErrorSent(String),
    Done,
}

/// Kafka's `OAuthBearerSaslServer` for one exchange.
pub struct OAuthBearerServer {
    validator: Arc<OAuthBearerValidator>,
    state: State,
    /// The `kid` of the last token refused for want of its key.
    unknown_kid: Option<String>,
}

impl OAuthBearerServer {
    pub fn new(validator: Arc<OAuthBearerValidator>) -> Self {
        OAuthBearerServer {
            validator,
            state: State::Initial,
            unknown_kid: None,
        }
    }

    /// The `kid` of the token just refused because no key of the JWKS fits it, if that was
    /// the reason: the broker may fetch the key set again early and retry (KIP-768).
    pub fn unknown_kid(&self) -> Option<&str> {
        match self.state {
            State::ErrorSent(_) => self.unknown_kid.as_deref(),
            _ => None,
        }
    }

    pub fn evaluate(
        &mut self,
        message: &[u8],
        now_ms: u64,
    ) -> Result<OAuthBearerStep, OAuthBearerError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Initial => {}
            State::ErrorSent(reason) => {
                if message == [KVSEP as u8] {
                    return Err(OAuthBearerError::AuthenticationFailed(reason));
                }
                // Anything else starts over, as in Kafka: a client may retry with a new token.
            }
            State::Done => return Err(OAuthBearerError::ExchangeFinished),
        }
        let response = parse_client_initial_response(message)?;
        match self.validator.validate(&response.token, now_ms) {
            Ok(token) => {
                if let Some(authzid) = &response.authzid {
                    if *authzid != token.principal_name {
                        return Err(OAuthBearerError::AuthorizationIdMismatch);
                    }
                }
                Ok(OAuthBearerStep::Complete {
                    token,
                    extensions: response.extensions,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "OAUTHBEARER token refused");
                self.unknown_kid = match &e {
                    OAuthBearerError::UnknownKey { kid, .. } => kid.clone(),
                    _ => None,
                };
                self.state = State::ErrorSent(e.to_string());
                Ok(OAuthBearerStep::Challenge(INVALID_TOKEN_RESPONSE.to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    const RSA_PKCS8: &[u8] = include_bytes!("../testdata/rsa2048-test-only.pk8.der");
    const RSA_JWKS: &[u8] = include_bytes!("../testdata/jwks-rsa.json");
    const NOW_MS: u64 = 1_700_000_000_000;

    fn rsa_token(claims: serde_json::Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(RSA_PKCS8)).unwrap()
    }

    fn ec_key() -> (Vec<u8>, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
    }

    fn ec_jwks(public_point: &[u8], kid: &str) -> Vec<u8> {
        let x = URL_SAFE_NO_PAD.encode(&public_point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&public_point[33..65]);
        serde_json::to_vec(&serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": kid, "x": x, "y": y, "use": "sig"}
        ]}))
        .unwrap()
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({
            "sub": "alice", "exp": NOW_MS / 1000 + 3600, "iat": NOW_MS / 1000,
            "aud": ["kafka"], "iss": "https://issuer.test", "scope": "produce consume",
        })
    }

    fn validator(config: OAuthBearerValidatorConfig) -> Arc<OAuthBearerValidator> {
        Arc::new(OAuthBearerValidator::new(
            config,
            Jwks::from_json(RSA_JWKS).unwrap(),
        ))
    }

    fn initial_response(token: &str) -> Vec<u8> {
        let built = client_initial_response(token, &[("traceId", "abc")]);
        assert_eq!(
            built,
            format!("n,,\u{1}auth=Bearer {token}\u{1}traceId=abc\u{1}\u{1}").into_bytes()
        );
        built
    }

    #[test]
    fn rs256_token_authenticates() {
        let config = OAuthBearerValidatorConfig::from_properties(&HashMap::from([
            (
                "sasl.oauthbearer.expected.audience".to_string(),
                "other, kafka".to_string(),
            ),
            (
                "sasl.oauthbearer.expected.issuer".to_string(),
                "https://issuer.test".to_string(),
            ),
        ]))
        .unwrap();
        let v = validator(config);
        let mut server = OAuthBearerServer::new(v.clone());
        let step = server
            .evaluate(
                &initial_response(&rsa_token(good_claims(), Some("rsa-test"))),
                NOW_MS,
            )
            .unwrap();
        let OAuthBearerStep::Complete { token, extensions } = step else {
            panic!("refused: {step:?}");
        };
        assert_eq!(token.principal_name, "alice");
        assert_eq!(token.scopes, ["produce", "consume"]);
        assert_eq!(token.lifetime_ms, NOW_MS + 3_600_000);
        assert_eq!(extensions.get("traceId").map(String::as_str), Some("abc"));
    }

    /// A token signed outside Rust (openssl dgst -sha256 -sign over the test key), so the
    /// verification does not only agree with its own signer.
    const OPENSSL_RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InJzYS10ZXN0In0.eyJzdWIiOiJvcGVuc3NsLXVzZXIiLCJleHAiOjE3MDAwMDM2MDAsImlhdCI6MTcwMDAwMDAwMCwiYXVkIjoia2Fma2EiLCJzY29wZSI6ImEgYiJ9.lmsd71EZv9bQxCNgxgDyVVWJ-nbjl0biqPmqwWD00lKHRFGbWw2apK_ENhaiWSnOlr5JHRLm7h-dzpbeqtFOqG1PFeTJLeN7ApacGGmmkAWS6bQ2Gqc9qKEWsHQ19EquaHAXijq7F8_NblnI3y3SiopsUD6vNigeQ3TpZeFGnzibyCQOOCaXEi_xnSAtSAIEr90NEF3fLiyJih7S74BW5rpIyIpPvVLAdn-KA4Yl0EPiAiewPahn9wAI_EdL9sLJ9aygXORxYp7rK_LYCUTAY4WQn1Ex5MPMUjoLDURZVMOMFyBFrv2ROZj7gA1VG46BrJ7j0mz9-Z1FbUKBS2L0wA";

    #[test]
    fn token_signed_by_openssl_validates() {
        let v = validator(OAuthBearerValidatorConfig {
            expected_audience: vec!["kafka".into()],
            ..Default::default()
        });
        let t = v.validate(OPENSSL_RS256_TOKEN, NOW_MS).unwrap();
        assert_eq!(t.principal_name, "openssl-user");
        assert_eq!(t.scopes, ["a", "b"]);
        assert_eq!(t.start_time_ms, Some(NOW_MS));
        // One changed byte in the payload breaks the signature.
        let mut forged = OPENSSL_RS256_TOKEN.to_string();
        forged.replace_range(80..81, if &forged[80..81] == "A" { "B" } else { "A" });
        assert!(v.validate(&forged, NOW_MS).is_err());
    }

    #[test]
    fn es256_token_and_custom_claim_names() {
        let (pkcs8, point) = ec_key();
        let jwks = Jwks::from_json(&ec_jwks(&point, "ec1")).unwrap();
        let config = OAuthBearerValidatorConfig {
            sub_claim_name: "client_id".into(),
            scope_claim_name: "scp".into(),
            ..Default::default()
        };
        let v = OAuthBearerValidator::new(config, jwks);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec1".into());
        let claims =
            serde_json::json!({"client_id": "svc-1", "exp": NOW_MS / 1000 + 60, "scp": ["a", "b"]});
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&pkcs8)).unwrap();
        let t = v.validate(&token, NOW_MS).unwrap();
        assert_eq!(t.principal_name, "svc-1");
        assert_eq!(t.scopes, ["a", "b"]);
        // Signed by another EC key: refused.
        let (other, _) = ec_key();
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&other)).unwrap();
        assert!(v.validate(&forged, NOW_MS).is_err());
    }

    #[test]
    fn jwks_file_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let (pkcs8, point) = ec_key();
        std::fs::write(&path, ec_jwks(&point, "k1")).unwrap();
        let source = JwksSource::from_properties(&HashMap::from([(
            "sasl.oauthbearer.jwks.endpoint.url".to_string(),
            format!("file://{}", path.display()),
        )]))
        .unwrap();
        assert_eq!(source, JwksSource::File(path.clone()));
        let reloader =
            JwksFileReloader::new(path.clone(), OAuthBearerValidatorConfig::default()).unwrap();
        assert!(!reloader.maybe_reload().unwrap());
        let (pkcs8_2, point_2) = ec_key();
        let sign = |der: &[u8], kid: &str| {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(kid.into());
            jsonwebtoken::encode(&header, &good_claims(), &EncodingKey::from_ec_der(der)).unwrap()
        };
        assert!(reloader
            .current()
            .validate(&sign(&pkcs8, "k1"), NOW_MS)
            .is_ok());
        assert!(reloader
            .current()
            .validate(&sign(&pkcs8_2, "k2"), NOW_MS)
            .is_err());
        // A broken file keeps the old keys; the rotated one replaces them.
        std::fs::write(&path, b"{not json").unwrap();
        assert!(reloader.maybe_reload().is_err());
        assert!(reloader
            .current()
            .validate(&sign(&pkcs8, "k1"), NOW_MS)
            .is_ok());
        std::fs::write(&path, ec_jwks(&point_2, "k2")).unwrap();
        assert!(reloader.maybe_reload().unwrap());
        assert!(reloader
            .current()
            .validate(&sign(&pkcs8_2, "k2"), NOW_MS)
            .is_ok());
        assert!(reloader
            .current()
            .validate(&sign(&pkcs8, "k1"), NOW_MS)
            .is_err());
        for bad in ["", "ftp://x", "/etc/jwks.json"] {
            assert!(JwksSource::from_properties(&HashMap::from([(
                "sasl.oauthbearer.jwks.endpoint.url".to_string(),
                bad.to_string()
            )]))
            .is_err());
        }
    }

    #[test]
    fn time_claims_use_the_given_clock_and_skew() {
        let v = validator(OAuthBearerValidatorConfig::default());
        let exp_s = NOW_MS / 1000 + 10;
        let token = rsa_token(serde_json::json!({"sub": "a", "exp": exp_s}), None);
        assert!(v.validate(&token, NOW_MS).is_ok());
        // Within the 30 s skew after exp: still fine; past it: refused.
        assert!(v.validate(&token, exp_s * 1000 + 29_000).is_ok());
        assert!(v.validate(&token, exp_s * 1000 + 30_000).is_err());
        let nbf = rsa_token(
            serde_json::json!({"sub": "a", "exp": exp_s + 1000, "nbf": NOW_MS / 1000 + 100}),
            None,
        );
        assert!(v.validate(&nbf, NOW_MS).is_err());
        assert!(v.validate(&nbf, NOW_MS + 71_000).is_ok());
        let no_exp = rsa_token(serde_json::json!({"sub": "a"}), None);
        assert!(v.validate(&no_exp, NOW_MS).is_err());
    }

    #[test]
    fn claim_checks() {
        let v = validator(OAuthBearerValidatorConfig {
            expected_audience: vec!["kafka".into()],
            expected_issuer: Some("https://issuer.test".into()),
            ..Default::default()
        });
        assert!(v.validate(&rsa_token(good_claims(), None), NOW_MS).is_ok());
        for (field, value) in [
            ("aud", serde_json::json!("elsewhere")),
            ("iss", serde_json::json!("https://evil.test")),
            ("sub", serde_json::json!("")),
            ("sub", serde_json::json!(42)),
            ("scope", serde_json::json!(42)),
            ("exp", serde_json::json!("soon")),
        ] {
            let mut claims = good_claims();
            claims[field] = value;
            assert!(
                v.validate(&rsa_token(claims, None), NOW_MS).is_err(),
                "{field}"
            );
        }
        // Unknown kid: refused, saying which kid was missing.
        match v.validate(&rsa_token(good_claims(), Some("nope")), NOW_MS) {
            Err(OAuthBearerError::UnknownKey { kid, message }) => {
                assert_eq!(kid.as_deref(), Some("nope"));
                assert!(message.contains("no key in the JWKS"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_server_tells_a_refusal_for_an_unknown_kid() {
        let v = validator(OAuthBearerValidatorConfig::default());
        let mut server = OAuthBearerServer::new(v.clone());
        assert_eq!(server.unknown_kid(), None);
        let token = rsa_token(good_claims(), Some("rotated"));
        assert!(matches!(
            server.evaluate(&initial_response(&token), NOW_MS),
            Ok(OAuthBearerStep::Challenge(_))
        ));
        assert_eq!(server.unknown_kid(), Some("rotated"));
        // Another reason (a bad signature, an expired token) is not a missing key.
        let mut server = OAuthBearerServer::new(v.clone());
        server.evaluate(&initial_response("a.b.c"), NOW_MS).unwrap();
        assert_eq!(server.unknown_kid(), None);
        let mut server = OAuthBearerServer::new(v);
        let expired = rsa_token(
            serde_json::json!({"sub": "alice", "exp": NOW_MS / 1000 - 600}),
            None,
        );
        server
            .evaluate(&initial_response(&expired), NOW_MS)
            .unwrap();
        assert_eq!(server.unknown_kid(), None);
    }

    #[test]
    fn hs256_with_public_key_material_is_refused() {
        let v = validator(OAuthBearerValidatorConfig::default());
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good_claims(),
            &EncodingKey::from_secret(RSA_JWKS),
        )
        .unwrap();
        assert!(v.validate(&token, NOW_MS).is_err());
        let oct = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert!(Jwks::from_json(oct).is_err());
    }

    #[test]
    fn bad_token_gets_kafkas_challenge_then_fails() {
        let v = validator(OAuthBearerValidatorConfig::default());
        let mut server = OAuthBearerServer::new(v.clone());
        let step = server.evaluate(&initial_response("a.b.c"), NOW_MS).unwrap();
        assert_eq!(
            step,
            OAuthBearerStep::Challenge(br#"{"status":"invalid_token"}"#.to_vec())
        );
        assert!(matches!(
            server.evaluate(b"\x01", NOW_MS),
            Err(OAuthBearerError::AuthenticationFailed(_))
        ));
        assert_eq!(
            server.evaluate(b"\x01", NOW_MS),
            Err(OAuthBearerError::ExchangeFinished)
        );
        // After the challenge, a new initial response is a retry, as in Kafka.
        let mut server = OAuthBearerServer::new(v.clone());
        server.evaluate(&initial_response("a.b.c"), NOW_MS).unwrap();
        let good = rsa_token(good_claims(), None);
        assert!(matches!(
            server.evaluate(&initial_response(&good), NOW_MS),
            Ok(OAuthBearerStep::Complete { .. })
        ));
    }

    #[test]
    fn authzid_must_match_the_principal() {
        let v = validator(OAuthBearerValidatorConfig::default());
        let token = rsa_token(good_claims(), None);
        let mut server = OAuthBearerServer::new(v.clone());
        let msg = format!("n,a=admin,\u{1}auth=Bearer {token}\u{1}\u{1}");
        assert_eq!(
            server.evaluate(msg.as_bytes(), NOW_MS),
            Err(OAuthBearerError::AuthorizationIdMismatch)
        );
        let mut server = OAuthBearerServer::new(v.clone());
        let msg = format!("n,a=alice,\u{1}auth=Bearer {token}\u{1}\u{1}");
        assert!(matches!(
            server.evaluate(msg.as_bytes(), NOW_MS),
            Ok(OAuthBearerStep::Complete { .. })
        ));
    }

    #[test]
    fn initial_response_parsing() {
        let ok = parse_client_initial_response(b"n,,\x01auth=bearer abc.def\x01\x01").unwrap();
        assert_eq!(ok.token, "abc.def");
        let padded =
            parse_client_initial_response(b"n,,\x01auth=Bearer  a~b+c/d==\x01\x01").unwrap();
        assert_eq!(padded.token, "a~b+c/d==");
        assert!(ok.extensions.is_empty());
        for bad in [
            &b"y,,\x01auth=Bearer t\x01\x01"[..],
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer t t\x01\x01",
            b"n,,\x01auth=Bearer t=x\x01\x01",
            b"n,a=a,b,\x01auth=Bearer t\x01\x01",
            "n,a=é,\x01auth=Bearer t\x01\x01".as_bytes(),
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01x1=v\x01auth=Bearer t\x01\x01",
            b"n,,\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"",
        ] {
            assert!(parse_client_initial_response(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                    token in "[A-Za-z0-9_.-]{0,80}") {
            let v = validator(OAuthBearerValidatorConfig::default());
            let mut server = OAuthBearerServer::new(v.clone());
            let _ = server.evaluate(&bytes, NOW_MS);
            let _ = server.evaluate(&bytes, NOW_MS);
            let _ = v.validate(&token, NOW_MS);
            let _ = Jwks::from_json(&bytes);
        }
    }
}
