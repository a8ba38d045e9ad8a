//! Response framing: size prefix, response header, body.

use bytes::{BufMut, BytesMut};
use proto_kafka::messages::{ApiKey, ResponseHeader};
use proto_kafka::protocol::buf::SegmentedBuf;
use proto_kafka::protocol::Encodable;

use crate::error::RequestError;
use crate::zero_copy::{self, FileRanges, Piece};

/// An encoded response, size prefix included. Fetch responses leave record bytes in the
/// segment files (pieces), to be sent from there with sendfile.
pub enum ResponseFrame {
    Flat(BytesMut),
    Pieces(Vec<Piece>),
}

impl ResponseFrame {
    pub fn len(&self) -> usize {
        match self {
            ResponseFrame::Flat(b) => b.len(),
            ResponseFrame::Pieces(p) => p.iter().map(Piece::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The frame's size prefix: what follows it, which Kafka's i32 must hold.
fn size_prefix(api: ApiKey, size: usize) -> Result<i32, RequestError> {
    i32::try_from(size).map_err(|_| {
        RequestError::encode(api, format!("a response of {size} bytes exceeds a frame"))
    })
}

/// Bytes after the size prefix: header and body.
fn encoded_size<R: Encodable>(
    api: ApiKey,
    version: i16,
    header: &ResponseHeader,
    body: &R,
) -> Result<usize, RequestError> {
    let err = |e: proto_kafka::ProtoError| RequestError::encode(api, e);
    let header_version = api.response_header_version(version);
    Ok(header.compute_size(header_version).map_err(err)?
        + body.compute_size(version).map_err(err)?)
}

pub fn encode_response<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<BytesMut, RequestError> {
    let err = |e: proto_kafka::ProtoError| RequestError::encode(api, e);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = encoded_size(api, version, &header, body)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size_prefix(api, size)?);
    header
        .encode(&mut buf, api.response_header_version(version))
        .map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(
        buf.len(),
        4 + size,
        "{api:?} v{version}: size prefix and bytes differ"
    );
    Ok(buf)
}

/// As `encode_response`, for a body whose byte fields (records) are placeholders of `ranges`:
/// their bytes stay in the files, and the frame is the pieces between them.
pub fn encode_response_with_files<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
    ranges: FileRanges,
) -> Result<ResponseFrame, RequestError> {
    let err = |e: proto_kafka::ProtoError| RequestError::encode(api, e);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = encoded_size(api, version, &header, body)?;
    let mut buf = SegmentedBuf::new();
    buf.put_i32(size_prefix(api, size)?);
    header
        .encode(&mut buf, api.response_header_version(version))
        .map_err(err)?;
    body.encode(&mut buf, version).map_err(err)?;
    debug_assert_eq!(
        bytes::Buf::remaining(&buf),
        4 + size,
        "{api:?} v{version}: size prefix and bytes differ"
    );
    let pieces = zero_copy::split(buf, ranges).map_err(|e| RequestError::encode(api, e))?;
    Ok(ResponseFrame::Pieces(pieces))
}

/// The answer to an ApiVersions newer than ours: v0 format, UNSUPPORTED_VERSION, and our
/// ranges, so the client can retry with a version we speak (KIP-511).
pub fn api_versions_unsupported(correlation_id: i32) -> Result<BytesMut, RequestError> {
    let body = crate::api::api_versions_unsupported_response();
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_kafka::messages::ApiVersionsResponse;
    use proto_kafka::protocol::Decodable;
    use proto_kafka::ResponseError;

    #[test]
    fn api_versions_too_new_answers_v0_unsupported() {
        let reply = api_versions_unsupported(7).unwrap();
        assert_eq!(&reply[..4], &((reply.len() - 4) as i32).to_be_bytes());
        // size, correlation id, error code
        assert_eq!(&reply[4..8], &7i32.to_be_bytes());
        assert_eq!(
            &reply[8..10],
            &ResponseError::UnsupportedVersion.code().to_be_bytes()
        );
        let mut body = bytes::Bytes::copy_from_slice(&reply[8..]);
        let decoded = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(decoded.api_keys.len(), crate::SUPPORTED_APIS.len());
    }
}
