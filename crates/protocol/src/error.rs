use proto_kafka::messages::ApiKey;
use thiserror::Error;

/// A request the broker cannot answer: the connection is closed, as Kafka does.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} response: {reason}")]
    Encode { api: ApiKey, reason: String },
}

impl RequestError {
    /// The metrics label of the API the request was for.
    pub fn api_name(&self) -> &'static str {
        match self {
            RequestError::UnknownApiKey(_) => "Unknown",
            RequestError::UnsupportedVersion { api, .. }
            | RequestError::Decode { api, .. }
            | RequestError::Encode { api, .. } => crate::api::api_name(*api),
        }
    }

    pub(crate) fn encode(api: ApiKey, e: impl std::fmt::Display) -> RequestError {
        RequestError::Encode {
            api,
            reason: e.to_string(),
        }
    }
}
