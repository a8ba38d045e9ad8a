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
pub const KAFKA_ERROR: u32 = 50002;
pub const KAFKA_RETRIABLE_ERROR: u32 = 50003;

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

    /// A failure of the Kafka client: unknown topics are 404, the rest 500
    /// (50003 when a retry may succeed, 50002 otherwise).
    pub fn kafka(e: &ClientError, topic: Option<&str>) -> RestError {
        match (e.code(), topic) {
            (
                Some(KafkaCode::UNKNOWN_TOPIC_OR_PARTITION | KafkaCode::UNKNOWN_TOPIC_ID),
                Some(t),
            ) => RestError::topic_not_found(t),
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
