//! SCRAM-SHA-256 and SCRAM-SHA-512, server side (RFC 5802, RFC 7677), after Kafka's
//! `org.apache.kafka.common.security.scram` (`ScramSaslServer`, `ScramFormatter`,
//! `ScramMessages`, `ScramCredential`).
//!
//! Sans-io: [`ScramServer::evaluate`] takes one SaslAuthenticate payload and gives the bytes to
//! answer with; the caller owns the socket and the credential store. Credentials are what
//! Kafka's `UserScramCredentialRecord` holds (salt, StoredKey, ServerKey, iterations), never
//! the password, so a leaked metadata log does not give out passwords.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;

use crate::ct_eq;

/// Kafka's `ScramMechanism.minIterations`: fewer are refused in credentials and exchanges.
pub const MIN_ITERATIONS: u32 = 4096;
/// KIP-554's upper bound on iterations for AlterUserScramCredentials (Kafka's
/// `ScramMechanism.maxIterations`): a client must not make the broker spin for long.
pub const MAX_ITERATIONS: u32 = 16384;
/// Length of the salts this module makes (Kafka's `ScramFormatter.secureRandomBytes` too).
pub const DEFAULT_SALT_BYTES: usize = 32;
/// Random bytes in a nonce before hex.
const SERVER_NONCE_BYTES: usize = 24;

/// A fresh nonce of letters and digits only, as Kafka's (`ScramFormatter.secureRandomString`,
/// base 36). RFC 5802 allows any printable but ',', yet librdkafka 2.0 (Debian's kcat) fails
/// its final message on a server nonce with base64's `+` or `/`.
fn random_nonce() -> String {
    random_bytes(SERVER_NONCE_BYTES)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The two SCRAM mechanisms Kafka supports, with their SASL names and the type codes of
/// `UserScramCredentialRecord.mechanism` / `ScramMechanism.type()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// The SASL mechanism name, as in `sasl.enabled.mechanisms` and SaslHandshake.
    pub fn mechanism_name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses a SASL mechanism name; `None` for anything else.
    pub fn from_mechanism_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// Kafka's wire code (`ScramMechanism.type()`), used by DescribeUserScramCredentials,
    /// AlterUserScramCredentials and the metadata record.
    pub fn type_code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The inverse of [`Self::type_code`]; 0 is Kafka's UNKNOWN and gives `None`.
    pub fn from_type_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_alg(), key);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    /// RFC 5802's `Hi(password, salt, i)`, which is PBKDF2 with the mechanism's HMAC.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_alg().output_len()];
        pbkdf2::derive(self.pbkdf2_alg(), iterations, salt, password, &mut out);
        out
    }

    fn output_len_bytes(self) -> usize {
        self.digest_alg().output_len()
    }
}

/// What SCRAM and KIP-554 refuse. The messages are the ones a client sees in
/// SaslAuthenticate's or AlterUserScramCredentials' error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("Invalid SCRAM client first message: {0}")]
    InvalidClientFirst(&'static str),
    #[error("Invalid SCRAM client final message: {0}")]
    InvalidClientFinal(&'static str),
    #[error("Authentication failed: Invalid user credentials")]
    InvalidCredentials,
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthorizationIdMismatch,
    #[error("Authentication failed: channel binding is not supported")]
    ChannelBindingUnsupported,
    #[error("Authentication failed: delegation tokens (tokenauth) are not supported")]
    TokenAuthUnsupported,
    #[error("Authentication failed: Invalid client nonce in the final client message")]
    NonceMismatch,
    #[error("Iterations {iterations} is less than the minimum {minimum} for {mechanism}")]
    TooFewIterations {
        mechanism: &'static str,
        iterations: u32,
        minimum: u32,
    },
    #[error("Iterations {iterations} is more than the maximum {maximum}")]
    TooManyIterations { iterations: u32, maximum: u32 },
    #[error("Salt must not be empty")]
    EmptySalt,
    #[error("Username must not be empty")]
    EmptyUsername,
    #[error(
        "Credential for {mechanism} has a {field} of {got_bytes} bytes, expected {expected_bytes}"
    )]
    BadKeyLength {
        mechanism: &'static str,
        field: &'static str,
        got_bytes: usize,
        expected_bytes: usize,
    },
    #[error("The SCRAM exchange is already finished")]
    ExchangeFinished,
}

/// A user's SCRAM credential for one mechanism: what Kafka's `UserScramCredentialRecord`
/// holds (name, mechanism, salt, stored key, server key, iterations), minus the user name,
/// which is the key it is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// Derives a credential from a password with a fresh random salt (what `strom user
    /// create` and Kafka's `kafka-configs.sh --add-config SCRAM-...` do client-side).
    pub fn generate(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        let salt = random_bytes(DEFAULT_SALT_BYTES);
        Self::derive(mechanism, password, &salt, iterations)
    }

    /// RFC 5802's key derivation: SaltedPassword = Hi(password, salt, i), StoredKey =
    /// H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key").
    /// Kafka's SCRAM is SASLprep-free: the password's UTF-8 bytes are used as they are.
    pub fn derive(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        validate_iterations(mechanism, iterations)?;
        if salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        let Some(nz) = NonZeroU32::new(iterations) else {
            return Err(ScramError::TooFewIterations {
                mechanism: mechanism.mechanism_name(),
                iterations,
                minimum: MIN_ITERATIONS,
            });
        };
        let salted = mechanism.salted_password(password.as_bytes(), salt, nz);
        Ok(Self::from_salted_password(
            mechanism, &salted, salt, iterations,
        ))
    }

    /// KIP-554's AlterUserScramCredentials upsertion carries the salted password (the client
    /// ran Hi), not the password; this builds the stored credential from it. Callers check
    /// the upsertion with [`validate_upsertion_wire`] first.
    pub fn from_upsertion(
        mechanism: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Self, UpsertionError> {
        if salted_password.len() != mechanism.output_len_bytes() {
            return Err(UpsertionError::BadSaltedPassword {
                got_bytes: salted_password.len(),
                expected_bytes: mechanism.output_len_bytes(),
            });
        }
        Ok(Self::from_salted_password(
            mechanism,
            salted_password,
            salt,
            iterations,
        ))
    }

    fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let server_key = mechanism.hmac(salted_password, b"Server Key");
        ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            stored_key,
            server_key,
            iterations,
        }
    }

    /// Checks a credential read back from a record (a damaged or hostile record must not
    /// become a credential that any proof matches, e.g. an empty StoredKey).
    pub fn validate(&self) -> Result<(), ScramError> {
        validate_iterations(self.mechanism, self.iterations)?;
        if self.salt.is_empty() {
            return Err(ScramError::EmptySalt);
        }
        let expected = self.mechanism.output_len_bytes();
        for (field, key) in [
            ("stored key", &self.stored_key),
            ("server key", &self.server_key),
        ] {
            if key.len() != expected {
                return Err(ScramError::BadKeyLength {
                    mechanism: self.mechanism.mechanism_name(),
                    field,
                    got_bytes: key.len(),
                    expected_bytes: expected,
                });
            }
        }
        Ok(())
    }
}

fn validate_iterations(mechanism: ScramMechanism, iterations: u32) -> Result<(), ScramError> {
    if iterations < MIN_ITERATIONS {
        return Err(ScramError::TooFewIterations {
            mechanism: mechanism.mechanism_name(),
            iterations,
            minimum: MIN_ITERATIONS,
        });
    }
    if iterations > MAX_ITERATIONS {
        return Err(ScramError::TooManyIterations {
            iterations,
            maximum: MAX_ITERATIONS,
        });
    }
    Ok(())
}

/// KIP-554's checks of one AlterUserScramCredentials upsertion before anything is derived or
/// stored (Kafka's `ScramControlManager.validateUpsertion`; the error is answered as
/// UNACCEPTABLE_CREDENTIAL). Iterations are the wire's i32, so a negative count is refused,
/// not wrapped. An empty salt is refused too, where Kafka takes it (a departure: a
/// credential without salt is open to precomputed-dictionary attacks).
pub fn validate_upsertion_wire(
    user: &str,
    salt: &[u8],
    iterations: i32,
) -> Result<(), UpsertionError> {
    if user.is_empty() {
        return Err(UpsertionError::EmptyUsername);
    }
    if iterations < MIN_ITERATIONS as i32 {
        return Err(UpsertionError::TooFewIterations);
    }
    if iterations > MAX_ITERATIONS as i32 {
        return Err(UpsertionError::TooManyIterations);
    }
    if salt.is_empty() {
        return Err(UpsertionError::EmptySalt);
    }
    Ok(())
}

/// Why an AlterUserScramCredentials entry is refused, with Kafka's messages and codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpsertionError {
    #[error("Username must not be empty")]
    EmptyUsername,
    #[error("Unknown SCRAM mechanism")]
    UnknownMechanism,
    #[error("Too few iterations")]
    TooFewIterations,
    #[error("Too many iterations")]
    TooManyIterations,
    #[error("Salt must not be empty")]
    EmptySalt,
    #[error("Salted password must be {expected_bytes} bytes for this mechanism, not {got_bytes}")]
    BadSaltedPassword {
        got_bytes: usize,
        expected_bytes: usize,
    },
    #[error("A user credential cannot be altered twice in the same request")]
    Duplicate,
    #[error("Attempt to delete a user credential that does not exist")]
    NotFound,
}

impl UpsertionError {
    /// Kafka's error code for the AlterUserScramCredentials result.
    pub fn error_code(&self) -> i16 {
        match self {
            UpsertionError::UnknownMechanism => 33, // UNSUPPORTED_SASL_MECHANISM
            UpsertionError::Duplicate => 92,        // DUPLICATE_RESOURCE
            UpsertionError::NotFound => 91,         // RESOURCE_NOT_FOUND
            _ => 93,                                // UNACCEPTABLE_CREDENTIAL
        }
    }
}

/// One AlterUserScramCredentials upsertion as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUpsertion {
    pub name: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// One AlterUserScramCredentials deletion as the wire carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramDeletion {
    pub name: String,
    pub mechanism: i8,
}

/// A change for the metadata log: Kafka's `UserScramCredentialRecord` and
/// `RemoveUserScramCredentialRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramCredentialChange {
    Upsert {
        name: String,
        credential: ScramCredential,
    },
    Remove {
        name: String,
        mechanism: ScramMechanism,
    },
}

/// One user's result in the AlterUserScramCredentials response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterResult {
    pub user: String,
    pub error: Option<UpsertionError>,
}

/// Kafka's `ScramControlManager.alterCredentials`: validates every entry, refuses a user
/// named twice in one request (all of that user's entries fail), and gives the records to
/// commit with one result per user. `exists` tells whether a credential is stored now.
pub fn plan_alter_user_scram_credentials(
    deletions: &[ScramDeletion],
    upsertions: &[ScramUpsertion],
    exists: impl Fn(&str, ScramMechanism) -> bool,
) -> (Vec<AlterResult>, Vec<ScramCredentialChange>) {
    let mut errors: Vec<(String, UpsertionError)> = Vec::new();
    let has_error =
        |errors: &Vec<(String, UpsertionError)>, name: &str| errors.iter().any(|(n, _)| n == name);
    let mut to_delete: Vec<(String, ScramMechanism)> = Vec::new();
    let mut to_upsert: Vec<&ScramUpsertion> = Vec::new();
    for d in deletions {
        if has_error(&errors, &d.name) {
            continue;
        }
        if let Some(pos) = to_delete.iter().position(|(n, _)| *n == d.name) {
            to_delete.remove(pos);
            errors.push((d.name.clone(), UpsertionError::Duplicate));
            continue;
        }
        let checked = if d.name.is_empty() {
            Err(UpsertionError::EmptyUsername)
        } else {
            match ScramMechanism::from_type_code(d.mechanism) {
                None => Err(UpsertionError::UnknownMechanism),
                Some(m) if !exists(&d.name, m) => Err(UpsertionError::NotFound),
                Some(m) => Ok(m),
            }
        };
        match checked {
            Ok(m) => to_delete.push((d.name.clone(), m)),
            Err(e) => errors.push((d.name.clone(), e)),
        }
    }
    for u in upsertions {
        if has_error(&errors, &u.name) {
            continue;
        }
        let in_delete = to_delete.iter().position(|(n, _)| *n == u.name);
        let in_upsert = to_upsert.iter().position(|x| x.name == u.name);
        if in_delete.is_some() || in_upsert.is_some() {
            if let Some(pos) = in_delete {
                to_delete.remove(pos);
            }
            if let Some(pos) = in_upsert {
                to_upsert.remove(pos);
            }
            errors.push((u.name.clone(), UpsertionError::Duplicate));
            continue;
        }
        let checked = if u.name.is_empty() {
            Err(UpsertionError::EmptyUsername)
        } else if ScramMechanism::from_type_code(u.mechanism).is_none() {
            Err(UpsertionError::UnknownMechanism)
        } else {
            validate_upsertion_wire(&u.name, &u.salt, u.iterations)
        };
        match checked {
            Ok(()) => to_upsert.push(u),
            Err(e) => errors.push((u.name.clone(), e)),
        }
    }
    let mut results = Vec::new();
    let mut changes = Vec::new();
    for (name, mechanism) in to_delete {
        results.push(AlterResult {
            user: name.clone(),
            error: None,
        });
        changes.push(ScramCredentialChange::Remove { name, mechanism });
    }
    for u in to_upsert {
        let Some(mechanism) = ScramMechanism::from_type_code(u.mechanism) else {
            continue;
        };
        match ScramCredential::from_upsertion(
            mechanism,
            &u.salt,
            &u.salted_password,
            u.iterations as u32,
        ) {
            Ok(credential) => {
                results.push(AlterResult {
                    user: u.name.clone(),
                    error: None,
                });
                changes.push(ScramCredentialChange::Upsert {
                    name: u.name.clone(),
                    credential,
                });
            }
            Err(e) => errors.push((u.name.clone(), e)),
        }
    }
    for (user, error) in errors {
        results.push(AlterResult {
            user,
            error: Some(error),
        });
    }
    (results, changes)
}

/// Kafka's `ScramFormatter.username`: a saslname decodes `=2C` to `,` and `=3D` to `=`; any
/// other `=` is malformed (RFC 5802 section 5.1).
pub fn decode_saslname(saslname: &str) -> Option<String> {
    let mut out = String::with_capacity(saslname.len());
    let mut rest = saslname;
    while let Some(pos) = rest.find('=') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The inverse of [`decode_saslname`] (Kafka's `ScramFormatter.saslName`), for clients.
pub fn encode_saslname(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

fn random_bytes(len: usize) -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut out = vec![0u8; len];
    // SystemRandom fails only when the OS has no entropy source at all; a zero nonce then
    // still differs from the client's, and a salt of zeros is only as weak as no salt.
    if ring::rand::SystemRandom::new().fill(&mut out).is_err() {
        tracing::error!("the system random source failed; SCRAM salt/nonce is not random");
    }
    out
}

/// RFC 5802's `printable` for nonces: 0x21..=0x7E except ','.
fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A parsed client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The GS2 header as sent (`n,,` or `n,a=<authzid>,`); the client-final's `c=` must be
    /// its base64.
    pub gs2_header: String,
    pub authzid: Option<String>,
    pub username: String,
    pub nonce: String,
    /// `client-first-message-bare`, part of the AuthMessage that both sides sign.
    pub bare: String,
}

/// Parses RFC 5802's client-first-message with Kafka's rules: channel binding is never
/// used (`n`; `y` and `p` are refused), the authzid if present must be a saslname,
/// reserved-mext (`m=`) is refused, and extensions after the nonce are allowed except
/// `tokenauth`, which asks for delegation-token authentication.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text =
        std::str::from_utf8(message).map_err(|_| ScramError::InvalidClientFirst("not UTF-8"))?;
    let (cbind, rest) = text
        .split_once(',')
        .ok_or(ScramError::InvalidClientFirst("no GS2 header"))?;
    match cbind {
        "n" => {}
        // Kafka accepts only "n": "y" (client could bind, thinks we cannot) is refused too.
        "y" => return Err(ScramError::ChannelBindingUnsupported),
        c if c.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::InvalidClientFirst("bad channel binding flag")),
    }
    let (authz, bare) = rest
        .split_once(',')
        .ok_or(ScramError::InvalidClientFirst("no GS2 header"))?;
    let authzid = if authz.is_empty() {
        None
    } else if let Some(a) = authz.strip_prefix("a=") {
        Some(decode_saslname(a).ok_or(ScramError::InvalidClientFirst("bad authzid"))?)
    } else {
        return Err(ScramError::InvalidClientFirst("bad authzid"));
    };
    let gs2_header = format!("{cbind},{authz},");

    let mut attrs = bare.split(',').peekable();
    // Kafka takes and ignores reserved-mext ("m=...") before the username.
    if attrs.peek().is_some_and(|a| a.starts_with("m=")) {
        attrs.next();
    }
    let user_attr = attrs
        .next()
        .ok_or(ScramError::InvalidClientFirst("no username"))?;
    let saslname = user_attr
        .strip_prefix("n=")
        .ok_or(ScramError::InvalidClientFirst("no username"))?;
    // Kafka's saslname is ASCII (0x01..=0x7F) without ',' and with '=' only in escapes.
    if !saslname.bytes().all(|b| (0x01..=0x7f).contains(&b)) {
        return Err(ScramError::InvalidClientFirst("username is not ASCII"));
    }
    let username =
        decode_saslname(saslname).ok_or(ScramError::InvalidClientFirst("bad username escape"))?;
    if username.is_empty() {
        return Err(ScramError::InvalidClientFirst("empty username"));
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::InvalidClientFirst("no nonce"))?;
    if !valid_nonce(nonce) {
        return Err(ScramError::InvalidClientFirst("bad nonce"));
    }
    for ext in attrs {
        let (key, _value) = ext
            .split_once('=')
            .ok_or(ScramError::InvalidClientFirst("bad extension"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ScramError::InvalidClientFirst("bad extension"));
        }
        if key == "tokenauth" {
            return Err(ScramError::TokenAuthUnsupported);
        }
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        username,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// A parsed client-final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
    /// `client-final-message-without-proof`, the last part of the AuthMessage.
    pub without_proof: String,
}

/// Parses RFC 5802's client-final-message: `c=`, `r=`, optional extensions, `p=` last.
pub fn parse_client_final(message: &[u8]) -> Result<ClientFinal, ScramError> {
    let text =
        std::str::from_utf8(message).map_err(|_| ScramError::InvalidClientFinal("not UTF-8"))?;
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::InvalidClientFinal("no proof"))?;
    let proof = B64
        .decode(proof)
        .map_err(|_| ScramError::InvalidClientFinal("proof is not base64"))?;
    let mut attrs = without_proof.split(',');
    let cb = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(ScramError::InvalidClientFinal("no channel binding"))?;
    let channel_binding = B64
        .decode(cb)
        .map_err(|_| ScramError::InvalidClientFinal("channel binding is not base64"))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::InvalidClientFinal("no nonce"))?;
    if !valid_nonce(nonce) {
        return Err(ScramError::InvalidClientFinal("bad nonce"));
    }
    for ext in attrs {
        if !ext.contains('=') {
            return Err(ScramError::InvalidClientFinal("bad extension"));
        }
    }
    Ok(ClientFinal {
        channel_binding,
        nonce: nonce.to_string(),
        proof,
        without_proof: without_proof.to_string(),
    })
}

/// What the server holds between its server-first and the client's final message.
struct AwaitingFinal {
    credential: ScramCredential,
    client_first: ClientFirst,
    server_first: String,
    combined_nonce: String,
}

enum State {
    ReceiveClientFirst,
    ReceiveClientFinal(Box<AwaitingFinal>),
    Complete,
    Failed,
}

/// The outcome of one [`ScramServer::evaluate`] step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramStep {
    /// Send these bytes and wait for the client's next message.
    Continue(Vec<u8>),
    /// Send these bytes (server-final `v=`); the client is authenticated as `username`.
    Complete { response: Vec<u8>, username: String },
}

/// Kafka's `ScramSaslServer`: client-first → server-first → client-final → server-final.
/// Any error ends the exchange: later calls answer [`ScramError::ExchangeFinished`].
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    state: State,
}

impl ScramServer {
    /// A server for one exchange, with a fresh random server nonce.
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self::with_server_nonce(mechanism, random_nonce())
    }

    /// A server whose nonce is given (tests against fixed vectors such as RFC 7677's).
    pub fn with_server_nonce(mechanism: ScramMechanism, server_nonce: String) -> Self {
        ScramServer {
            mechanism,
            server_nonce,
            state: State::ReceiveClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Whether the exchange has ended successfully.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// Takes the client's next message. `lookup` is asked for the user's credential for this
    /// mechanism once, on the client-first message; `None` fails the exchange as Kafka does.
    pub fn evaluate(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, ScramError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (next, result) = match state {
            State::ReceiveClientFirst => match self.on_client_first(message, lookup) {
                Ok((next, out)) => (next, Ok(ScramStep::Continue(out))),
                Err(e) => (State::Failed, Err(e)),
            },
            State::ReceiveClientFinal(awaiting) => {
                let AwaitingFinal {
                    credential,
                    client_first,
                    server_first,
                    combined_nonce,
                } = *awaiting;
                match self.on_client_final(
                    message,
                    &credential,
                    &client_first,
                    &server_first,
                    &combined_nonce,
                ) {
                    Ok(response) => (
                        State::Complete,
                        Ok(ScramStep::Complete {
                            response,
                            username: client_first.username,
                        }),
                    ),
                    Err(e) => (State::Failed, Err(e)),
                }
            }
            State::Complete | State::Failed => (State::Failed, Err(ScramError::ExchangeFinished)),
        };
        self.state = next;
        result
    }

    fn on_client_first(
        &self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<(State, Vec<u8>), ScramError> {
        let client_first = parse_client_first(message)?;
        if let Some(authzid) = &client_first.authzid {
            if authzid != &client_first.username {
                return Err(ScramError::AuthorizationIdMismatch);
            }
        }
        let credential = lookup(&client_first.username).ok_or(ScramError::InvalidCredentials)?;
        if credential.mechanism != self.mechanism {
            return Err(ScramError::InvalidCredentials);
        }
        match credential.validate() {
            Ok(()) => {}
            Err(e @ ScramError::TooFewIterations { .. }) => return Err(e),
            Err(_) => return Err(ScramError::InvalidCredentials),
        }
        let combined_nonce = format!("{}{}", client_first.nonce, self.server_nonce);
        let server_first = format!(
            "r={combined_nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let out = server_first.clone().into_bytes();
        Ok((
            State::ReceiveClientFinal(Box::new(AwaitingFinal {
                credential,
                client_first,
                server_first,
                combined_nonce,
            })),
            out,
        ))
    }

    fn on_client_final(
        &self,
        message: &[u8],
        credential: &ScramCredential,
        client_first: &ClientFirst,
        server_first: &str,
        combined_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        let client_final = parse_client_final(message)?;
        // Kafka's rule: the final nonce must end with the combined one. librdkafka 2.0.x
        // (Debian's kcat) sends its own nonce in front of the combined nonce again, and
        // Kafka takes it; the proof still covers the message as sent.
        if !client_final.nonce.ends_with(combined_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        // RFC 5802 wants the GS2 header echoed; some clients send "n,," even after an
        // authzid, and Kafka does not check at all, so both are taken.
        if client_final.channel_binding != client_first.gs2_header.as_bytes()
            && client_final.channel_binding != b"n,,"
        {
            return Err(ScramError::InvalidClientFinal(
                "channel binding does not match",
            ));
        }
        let auth_message = format!(
            "{},{},{}",
            client_first.bare, server_first, client_final.without_proof
        );
        let mech = self.mechanism;
        let client_signature = mech.hmac(&credential.stored_key, auth_message.as_bytes());
        if client_final.proof.len() != client_signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = client_final
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !ct_eq(&mech.hash(&client_key), &credential.stored_key) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = mech.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// RFC 5802's `Hi(password, salt, i)` for a mechanism: what AlterUserScramCredentials'
/// upsertion carries (KIP-554 has the client salt and hash the password, so it never
/// travels).
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Vec<u8>, ScramError> {
    validate_iterations(mechanism, iterations)?;
    let Some(nz) = NonZeroU32::new(iterations) else {
        return Err(ScramError::TooFewIterations {
            mechanism: mechanism.mechanism_name(),
            iterations,
            minimum: MIN_ITERATIONS,
        });
    };
    Ok(mechanism.salted_password(password.as_bytes(), salt, nz))
}

/// A fresh random salt for an upsertion.
pub fn new_salt() -> Vec<u8> {
    random_bytes(DEFAULT_SALT_BYTES)
}

/// What the client side of SCRAM refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramClientError {
    #[error("Invalid SCRAM server first message: {0}")]
    InvalidServerFirst(&'static str),
    #[error("Invalid SCRAM server final message: {0}")]
    InvalidServerFinal(&'static str),
    #[error("SCRAM server error: {0}")]
    ServerError(String),
    #[error("Invalid server signature in the SCRAM server final message")]
    BadServerSignature,
    #[error("SCRAM client used out of order")]
    OutOfOrder,
}

enum ClientState {
    Initial,
    SentFirst { bare: String },
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// The client side of SCRAM (Kafka's `ScramSaslClient`), for Strom's own client and CLI.
/// The server's iteration count is checked against the same bounds as credentials, so a
/// hostile server cannot make the client hash for minutes.
pub struct ScramClient {
    mechanism: ScramMechanism,
    username: String,
    password: String,
    nonce: String,
    state: ClientState,
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, username: &str, password: &str) -> Self {
        Self::with_nonce(mechanism, username, password, random_nonce())
    }

    /// A client whose nonce is given (test vectors).
    pub fn with_nonce(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        nonce: String,
    ) -> Self {
        ScramClient {
            mechanism,
            username: username.to_string(),
            password: password.to_string(),
            nonce,
            state: ClientState::Initial,
        }
    }

    /// The client-first message.
    pub fn first_message(&mut self) -> Result<Vec<u8>, ScramClientError> {
        if !matches!(self.state, ClientState::Initial) {
            return Err(ScramClientError::OutOfOrder);
        }
        let bare = format!("n={},r={}", encode_saslname(&self.username), self.nonce);
        let out = format!("n,,{bare}").into_bytes();
        self.state = ClientState::SentFirst { bare };
        Ok(out)
    }

    /// Takes the server-first message and gives the client-final one.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramClientError> {
        use ScramClientError::InvalidServerFirst as Bad;
        let ClientState::SentFirst { bare } = std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(ScramClientError::OutOfOrder);
        };
        let text = std::str::from_utf8(server_first).map_err(|_| Bad("not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramClientError::ServerError(e.to_string()));
        }
        let mut attrs = text.split(',');
        let mut next = |prefix: &'static str| {
            attrs
                .next()
                .and_then(|a| a.strip_prefix(prefix))
                .ok_or(Bad("missing attribute"))
        };
        let nonce = next("r=")?;
        let salt_b64 = next("s=")?;
        let iterations_text = next("i=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() || !valid_nonce(nonce)
        {
            return Err(Bad("nonce does not extend the client's"));
        }
        let salt = B64
            .decode(salt_b64)
            .map_err(|_| Bad("salt is not base64"))?;
        let iterations: u32 = iterations_text.parse().map_err(|_| Bad("bad iterations"))?;
        let salted = salted_password(self.mechanism, &self.password, &salt, iterations)
            .map_err(|_| Bad("iterations out of range"))?;
        let m = self.mechanism;
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{bare},{text},{without_proof}");
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.state = ClientState::SentFinal {
            server_signature: m.hmac(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proved it knows the credential.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<(), ScramClientError> {
        use ScramClientError::InvalidServerFinal as Bad;
        let ClientState::SentFinal { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Done)
        else {
            return Err(ScramClientError::OutOfOrder);
        };
        let text = std::str::from_utf8(server_final).map_err(|_| Bad("not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramClientError::ServerError(e.to_string()));
        }
        let v = text
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("v="))
            .ok_or(Bad("no verifier"))?;
        let got = B64.decode(v).map_err(|_| Bad("verifier is not base64"))?;
        if ct_eq(&got, &server_signature) {
            Ok(())
        } else {
            Err(ScramClientError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn server_nonces_are_letters_and_digits() {
        // librdkafka 2.0 fails the exchange on a `+` or `/` in the server nonce; one in
        // three base64 nonces had one.
        for _ in 0..200 {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            let step = server.evaluate(b"n,,n=alice,r=clientnonce", |_| {
                ScramCredential::derive(ScramMechanism::Sha256, "pw", &[7; 16], 4096).ok()
            });
            let Ok(ScramStep::Continue(first)) = step else {
                panic!("server-first expected, got {step:?}");
            };
            let first = String::from_utf8(first).unwrap_or_default();
            let nonce = first
                .strip_prefix("r=clientnonce")
                .and_then(|r| r.split(',').next())
                .unwrap_or_default();
            assert!(nonce.len() >= 32, "{first}");
            assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{first}");
        }
    }

    /// A SCRAM client as Kafka's `ScramSaslClient` does it, to drive the server end to end.
    struct TestClient {
        mechanism: ScramMechanism,
        username: String,
        password: String,
        nonce: String,
        client_first_bare: String,
        salted: Vec<u8>,
        auth_message: String,
        /// Sent before the combined nonce in the final message (librdkafka 2.0.x sends its
        /// own nonce there).
        final_nonce_prefix: String,
    }

    impl TestClient {
        fn new(mechanism: ScramMechanism, username: &str, password: &str, nonce: &str) -> Self {
            TestClient {
                mechanism,
                username: username.into(),
                password: password.into(),
                nonce: nonce.into(),
                client_first_bare: String::new(),
                salted: Vec::new(),
                auth_message: String::new(),
                final_nonce_prefix: String::new(),
            }
        }

        fn first(&mut self) -> Vec<u8> {
            self.client_first_bare =
                format!("n={},r={}", encode_saslname(&self.username), self.nonce);
            format!("n,,{}", self.client_first_bare).into_bytes()
        }

        fn final_message(&mut self, server_first: &[u8]) -> Vec<u8> {
            let sf = std::str::from_utf8(server_first).unwrap();
            let mut nonce = "";
            let mut salt = Vec::new();
            let mut iterations = 0u32;
            for attr in sf.split(',') {
                if let Some(v) = attr.strip_prefix("r=") {
                    nonce = v;
                } else if let Some(v) = attr.strip_prefix("s=") {
                    salt = B64.decode(v).unwrap();
                } else if let Some(v) = attr.strip_prefix("i=") {
                    iterations = v.parse().unwrap();
                }
            }
            assert!(nonce.starts_with(&self.nonce));
            let m = self.mechanism;
            self.salted = m.salted_password(
                self.password.as_bytes(),
                &salt,
                NonZeroU32::new(iterations).unwrap(),
            );
            let without_proof = format!(
                "c={},r={}{nonce}",
                B64.encode("n,,"),
                self.final_nonce_prefix
            );
            self.auth_message = format!("{},{sf},{without_proof}", self.client_first_bare);
            let client_key = m.hmac(&self.salted, b"Client Key");
            let stored_key = m.hash(&client_key);
            let signature = m.hmac(&stored_key, self.auth_message.as_bytes());
            let proof: Vec<u8> = client_key
                .iter()
                .zip(&signature)
                .map(|(a, b)| a ^ b)
                .collect();
            format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
        }

        fn check_server_final(&self, server_final: &[u8]) -> bool {
            let m = self.mechanism;
            let server_key = m.hmac(&self.salted, b"Server Key");
            let sig = m.hmac(&server_key, self.auth_message.as_bytes());
            server_final == format!("v={}", B64.encode(sig)).as_bytes()
        }
    }

    const RFC7677_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

    fn rfc7677_credential() -> ScramCredential {
        let salt = B64.decode(RFC7677_SALT_B64).unwrap();
        ScramCredential::derive(ScramMechanism::Sha256, "pencil", &salt, 4096).unwrap()
    }

    #[test]
    fn rfc7677_test_vector() {
        let mut server = ScramServer::with_server_nonce(
            ScramMechanism::Sha256,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        );
        let step = server
            .evaluate(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |u| {
                assert_eq!(u, "user");
                Some(rfc7677_credential())
            })
            .unwrap();
        assert_eq!(
            step,
            ScramStep::Continue(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let step = server
            .evaluate(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_| None,
            )
            .unwrap();
        assert_eq!(
            step,
            ScramStep::Complete {
                response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
                username: "user".into()
            }
        );
        assert!(server.is_complete());
    }

    /// SCRAM-SHA-512 has no RFC test vector; these messages were computed independently
    /// with Python's hashlib/hmac (PBKDF2-HMAC-SHA-512, 4096 iterations).
    #[test]
    fn sha512_independent_vector() {
        let cred =
            ScramCredential::derive(ScramMechanism::Sha512, "pencil", b"0123456789abcdef", 4096)
                .unwrap();
        let mut server =
            ScramServer::with_server_nonce(ScramMechanism::Sha512, "servernonce456".into());
        let step = server
            .evaluate(b"n,,n=user,r=clientnonce123", |_| Some(cred))
            .unwrap();
        assert_eq!(
            step,
            ScramStep::Continue(
                b"r=clientnonce123servernonce456,s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096".to_vec()
            )
        );
        let step = server
            .evaluate(
                b"c=biws,r=clientnonce123servernonce456,p=13ixXryETbe+mndQ1ezdhD0yxRJxlykxjNuSI0ScKgLVJ4v07Fa8vYcxVLJx0RNpJmxpwRDsg87yaRV+TP/h9w==",
                |_| None,
            )
            .unwrap();
        assert_eq!(
            step,
            ScramStep::Complete {
                response: b"v=Q2ImzfMfWm+3mMkYGTaZK5DsLA7OLgX26PhsP1DsjU5b94j4Q1SjRn8HoUeqfwPOhk3GX530kh0TAjoXzEsuaw==".to_vec(),
                username: "user".into()
            }
        );
    }

    /// Messages of kafka-python's SCRAM client (3.0.12, nonce fixed), recorded against this
    /// server's server-first: a real client's encoding is taken and its proof verified.
    #[test]
    fn kafka_python_client_messages() {
        for (mechanism, client_final, server_final) in [
            (
                ScramMechanism::Sha256,
                &b"c=biws,r=kafkapythonnonceSTROMSERVER,p=tMxSzgWiExtD8Tm4woDYWgfmPgoQzsFOgo11sSgahhg="[..],
                &b"v=gS/pfG3x5/MP3reOw8puv7ptU7HL1+/VL72QtV8po8w="[..],
            ),
            (
                ScramMechanism::Sha512,
                b"c=biws,r=kafkapythonnonceSTROMSERVER,p=7khv7WWQcTUp11UsUS6+TsR9DUjEPMaTRepcOEn7tKI2Q1Zrf5tbMJL991c+nAK7J3V4EoqK9Tj5VTQ007Mevw==",
                b"v=orfBreLRM1PAphDaFEzDaRqRPgNGNFEUFGmh4wPWhhjbcBYHvSoqARqF7ZH6XwM223uSfqbPVTPWyZU2j5aw7Q==",
            ),
        ] {
            let cred = ScramCredential::derive(mechanism, "s3cret", b"strom-salt-0001", 4096).unwrap();
            let mut server = ScramServer::with_server_nonce(mechanism, "STROMSERVER".into());
            let step = server
                .evaluate(b"n,,n=alice,r=kafkapythonnonce", |_| Some(cred))
                .unwrap();
            assert_eq!(
                step,
                ScramStep::Continue(
                    b"r=kafkapythonnonceSTROMSERVER,s=c3Ryb20tc2FsdC0wMDAx,i=4096".to_vec()
                )
            );
            assert_eq!(
                server.evaluate(client_final, |_| None).unwrap(),
                ScramStep::Complete {
                    response: server_final.to_vec(),
                    username: "alice".into()
                }
            );
        }
    }

    #[test]
    fn rfc7677_wrong_proof_is_refused() {
        let mut server = ScramServer::with_server_nonce(
            ScramMechanism::Sha256,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        );
        server
            .evaluate(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", |_| {
                Some(rfc7677_credential())
            })
            .unwrap();
        let err = server
            .evaluate(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                |_| None,
            )
            .unwrap_err();
        assert_eq!(err, ScramError::InvalidCredentials);
        assert_eq!(
            server.evaluate(b"anything", |_| None).unwrap_err(),
            ScramError::ExchangeFinished
        );
    }

    fn exchange(
        mechanism: ScramMechanism,
        user: &str,
        stored_pw: &str,
        client_pw: &str,
    ) -> Result<String, ScramError> {
        let cred = ScramCredential::generate(mechanism, stored_pw, 4096).unwrap();
        let mut client = TestClient::new(mechanism, user, client_pw, "fyko+d2lbbFgONRv9qkxdawL");
        let mut server = ScramServer::new(mechanism);
        let first = client.first();
        let ScramStep::Continue(server_first) =
            server.evaluate(&first, |u| (u == user).then(|| cred.clone()))?
        else {
            panic!("server finished early");
        };
        let fin = client.final_message(&server_first);
        match server.evaluate(&fin, |_| None)? {
            ScramStep::Complete { response, username } => {
                assert!(client.check_server_final(&response), "server signature");
                Ok(username)
            }
            ScramStep::Continue(_) => panic!("server wants more"),
        }
    }

    #[test]
    fn client_matches_rfc7677_and_talks_to_the_server() {
        let mut client = ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(
            client.first_message().unwrap(),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let fin = client
            .final_message(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_ok());

        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            let salt = new_salt();
            let salted = salted_password(m, "pw", &salt, 4096).unwrap();
            let cred = ScramCredential::from_upsertion(m, &salt, &salted, 4096).unwrap();
            let mut client = ScramClient::new(m, "a=b", "pw");
            let mut server = ScramServer::new(m);
            let first = client.first_message().unwrap();
            let ScramStep::Continue(sf) = server
                .evaluate(&first, |u| (u == "a=b").then(|| cred.clone()))
                .unwrap()
            else {
                panic!("server finished early");
            };
            let fin = client.final_message(&sf).unwrap();
            let ScramStep::Complete { response, .. } = server.evaluate(&fin, |_| None).unwrap()
            else {
                panic!("server wants more");
            };
            assert!(client.verify_server_final(&response).is_ok());
        }
    }

    #[test]
    fn client_refuses_hostile_servers() {
        let mk = || {
            let mut c = ScramClient::with_nonce(ScramMechanism::Sha256, "u", "p", "abc".into());
            c.first_message().unwrap();
            c
        };
        for bad in [
            &b"r=abcX,s=c2FsdA==,i=100000000"[..],
            b"r=abcX,s=c2FsdA==,i=1",
            b"r=zzzX,s=c2FsdA==,i=4096",
            b"r=abc,s=c2FsdA==,i=4096",
            b"r=abcX,s=!!,i=4096",
            b"r=abcX,s=c2FsdA==",
            b"e=other-error",
            b"\xff",
        ] {
            assert!(mk().final_message(bad).is_err(), "{bad:?}");
        }
        let mut c = mk();
        c.final_message(b"r=abcX,s=c2FsdA==,i=4096").unwrap();
        assert_eq!(
            c.verify_server_final(b"v=AAAA").unwrap_err(),
            ScramClientError::BadServerSignature
        );
        assert_eq!(
            c.verify_server_final(b"v=AAAA").unwrap_err(),
            ScramClientError::OutOfOrder
        );
    }

    #[test]
    fn full_exchange_both_mechanisms() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert_eq!(exchange(m, "alice", "s3cret", "s3cret").unwrap(), "alice");
            assert_eq!(
                exchange(m, "alice", "s3cret", "wrong").unwrap_err(),
                ScramError::InvalidCredentials
            );
        }
    }

    #[test]
    fn escaped_usernames_round_trip() {
        let user = "a,b=c";
        assert_eq!(encode_saslname(user), "a=2Cb=3Dc");
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some(user));
        assert_eq!(decode_saslname("a=2"), None);
        assert_eq!(decode_saslname("a=41"), None);
        assert_eq!(
            exchange(ScramMechanism::Sha512, user, "pw", "pw").unwrap(),
            user
        );
    }

    #[test]
    fn unknown_user_fails_on_client_first() {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert_eq!(
            server.evaluate(b"n,,n=bob,r=abc", |_| None).unwrap_err(),
            ScramError::InvalidCredentials
        );
    }

    #[test]
    fn credential_of_other_mechanism_is_refused() {
        let cred = ScramCredential::generate(ScramMechanism::Sha512, "pw", 4096).unwrap();
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert_eq!(
            server
                .evaluate(b"n,,n=bob,r=abc", |_| Some(cred))
                .unwrap_err(),
            ScramError::InvalidCredentials
        );
    }

    #[test]
    fn client_first_rules() {
        assert_eq!(
            parse_client_first(b"p=tls-unique,,n=u,r=abc").unwrap_err(),
            ScramError::ChannelBindingUnsupported
        );
        assert_eq!(
            parse_client_first(b"n,,n=u,r=abc,tokenauth=true").unwrap_err(),
            ScramError::TokenAuthUnsupported
        );
        // Kafka ignores reserved-mext; non-ASCII names and digits in extension keys are refused.
        assert_eq!(
            parse_client_first(b"n,,m=x,n=u,r=abc").unwrap().username,
            "u"
        );
        assert!(parse_client_first("n,,n=é,r=abc".as_bytes()).is_err());
        assert!(parse_client_first(b"n,,n=u,r=abc,x1=2").is_err());
        assert!(parse_client_first(b"y,,n=u,r=abc").is_err());
        assert!(parse_client_first(b"n,,n=,r=abc").is_err());
        assert!(parse_client_first(b"n,,n=u,r=a,b").is_err());
        assert!(parse_client_first(b"n,,n=u").is_err());
        assert!(parse_client_first(b"n,n=u,r=abc").is_err());
        let cf = parse_client_first(b"n,a=u,n=u,r=abc,ext=1").unwrap();
        assert_eq!(cf.authzid.as_deref(), Some("u"));
        assert_eq!(cf.gs2_header, "n,a=u,");
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        assert_eq!(
            server
                .evaluate(b"n,a=admin,n=u,r=abc", |_| Some(rfc7677_credential()))
                .unwrap_err(),
            ScramError::AuthorizationIdMismatch
        );
    }

    #[test]
    fn librdkafka_2_0_final_nonce_is_taken() {
        // librdkafka 2.0.2's final message: r=<client nonce><client nonce><server nonce>.
        let cred = rfc7677_credential();
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, "SRV".into());
        let mut client = TestClient::new(ScramMechanism::Sha256, "user", "pencil", "CLI");
        client.final_nonce_prefix = "CLI".into();
        let Ok(ScramStep::Continue(first)) = server.evaluate(&client.first(), |_| Some(cred))
        else {
            panic!("no server-first");
        };
        let last = client.final_message(&first);
        assert!(std::str::from_utf8(&last).is_ok_and(|m| m.contains("r=CLICLISRV,")));
        assert!(matches!(
            server.evaluate(&last, |_| None),
            Ok(ScramStep::Complete { .. })
        ));
    }

    #[test]
    fn client_final_nonce_and_binding_checked() {
        let cred = rfc7677_credential();
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, "SRV".into());
        server
            .evaluate(b"n,,n=user,r=CLI", |_| Some(cred.clone()))
            .unwrap();
        assert_eq!(
            server
                .evaluate(b"c=biws,r=CLIX,p=AAAA", |_| None)
                .unwrap_err(),
            ScramError::NonceMismatch
        );
        let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, "SRV".into());
        server.evaluate(b"n,,n=user,r=CLI", |_| Some(cred)).unwrap();
        // base64("y,,") instead of "n,,"
        assert!(matches!(
            server
                .evaluate(b"c=eSws,r=CLISRV,p=AAAA", |_| None)
                .unwrap_err(),
            ScramError::InvalidClientFinal(_)
        ));
    }

    #[test]
    fn upsertion_validation() {
        assert!(validate_upsertion_wire("u", b"salt", 4096).is_ok());
        assert!(validate_upsertion_wire("u", b"salt", 16384).is_ok());
        for (user, salt, iterations, want) in [
            ("u", &b"salt"[..], 4095, UpsertionError::TooFewIterations),
            ("u", b"salt", -1, UpsertionError::TooFewIterations),
            ("u", b"salt", i32::MIN, UpsertionError::TooFewIterations),
            ("u", b"salt", 16385, UpsertionError::TooManyIterations),
            ("u", b"", 4096, UpsertionError::EmptySalt),
            ("", b"s", 4096, UpsertionError::EmptyUsername),
        ] {
            assert_eq!(
                validate_upsertion_wire(user, salt, iterations),
                Err(want.clone())
            );
            assert_eq!(want.error_code(), 93);
        }
        let m = ScramMechanism::Sha256;
        assert!(matches!(
            ScramCredential::from_upsertion(m, b"salt", &[0; 5], 4096),
            Err(UpsertionError::BadSaltedPassword { .. })
        ));
        // An upsertion's salted password gives the same credential as deriving from the password.
        let salt = B64.decode(RFC7677_SALT_B64).unwrap();
        let salted = m.salted_password(b"pencil", &salt, NonZeroU32::new(4096).unwrap());
        assert_eq!(
            ScramCredential::from_upsertion(m, &salt, &salted, 4096).unwrap(),
            rfc7677_credential()
        );
    }

    #[test]
    fn alter_plan_follows_kafka() {
        let salted = vec![7u8; 32];
        let up = |name: &str, mechanism: i8, iterations: i32| ScramUpsertion {
            name: name.into(),
            mechanism,
            iterations,
            salt: b"salt".to_vec(),
            salted_password: salted.clone(),
        };
        let del = |name: &str, mechanism: i8| ScramDeletion {
            name: name.into(),
            mechanism,
        };
        let exists = |name: &str, m: ScramMechanism| {
            (name == "old" || name == "twice") && m == ScramMechanism::Sha256
        };
        let (results, changes) = plan_alter_user_scram_credentials(
            &[
                del("old", 1),
                del("ghost", 1),
                del("twice", 1),
                del("bad", 0),
            ],
            &[
                up("new", 1, 8192),
                up("twice", 2, 8192),
                up("weak", 1, 10),
                up("dup", 1, 4096),
                up("dup", 2, 4096),
                up("", 1, 4096),
                up("mech", 9, 4096),
            ],
            exists,
        );
        let error_of = |user: &str| {
            results
                .iter()
                .find(|r| r.user == user)
                .map(|r| r.error.clone())
                .expect("a result per user")
        };
        assert_eq!(error_of("old"), None);
        assert_eq!(error_of("new"), None);
        assert_eq!(error_of("ghost"), Some(UpsertionError::NotFound));
        assert_eq!(error_of("twice"), Some(UpsertionError::Duplicate));
        assert_eq!(error_of("dup"), Some(UpsertionError::Duplicate));
        assert_eq!(error_of("bad"), Some(UpsertionError::UnknownMechanism));
        assert_eq!(error_of("mech"), Some(UpsertionError::UnknownMechanism));
        assert_eq!(error_of("weak"), Some(UpsertionError::TooFewIterations));
        assert_eq!(error_of(""), Some(UpsertionError::EmptyUsername));
        assert_eq!(results.len(), 9);
        assert_eq!(changes.len(), 2);
        assert!(changes.contains(&ScramCredentialChange::Remove {
            name: "old".into(),
            mechanism: ScramMechanism::Sha256
        }));
        assert!(changes.iter().any(|c| matches!(c,
            ScramCredentialChange::Upsert { name, credential }
                if name == "new" && credential.iterations == 8192 && credential.validate().is_ok())));
    }

    #[test]
    fn credential_serialises_like_the_record() {
        let cred = rfc7677_credential();
        let json = serde_json::to_value(&cred).unwrap();
        assert_eq!(json["mechanism"], "SCRAM-SHA-256");
        assert_eq!(json["iterations"], 4096);
        let back: ScramCredential = serde_json::from_value(json).unwrap();
        assert_eq!(back, cred);
        assert_eq!(
            ScramMechanism::from_type_code(cred.mechanism.type_code()),
            Some(cred.mechanism)
        );
        let mut broken = cred;
        broken.stored_key.clear();
        assert!(broken.validate().is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(first in proptest::collection::vec(any::<u8>(), 0..200),
                                    fin in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, "SRV".into());
            let _ = server.evaluate(&first, |_| Some(rfc7677_credential()));
            let _ = server.evaluate(&fin, |_| None);
        }

        #[test]
        fn client_never_panics_on_random_server_bytes(
            first in proptest::collection::vec(any::<u8>(), 0..120),
            fin in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut c = ScramClient::with_nonce(ScramMechanism::Sha512, "u", "p", "abc".into());
            c.first_message().unwrap();
            let _ = c.final_message(&first);
            let _ = c.verify_server_final(&fin);
        }

        #[test]
        fn truncated_valid_messages_are_errors(cut in 0usize..120) {
            let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
            let fin = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
            let mut server = ScramServer::with_server_nonce(
                ScramMechanism::Sha256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
            let ok = server.evaluate(&first[..cut.min(first.len())], |_| Some(rfc7677_credential()));
            if cut < first.len() {
                // A prefix of the nonce is still a valid message; anything shorter is not.
                if ok.is_ok() { prop_assert!(cut > "n,,n=user,r=".len()); }
            } else {
                prop_assert!(ok.is_ok());
                let cut2 = cut.min(fin.len() - 1);
                prop_assert!(server.evaluate(&fin[..cut2], |_| None).is_err());
            }
        }
    }
}
