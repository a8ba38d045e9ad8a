//! Errors of the client: transport failures, protocol failures, and Kafka
//! error codes returned by a broker.

use std::fmt;

use proto_kafka::ResponseError;

/// A Kafka error code (non-zero) as a broker returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;

    /// `None` for 0 (no error).
    pub fn from_code(code: i16) -> Option<KafkaCode> {
        (code != 0).then_some(KafkaCode(code))
    }

    /// Kafka's name of the error, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn name(self) -> String {
        match ResponseError::try_from_code(self.0) {
            None => "NONE".to_string(),
            Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
            Some(e) => screaming_snake(&e.to_string()),
        }
    }

    /// Whether Kafka's protocol marks the error as retriable.
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }

    /// Errors that a metadata refresh can cure (a leader moved, a topic is
    /// being created, a coordinator moved).
    pub fn needs_metadata_refresh(self) -> bool {
        matches!(
            self.0,
            Self::UNKNOWN_TOPIC_OR_PARTITION
                | Self::LEADER_NOT_AVAILABLE
                | Self::NOT_LEADER_OR_FOLLOWER
                | Self::UNKNOWN_TOPIC_ID
                | 74 // FENCED_LEADER_EPOCH
                | 75 // UNKNOWN_LEADER_EPOCH
                | Self::NOT_COORDINATOR
                | Self::COORDINATOR_NOT_AVAILABLE
        )
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {addr} failed: {reason}")]
    Connection { addr: String, reason: String },
    #[error("{what} timed out after {ms} ms")]
    Timeout { what: String, ms: u64 },
    #[error("{addr} sent a {api} response of {size} bytes, more than the limit of {max} bytes")]
    ResponseTooLarge {
        addr: String,
        api: String,
        size: i64,
        max: usize,
    },
    #[error("cannot encode a {api} v{version} request: {reason}")]
    Encode {
        api: String,
        version: i16,
        reason: String,
    },
    #[error("cannot decode the {api} v{version} response from {addr}: {reason}")]
    Decode {
        addr: String,
        api: String,
        version: i16,
        reason: String,
    },
    #[error("the broker at {addr} does not support {api}{detail}")]
    UnsupportedApi {
        addr: String,
        api: String,
        detail: String,
    },
    /// A Kafka error code; `context` says what was being done.
    #[error("{context}: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        context: String,
        code: KafkaCode,
        message: Option<String>,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<String>) -> Error {
        Error::Kafka {
            context: context.into(),
            code: KafkaCode(code),
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// The Kafka error code, if this is one.
    pub fn code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(code.0),
            _ => None,
        }
    }

    /// Worth retrying after a metadata refresh / reconnect.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Connection { .. } | Error::Timeout { .. } => true,
            Error::Kafka { code, .. } => code.is_retriable() || code.needs_metadata_refresh(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(KafkaCode(3).name(), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(KafkaCode(36).name(), "TOPIC_ALREADY_EXISTS");
        assert_eq!(KafkaCode(-1).name(), "UNKNOWN_SERVER_ERROR");
        assert_eq!(KafkaCode(9999).name(), "UNKNOWN_ERROR_CODE_9999");
        assert!(KafkaCode(6).is_retriable());
        assert!(!KafkaCode(36).is_retriable());
    }

    #[test]
    fn kafka_error_display() {
        let e = Error::kafka(
            "create topic t",
            36,
            Some("Topic 't' already exists.".into()),
        );
        assert_eq!(
            e.to_string(),
            "create topic t: TOPIC_ALREADY_EXISTS (Topic 't' already exists.)"
        );
        let e = Error::kafka("x", 3, Some(String::new()));
        assert_eq!(e.to_string(), "x: UNKNOWN_TOPIC_OR_PARTITION");
    }
}
