//! SASL/PLAIN, server side (RFC 4616), after Kafka's `PlainSaslServer`.
//!
//! The message is `[authzid] NUL authcid NUL passwd`. Kafka's rules: authcid and password
//! must not be empty, and an authzid, if given, must equal the authcid (no impersonation).
//! The password is checked by a [`PlainCallback`] (Kafka's `PlainServerCallbackHandler`:
//! users from a file, or from SCRAM credentials), which must compare in constant time;
//! [`StaticPlainUsers`] does, and `scram_password::PlainUsers` adds the SCRAM credentials.

use std::collections::HashMap;

use crate::ct_eq;

/// The longest PLAIN message taken. RFC 4616 asks servers to take at least 255 bytes per
/// field; this allows 4 KiB per field and refuses more before anything is copied.
pub const MAX_PLAIN_MESSAGE_BYTES: usize = 3 * 4096 + 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("Invalid SASL/PLAIN response: {0}")]
    Malformed(&'static str),
    #[error("Invalid SASL/PLAIN response: message of {size_bytes} bytes exceeds {max_bytes}")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("Authentication failed: Invalid username or password")]
    InvalidCredentials,
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthorizationIdMismatch,
}

/// A parsed PLAIN message, borrowing from the client's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub authzid: &'a str,
    pub authcid: &'a str,
    pub password: &'a str,
}

/// Parses a PLAIN message with Kafka's rules, without allocating.
pub fn parse(message: &[u8]) -> Result<PlainMessage<'_>, PlainError> {
    if message.len() > MAX_PLAIN_MESSAGE_BYTES {
        return Err(PlainError::TooLarge {
            size_bytes: message.len(),
            max_bytes: MAX_PLAIN_MESSAGE_BYTES,
        });
    }
    let text = std::str::from_utf8(message).map_err(|_| PlainError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\u{0}');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed("expected 3 NUL-separated tokens"));
    };
    if authcid.is_empty() {
        return Err(PlainError::Malformed("username not specified"));
    }
    if password.is_empty() {
        return Err(PlainError::Malformed("password not specified"));
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(PlainError::AuthorizationIdMismatch);
    }
    Ok(PlainMessage {
        authzid,
        authcid,
        password,
    })
}

/// The client's PLAIN message (Kafka's `PlainSaslClient`: no authzid).
pub fn client_message(username: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(username.len() + password.len() + 2);
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// Checks a user's password (Kafka's `PlainAuthenticateCallback`).
pub trait PlainCallback {
    fn authenticate(&self, username: &str, password: &str) -> bool;
}

/// Users and passwords given in configuration (Kafka's JAAS `user_<name>="<password>"`).
#[derive(Debug, Clone, Default)]
pub struct StaticPlainUsers {
    passwords: HashMap<String, String>,
}

impl StaticPlainUsers {
    pub fn new(users: impl IntoIterator<Item = (String, String)>) -> Self {
        StaticPlainUsers {
            passwords: users.into_iter().collect(),
        }
    }

    /// Whether the user is one of these (whose password is then checked here only).
    pub fn contains(&self, username: &str) -> bool {
        self.passwords.contains_key(username)
    }

    pub fn is_empty(&self) -> bool {
        self.passwords.is_empty()
    }
}

impl PlainCallback for StaticPlainUsers {
    fn authenticate(&self, username: &str, password: &str) -> bool {
        match self.passwords.get(username) {
            Some(expected) => ct_eq(expected.as_bytes(), password.as_bytes()),
            None => {
                // Compare against something anyway, so an unknown user costs what a known one does.
                let _ = ct_eq(password.as_bytes(), password.as_bytes());
                false
            }
        }
    }
}

/// PLAIN is one message: parse, check, and give the authenticated user name.
pub fn authenticate(message: &[u8], callback: &dyn PlainCallback) -> Result<String, PlainError> {
    let msg = parse(message)?;
    if callback.authenticate(msg.authcid, msg.password) {
        Ok(msg.authcid.to_string())
    } else {
        Err(PlainError::InvalidCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn users() -> StaticPlainUsers {
        StaticPlainUsers::new([("alice".to_string(), "alice-secret".to_string())])
    }

    #[test]
    fn kafka_rules() {
        assert_eq!(
            authenticate(b"\0alice\0alice-secret", &users()).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(b"alice\0alice\0alice-secret", &users()).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(b"admin\0alice\0alice-secret", &users()).unwrap_err(),
            PlainError::AuthorizationIdMismatch
        );
        assert_eq!(
            authenticate(b"\0alice\0wrong", &users()).unwrap_err(),
            PlainError::InvalidCredentials
        );
        assert_eq!(
            authenticate(b"\0bob\0alice-secret", &users()).unwrap_err(),
            PlainError::InvalidCredentials
        );
        assert!(matches!(parse(b"\0\0pw"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0alice\0"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"alice\0pw"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0a\0b\0c"), Err(PlainError::Malformed(_))));
        assert!(matches!(parse(b"\0a\0\xff"), Err(PlainError::Malformed(_))));
    }

    #[test]
    fn hostile_size_refused() {
        let big = vec![b'a'; MAX_PLAIN_MESSAGE_BYTES + 1];
        assert!(matches!(parse(&big), Err(PlainError::TooLarge { .. })));
        let mut ok = vec![0u8];
        ok.extend(std::iter::repeat_n(b'u', 255));
        ok.push(0);
        ok.extend(std::iter::repeat_n(b'p', 255));
        assert!(parse(&ok).is_ok());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = authenticate(&bytes, &users());
        }
    }
}
