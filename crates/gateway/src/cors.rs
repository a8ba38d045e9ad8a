//! Cross-origin access for browser pages served from another origin
//! (Confluent's `access.control.allow.origin`): without it a browser hides
//! the gateway's answers from such a page, and its `EventSource` cannot
//! open a stream at all. Off unless origins are configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{RestError, RestResult};
use crate::Gateway;

/// Methods and request headers a preflight allows: every method the API
/// has, and the headers its clients send (Confluent's default list).
const ALLOW_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, OPTIONS";
const ALLOW_HEADERS: &str = "origin, content-type, accept, authorization";
/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_S: &str = "600";

/// The origins a gateway answers cross-origin requests from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// A comma-separated list of origins (`scheme://host[:port]`), or `*`
    /// for any; empty allows none.
    pub fn parse(list: &str) -> Result<AllowedOrigins, String> {
        let mut out = AllowedOrigins::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                out.any = true;
                continue;
            }
            let rest = item
                .strip_prefix("http://")
                .or_else(|| item.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!("{item:?} is not an origin such as https://app.example.com")
                })?;
            if rest.is_empty() || rest.contains('/') || HeaderValue::from_str(item).is_err() {
                return Err(format!(
                    "{item:?} is not an origin such as https://app.example.com"
                ));
            }
            out.origins
                .push(item.trim_end_matches('/').to_ascii_lowercase());
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`,
    /// if it is allowed.
    pub fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin.to_str().ok()?.to_ascii_lowercase();
        self.origins.contains(&o).then(|| origin.clone())
    }
}

/// Browsers apply no CORS to WebSockets: any page the user visits could
/// open one to a gateway its browser reaches (on a private network, say)
/// and read topics. An upgrade from a page (it has an Origin header) is
/// taken only from an allowed origin or from the gateway's own; clients
/// that are not browsers send no Origin and are not affected.
pub fn check_websocket_origin(gw: &Gateway, headers: &HeaderMap) -> RestResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    if gw.config.allowed_origins.allow(origin).is_some() {
        return Ok(());
    }
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if !host.is_empty() && origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)) {
        return Ok(());
    }
    Err(RestError::status(
        StatusCode::FORBIDDEN,
        format!(
            "a WebSocket from a page of origin {origin:?}: allow the origin with gateway.access.control.allow.origin"
        ),
    ))
}

pub async fn layer(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let allowed = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| gw.config.allowed_origins.allow(o));
    let Some(allow) = allowed else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_S),
        );
        r
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    if allow != "*" {
        // The answer depends on the asking origin: caches must keep them apart.
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_exactly_and_star_allows_any() {
        let a = AllowedOrigins::parse("http://127.0.0.1:8000, https://App.example.com").unwrap();
        let ok = HeaderValue::from_static("https://app.example.com");
        assert_eq!(a.allow(&ok), Some(ok.clone()));
        for other in [
            "https://app.example.com.evil.net",
            "http://app.example.com",
            "http://127.0.0.1:8001",
            "null",
        ] {
            assert_eq!(a.allow(&HeaderValue::from_static(other)), None, "{other}");
        }
        let any = AllowedOrigins::parse("*").unwrap();
        assert_eq!(any.allow(&ok), Some(HeaderValue::from_static("*")));
        let none = AllowedOrigins::parse(" ").unwrap();
        assert!(none.is_empty());
        assert_eq!(none.allow(&ok), None);
    }

    #[test]
    fn what_is_not_an_origin_is_refused() {
        for bad in [
            "example.com",
            "https://",
            "https://a.example/path",
            "ftp://x",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
