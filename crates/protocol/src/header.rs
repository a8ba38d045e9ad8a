//! The request header: the 8-byte prefix every version shares (api key, api version,
//! correlation id), then the versioned rest (client id, tagged fields), then the body.

use bytes::Bytes;
use proto_kafka::messages::{ApiKey, RequestHeader};
use proto_kafka::protocol::{Decodable, Message};

use crate::error::RequestError;
use crate::frame::MIN_REQUEST_BYTES;

/// The fields every request header starts with, read without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// Reads the prefix of a request frame (without its size). The frame layer guarantees 8
    /// bytes; the check stays because the generated header decoder would panic on fewer.
    pub fn parse(frame: &[u8]) -> Result<RequestPrefix, RequestError> {
        let Some(prefix) = frame.get(..MIN_REQUEST_BYTES) else {
            return Err(RequestError::UnknownApiKey(-1));
        };
        let raw_key = i16::from_be_bytes([prefix[0], prefix[1]]);
        let version = i16::from_be_bytes([prefix[2], prefix[3]]);
        let correlation_id = i32::from_be_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
        let api = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
        Ok(RequestPrefix {
            api,
            version,
            correlation_id,
        })
    }
}

/// Decodes the whole header from `buf` (the frame without its size), leaving `buf` at the
/// body. The header's fields are views of the frame.
pub fn decode_header(
    prefix: &RequestPrefix,
    buf: &mut Bytes,
) -> Result<RequestHeader, RequestError> {
    if buf.len() < MIN_REQUEST_BYTES {
        return Err(RequestError::UnknownApiKey(-1));
    }
    proto_kafka::header_io::decode_request_header_from_buffer(buf).map_err(|e| {
        RequestError::Decode {
            api: prefix.api,
            version: prefix.version,
            reason: format!("header: {e}"),
        }
    })
}

/// Decodes a request body with the generated codec, after checking that the codec knows
/// `version` (the table may advertise versions below it, see `SUPPORTED_APIS`).
pub fn decode_body<T: Decodable + Message>(
    api: ApiKey,
    version: i16,
    body: &mut Bytes,
) -> Result<T, RequestError> {
    if version < T::VERSIONS.min || version > T::VERSIONS.max {
        return Err(RequestError::UnsupportedVersion { api, version });
    }
    T::decode(body, version).map_err(|e| RequestError::Decode {
        api,
        version,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use proto_kafka::messages::{FetchRequest, MetadataRequest, ProduceRequest};
    use proto_kafka::protocol::{Encodable, StrBytes};

    /// A request body that declares i32::MAX array elements followed by a few bytes: the
    /// codecs must refuse it, not try to allocate it (kafka-protocol 0.18 aborted here).
    #[test]
    fn hostile_array_lengths_are_errors_not_aborts() {
        let mut body = BytesMut::new();
        body.put_i32(i32::MAX);
        body.put_slice(&[0u8; 16]);
        let mut b = body.clone().freeze();
        assert!(decode_body::<MetadataRequest>(ApiKey::Metadata, 1, &mut b).is_err());

        let mut produce = BytesMut::new();
        produce.put_i16(-1); // transactional id: null
        produce.put_i16(1); // acks
        produce.put_i32(1000); // timeout
        produce.put_i32(i32::MAX); // topic count
        produce.put_slice(&[0u8; 8]);
        let mut b = produce.freeze();
        assert!(decode_body::<ProduceRequest>(ApiKey::Produce, 3, &mut b).is_err());

        let mut fetch = BytesMut::new();
        fetch.put_i32(-1); // replica id
        fetch.put_i32(500);
        fetch.put_i32(1);
        fetch.put_i32(1024);
        fetch.put_i8(0);
        fetch.put_i32(i32::MAX); // topic count
        let mut b = fetch.freeze();
        assert!(decode_body::<FetchRequest>(ApiKey::Fetch, 4, &mut b).is_err());
    }

    #[test]
    fn a_version_below_the_codec_is_unsupported_not_a_decode_error() {
        let mut b = Bytes::from_static(&[0u8; 32]);
        assert!(matches!(
            decode_body::<ProduceRequest>(ApiKey::Produce, 0, &mut b),
            Err(RequestError::UnsupportedVersion { version: 0, .. })
        ));
    }

    #[test]
    fn prefix_and_header() {
        assert!(matches!(
            RequestPrefix::parse(&[0, 3, 0, 1, 0, 0, 0]),
            Err(RequestError::UnknownApiKey(-1))
        ));
        assert!(matches!(
            RequestPrefix::parse(&[0x7f, 0, 0, 1, 0, 0, 0, 9]),
            Err(RequestError::UnknownApiKey(0x7f00))
        ));
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Metadata as i16)
            .with_request_api_version(12)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("me")));
        let header_version = ApiKey::Metadata.request_header_version(12);
        let mut buf = BytesMut::new();
        header.encode(&mut buf, header_version).unwrap();
        buf.put_slice(b"body");
        let mut frame = buf.freeze();
        let prefix = RequestPrefix::parse(&frame).unwrap();
        assert_eq!(
            prefix,
            RequestPrefix {
                api: ApiKey::Metadata,
                version: 12,
                correlation_id: 42
            }
        );
        let decoded = decode_header(&prefix, &mut frame).unwrap();
        assert_eq!(decoded.client_id.as_deref(), Some("me"));
        assert_eq!(&frame[..], b"body");
    }
}
