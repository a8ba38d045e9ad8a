//! The embedded formats of REST Proxy v2: how keys, values and headers of
//! records are carried inside JSON, chosen by the content type
//! `application/vnd.kafka[.FORMAT].v2+json`.

use axum::http::{header, HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use strom_client::Record;

use crate::error::{RestError, RestResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Keys and values are base64 strings of their bytes.
    Binary,
    /// Keys and values are JSON values, stored as their compact JSON text.
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "binary" => Some(Format::Binary),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Binary => "application/vnd.kafka.binary.v2+json",
            Format::Json => "application/vnd.kafka.json.v2+json",
        }
    }
}

/// What a media type (without parameters) names: `None` for a type that
/// carries no embedded format (binary is then assumed, as Confluent does).
enum MediaType {
    Embedded(Format),
    Generic,
    SchemaFormat(String),
    Other,
}

fn media_type(value: &str) -> MediaType {
    let base = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "application/vnd.kafka.binary.v2+json" | "application/vnd.kafka.binary.v1+json" => {
            MediaType::Embedded(Format::Binary)
        }
        "application/vnd.kafka.json.v2+json" | "application/vnd.kafka.json.v1+json" => {
            MediaType::Embedded(Format::Json)
        }
        "application/vnd.kafka.v2+json"
        | "application/vnd.kafka+json"
        | "application/json"
        | "application/octet-stream" => MediaType::Generic,
        s if s.starts_with("application/vnd.kafka.") && s.ends_with("+json") => {
            let format = s
                .trim_start_matches("application/vnd.kafka.")
                .split('.')
                .next()
                .unwrap_or("")
                .to_string();
            MediaType::SchemaFormat(format)
        }
        _ => MediaType::Other,
    }
}

/// The embedded format of a produce request, from its Content-Type;
/// 415 when it names none Strom reads.
pub fn request_format(headers: &HeaderMap) -> RestResult<Format> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(RestError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "HTTP 415 Unsupported Media Type: a Content-Type is required",
        ));
    };
    let ct = ct.to_str().unwrap_or("");
    match media_type(ct) {
        MediaType::Embedded(f) => Ok(f),
        MediaType::Generic => Ok(Format::Binary),
        MediaType::SchemaFormat(f) => Err(RestError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "HTTP 415 Unsupported Media Type: the embedded format {f:?} needs a schema registry, which this gateway does not have; use binary or json"
            ),
        )),
        MediaType::Other => Err(RestError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("HTTP 415 Unsupported Media Type: {ct:?}"),
        )),
    }
}

/// A request body that is JSON without embedded records (consumer
/// creation, subscriptions): any JSON-ish content type, or none.
pub fn check_json_body(headers: &HeaderMap) -> RestResult<()> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(()),
        Some(ct) => match media_type(ct.to_str().unwrap_or("")) {
            MediaType::Other => Err(RestError::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "HTTP 415 Unsupported Media Type: {:?}",
                    ct.to_str().unwrap_or("")
                ),
            )),
            _ => Ok(()),
        },
    }
}

/// The embedded format an Accept header asks for, if it names one.
pub fn accept_format(headers: &HeaderMap) -> Option<Format> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    accept.split(',').find_map(|part| match media_type(part) {
        MediaType::Embedded(f) => Some(f),
        _ => None,
    })
}

/// A header of a record: Strom's extension to v2 (v3's shape: the value is
/// base64, or null).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderIn {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

pub fn decode_base64(what: &str, s: &str) -> RestResult<Bytes> {
    BASE64
        .decode(s.as_bytes())
        .map(Bytes::from)
        .map_err(|e| RestError::unprocessable(format!("{what} is not valid base64: {e}")))
}

/// A key or value of a produce request in `format`.
pub fn decode_data(format: Format, what: &str, v: &Value) -> RestResult<Option<Bytes>> {
    match (format, v) {
        (_, Value::Null) => Ok(None),
        (Format::Binary, Value::String(s)) => decode_base64(what, s).map(Some),
        (Format::Binary, _) => Err(RestError::unprocessable(format!(
            "{what} must be a base64 string (or null) in the binary format"
        ))),
        (Format::Json, v) => serde_json::to_vec(v)
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| RestError::unprocessable(format!("{what}: {e}"))),
    }
}

pub fn decode_headers(headers: &[HeaderIn]) -> RestResult<Vec<(String, Option<Bytes>)>> {
    headers
        .iter()
        .map(|h| {
            let v = match &h.value {
                None => None,
                Some(s) => Some(decode_base64(&format!("header {:?}", h.name), s)?),
            };
            Ok((h.name.clone(), v))
        })
        .collect()
}

/// A stored key or value as the embedded format shows it. Bytes that are
/// not JSON cannot be shown in the json format.
pub fn encode_data(format: Format, data: &Option<Bytes>) -> Result<Value, String> {
    match (format, data) {
        (_, None) => Ok(Value::Null),
        (Format::Binary, Some(b)) => Ok(Value::String(BASE64.encode(b))),
        (Format::Json, Some(b)) => serde_json::from_slice(b).map_err(|e| format!("not JSON ({e})")),
    }
}

/// Like [`encode_data`], but bytes that are not JSON become a string (for
/// the live streams, where one odd record must not end the stream).
pub fn encode_data_lenient(format: Format, data: &Option<Bytes>) -> Value {
    encode_data(format, data).unwrap_or_else(|_| match data {
        Some(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        None => Value::Null,
    })
}

pub fn encode_headers(record: &Record) -> Value {
    Value::Array(
        record
            .headers
            .iter()
            .map(|(k, v)| {
                serde_json::json!({
                    "name": k.to_string(),
                    "value": v.as_ref().map(|b| BASE64.encode(b)),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_ct(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn content_types_choose_the_embedded_format() {
        assert_eq!(
            request_format(&with_ct("application/vnd.kafka.json.v2+json")).unwrap(),
            Format::Json
        );
        assert_eq!(
            request_format(&with_ct(
                "application/vnd.kafka.binary.v2+json; charset=utf-8"
            ))
            .unwrap(),
            Format::Binary
        );
        assert_eq!(
            request_format(&with_ct("application/vnd.kafka.v2+json")).unwrap(),
            Format::Binary
        );
        let e = request_format(&with_ct("text/plain")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(e.error_code, 415);
        let e = request_format(&with_ct("application/vnd.kafka.avro.v2+json")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(request_format(&HeaderMap::new()).is_err());
    }

    #[test]
    fn data_round_trips_in_both_formats() {
        let v = serde_json::json!({"a": [1, 2]});
        let b = decode_data(Format::Json, "value", &v).unwrap();
        assert_eq!(b.as_deref(), Some(&b"{\"a\":[1,2]}"[..]));
        assert_eq!(encode_data(Format::Json, &b).unwrap(), v);
        let b = decode_data(Format::Binary, "key", &Value::String("AAEC/w==".into())).unwrap();
        assert_eq!(b.as_deref(), Some(&[0u8, 1, 2, 255][..]));
        assert_eq!(
            encode_data(Format::Binary, &b).unwrap(),
            Value::String("AAEC/w==".into())
        );
        let e =
            decode_data(Format::Binary, "key", &Value::String("not base64!".into())).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(decode_data(Format::Binary, "key", &serde_json::json!(5)).is_err());
        assert_eq!(
            decode_data(Format::Json, "key", &Value::Null).unwrap(),
            None
        );
        let odd = Some(Bytes::from_static(b"\xffplain"));
        assert!(encode_data(Format::Json, &odd).is_err());
        assert!(encode_data_lenient(Format::Json, &odd).is_string());
    }
}
