//! Kafka's wire protocol as Strom speaks it, without I/O and without broker state: the
//! size-prefixed frame ([`frame`]), the request header and its checks ([`header`]), the APIs and
//! versions served, defined once ([`api`]: ApiVersions, the dispatcher's version check and the
//! metrics' API names all read it), the errors that end a connection ([`RequestError`]) and the
//! encoding of responses, including fetch responses whose record bytes stay in files
//! ([`response`], [`zero_copy`]).
//!
//! The message codecs themselves are `proto-kafka`'s, generated from Kafka's JSON specs.

pub mod api;
pub mod error;
pub mod frame;
pub mod header;
pub mod response;
pub mod zero_copy;

pub use api::{api_name, supported_range, ApiSpec, VersionCheck, SUPPORTED_APIS};
pub use error::RequestError;
pub use frame::{FrameError, MIN_REQUEST_BYTES};
pub use header::{decode_body, decode_header, RequestPrefix};
pub use response::{encode_response, encode_response_with_files, ResponseFrame};
