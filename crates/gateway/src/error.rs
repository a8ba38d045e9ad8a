//! Errors as Confluent's REST Proxy reports them: a JSON body of
//! `error_code` (the HTTP status, or the status times 100 plus a sub-code
//! such as 40401) and `message`, with the matching HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use strom_client::{Error as ClientError, KafkaCode};

/// Confluent's sub-coded errors.
pub const TOPIC_NOT_FOUND: u32 = 40401;
pub const PARTITION_NOT_FOUND: u32 = 40402;
pub const CONSUMER_INSTANCE_NOT_FOUND: u32 = 40403;
pub const LEADER_NOT_AVAILABLE: u32 = 40404;
pub const CONSUMER_FORMAT_MISMATCH: u32 = 40601;
pub const CONSUMER_ALREADY_SUBSCRIBED: u32 = 40901;
pub const CONSUMER_ALREADY_EXISTS: u32 = 40902;
pub const ILLEGAL_STATE: u32 = 40903;
pub const KAFKA_BAD_REQUEST: u32 = 40002;
pub const KAFKA_AUTHENTICATION: u32 = 40101;
pub const KAFKA_AUTHORIZATION: u32 = 40301;
pub const KAFKA_ERROR: u32 = 50002;
pub const BROKER_NOT_AVAILABLE: u32 = 50302;
pub const KAFKA_RETRIABLE_ERROR: u32 = 50003;

/// Kafka error codes the mapping to HTTP statuses names.
mod code {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const BROKER_NOT_AVAILABLE: i16 = 8;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    /// Confluent's 400s (its KafkaExceptionMapper): UNSUPPORTED_VERSION,
    /// TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
    /// INVALID_CONFIG, INVALID_REQUEST, POLICY_VIOLATION, SECURITY_DISABLED.
    pub const BAD_REQUEST: [i16; 9] = [UNKNOWN_SERVER_ERROR, 35, 36, 37, 38, 40, 42, 44, 54];
    /// TOPIC_, GROUP_, CLUSTER_, TRANSACTIONAL_ID_ and DELEGATION_TOKEN_AUTHORIZATION_FAILED.
    pub const AUTHORIZATION: [i16; 5] = [29, 30, 31, 53, 65];
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct RestError {
    pub status: StatusCode,
    pub error_code: u32,
    pub message: String,
}

impl RestError {
    pub fn new(status: StatusCode, error_code: u32, message: impl Into<String>) -> RestError {
        RestError {
            status,
            error_code,
            message: message.into(),
        }
    }

    /// An error whose code is its HTTP status.
    pub fn status(status: StatusCode, message: impl Into<String>) -> RestError {
        RestError::new(status, u32::from(status.as_u16()), message)
    }

    pub fn bad_request(message: impl Into<String>) -> RestError {
        RestError::status(StatusCode::BAD_REQUEST, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> RestError {
        RestError::status(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn not_found() -> RestError {
        RestError::status(StatusCode::NOT_FOUND, "HTTP 404 Not Found")
    }

    pub fn topic_not_found(topic: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            TOPIC_NOT_FOUND,
            format!("Topic {topic} not found."),
        )
    }

    pub fn partition_not_found(topic: &str, partition: i32) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            PARTITION_NOT_FOUND,
            format!("Partition {partition} of topic {topic} not found."),
        )
    }

    pub fn consumer_not_found() -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            CONSUMER_INSTANCE_NOT_FOUND,
            "Consumer instance not found.",
        )
    }

    /// A failure of the Kafka client, mapped as Confluent's REST Proxy maps
    /// Kafka's exceptions: unknown topics are 404, a request Kafka refuses
    /// as such (invalid request, config, partitions, replication factor,
    /// policy, existing topic, unsupported version, unknown server error)
    /// 400 (40002), authentication 401, authorization 403, a broker not
    /// available 503, the rest 500 (50003 when a retry may succeed, 50002
    /// otherwise). A topic name Kafka calls invalid names no topic: 404
    /// where one is read (Confluent: 500), 400 otherwise.
    pub fn kafka(e: &ClientError, topic: Option<&str>) -> RestError {
        let bad_request = |e: &ClientError| {
            RestError::new(StatusCode::BAD_REQUEST, KAFKA_BAD_REQUEST, e.to_string())
        };
        match (e.code(), topic) {
            (
                Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION | KafkaCode::UNKNOWN_TOPIC_ID),
                Some(t),
            ) => RestError::topic_not_found(t),
            (Some(code::INVALID_TOPIC_EXCEPTION), Some(t)) => RestError::topic_not_found(t),
            (Some(code::INVALID_TOPIC_EXCEPTION), None) => bad_request(e),
            (Some(c), _) if code::BAD_REQUEST.contains(&c) => bad_request(e),
            (Some(code::SASL_AUTHENTICATION_FAILED), _) => RestError::new(
                StatusCode::UNAUTHORIZED,
                KAFKA_AUTHENTICATION,
                e.to_string(),
            ),
            (Some(c), _) if code::AUTHORIZATION.contains(&c) => {
                RestError::new(StatusCode::FORBIDDEN, KAFKA_AUTHORIZATION, e.to_string())
            }
            (Some(code::BROKER_NOT_AVAILABLE), _) => RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                BROKER_NOT_AVAILABLE,
                e.to_string(),
            ),
            (Some(KafkaCode::LEADER_NOT_AVAILABLE), _) => RestError::new(
                StatusCode::NOT_FOUND,
                LEADER_NOT_AVAILABLE,
                format!("Leader not available: {e}"),
            ),
            _ if e.is_retriable() || matches!(e, ClientError::Connect { .. }) => RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                KAFKA_RETRIABLE_ERROR,
                e.to_string(),
            ),
            _ => RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                KAFKA_ERROR,
                e.to_string(),
            ),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error_code": self.error_code, "message": self.message})
    }
}

/// The content type of v2 answers.
pub const V2_JSON: &str = "application/vnd.kafka.v2+json";
/// The content type of v3 answers, its errors included.
pub const V3_JSON: &str = "application/json";

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(V2_JSON));
        resp
    }
}

pub type RestResult<T> = std::result::Result<T, RestError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(code: i16) -> ClientError {
        ClientError::kafka("test", code, None)
    }

    #[test]
    fn kafka_errors_map_to_confluents_statuses() {
        let cases: [(i16, Option<&str>, u16, u32); 8] = [
            (3, Some("t"), 404, TOPIC_NOT_FOUND),
            // A name Kafka refuses names no topic: not a server error.
            (17, Some("t\u{1}"), 404, TOPIC_NOT_FOUND),
            (17, None, 400, KAFKA_BAD_REQUEST),
            (42, None, 400, KAFKA_BAD_REQUEST), // INVALID_REQUEST: an internal topic deleted
            (36, None, 400, KAFKA_BAD_REQUEST),
            (29, Some("t"), 403, KAFKA_AUTHORIZATION),
            (8, None, 503, BROKER_NOT_AVAILABLE),
            (7, None, 500, KAFKA_RETRIABLE_ERROR), // REQUEST_TIMED_OUT
        ];
        for (code, topic, status, error_code) in cases {
            let e = RestError::kafka(&kafka(code), topic);
            assert_eq!(
                (e.status.as_u16(), e.error_code),
                (status, error_code),
                "{code}"
            );
        }
    }
}
