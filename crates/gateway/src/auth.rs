//! Who is calling, and may they: HTTP Basic (SCRAM users of the cluster's
//! metadata, PLAIN users of configuration) and `Authorization: Bearer` (a JWT
//! checked as the broker's OAUTHBEARER checks it) give each request its
//! principal; the broker's authorizer, asked as KafkaApis would ask it, says
//! what that principal may do; per-principal counters bound its connections
//! and streams.
//!
//! The gateway's own Kafka connection is one principal (its `--command-config`
//! or `gateway.client.config`); acting as the caller means checking the
//! caller's ACLs here before that connection is used for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use strom_security::authorizer::{AclOperation, ResourceType};
use strom_security::oauthbearer::JwksFileReloader;
use strom_security::plain::{PlainCallback, StaticPlainUsers};
use strom_security::sasl::ScramCredentialStore;
use strom_security::KafkaPrincipal;

use crate::error::{RestError, RestResult, KAFKA_AUTHENTICATION, KAFKA_AUTHORIZATION};
use crate::Gateway;

/// What the broker's authorizer answers for one action; given by whoever
/// runs the gateway (`strom serve` asks its own broker).
pub trait GatewayAuthorizer: Send + Sync {
    fn authorize(
        &self,
        principal: &KafkaPrincipal,
        host: IpAddr,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool;
}

/// `gateway.authentication`: which credentials a request may carry. Neither
/// is `none`: every request is User:ANONYMOUS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mechanisms {
    pub basic: bool,
    pub bearer: bool,
}

impl Mechanisms {
    /// `none`, `basic`, `bearer` or `basic,bearer` (either order).
    pub fn parse(text: &str) -> Result<Mechanisms, String> {
        let mut m = Mechanisms::default();
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") || text.is_empty() {
            return Ok(m);
        }
        for part in text.split(',').map(str::trim) {
            match part.to_ascii_lowercase().as_str() {
                "basic" => m.basic = true,
                "bearer" => m.bearer = true,
                _ => {
                    return Err(format!(
                        "`{part}` is not one of none, basic, bearer (or basic,bearer)"
                    ))
                }
            }
        }
        Ok(m)
    }

    pub fn any(self) -> bool {
        self.basic || self.bearer
    }
}

/// The gateway's authentication and authorization.
#[derive(Clone)]
pub struct GatewaySecurity {
    pub mechanisms: Mechanisms,
    /// SCRAM users (the metadata image's credentials), for Basic.
    pub scram: Option<Arc<dyn ScramCredentialStore>>,
    /// PLAIN users (`user_<name>="<password>"` entries), for Basic.
    pub plain: Option<Arc<StaticPlainUsers>>,
    /// JWT validation for Bearer.
    pub jwks: Option<Arc<JwksFileReloader>>,
    /// None: every action is allowed (no authorizer, as in Kafka).
    pub authorizer: Option<Arc<dyn GatewayAuthorizer>>,
    /// Most connections one principal holds (429 beyond).
    pub max_connections_per_principal: usize,
    /// Most WebSocket and SSE streams one principal holds (429 beyond).
    pub max_streams_per_principal: usize,
}

impl std::fmt::Debug for GatewaySecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySecurity")
            .field("mechanisms", &self.mechanisms)
            .field("scram", &self.scram.is_some())
            .field("plain", &self.plain.is_some())
            .field("jwks", &self.jwks.is_some())
            .field("authorizer", &self.authorizer.is_some())
            .field(
                "max_connections_per_principal",
                &self.max_connections_per_principal,
            )
            .field("max_streams_per_principal", &self.max_streams_per_principal)
            .finish()
    }
}

impl GatewaySecurity {
    /// No authentication, no authorizer, and the default per-principal limits (100 each).
    pub fn new() -> GatewaySecurity {
        GatewaySecurity {
            mechanisms: Mechanisms::default(),
            scram: None,
            plain: None,
            jwks: None,
            authorizer: None,
            max_connections_per_principal: 100,
            max_streams_per_principal: 100,
        }
    }
}

impl Default for GatewaySecurity {
    fn default() -> Self {
        GatewaySecurity::new()
    }
}

/// The caller of one request, for handlers.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Arc<KafkaPrincipal>,
    pub host: IpAddr,
}

pub use crate::principal_limits::{Held, PerPrincipal};

/// Basic passwords already checked against a SCRAM credential, so that a client sending
/// the same credentials with every request pays the salted hash once: strom-security's one
/// implementation, shared with the broker's SASL/PLAIN.
pub use strom_security::scram_password::ScramPasswordCache as VerifiedCache;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 401 with the challenges of the mechanisms on offer, in Confluent's error
/// format (40101).
fn unauthorized(mechanisms: Mechanisms, message: &str) -> Box<Response> {
    let mut resp =
        RestError::new(StatusCode::UNAUTHORIZED, KAFKA_AUTHENTICATION, message).into_response();
    let headers = resp.headers_mut();
    if mechanisms.basic {
        headers.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"strom-gateway\", charset=\"UTF-8\""),
        );
    }
    if mechanisms.bearer {
        headers.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"strom-gateway\""),
        );
    }
    Box::new(resp)
}

/// The principal the request's credentials prove, or the 401 to answer.
fn authenticate(gw: &Gateway, headers: &HeaderMap) -> Result<KafkaPrincipal, Box<Response>> {
    let sec = &gw.config.security;
    let m = sec.mechanisms;
    if !m.any() {
        return Ok(KafkaPrincipal::anonymous());
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(m, "Authentication is required: send HTTP Basic credentials or a Bearer token (gateway.authentication)"));
    };
    let value = value.to_str().unwrap_or("").trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") && m.basic {
        let bad = || unauthorized(m, "Authentication failed: invalid username or password");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = text.split_once(':').ok_or_else(bad)?;
        if user.is_empty() {
            return Err(bad());
        }
        // As the broker's PLAIN: a user of the PLAIN entry is checked there only, any other
        // against the cluster's SCRAM credentials; an unknown user fails as a wrong password.
        let ok = match (&sec.plain, &sec.scram) {
            (Some(p), _) if p.contains(user) => p.authenticate(user, password),
            (_, Some(s)) => gw.verified.verify_in(s.as_ref(), user, password),
            (_, None) => gw.verified.verify(user, password, &[]),
        };
        if ok {
            return Ok(KafkaPrincipal::user(user));
        }
        tracing::info!(user, "gateway: failed Basic authentication");
        return Err(bad());
    }
    if scheme.eq_ignore_ascii_case("bearer") && m.bearer {
        let Some(jwks) = &sec.jwks else {
            return Err(unauthorized(
                m,
                "Authentication failed: no JWKS is configured",
            ));
        };
        // A JWKS file that changed is picked up here too, as the broker's listener does.
        if let Err(e) = jwks.maybe_reload() {
            tracing::debug!(error = %e, "gateway: JWKS not reloaded");
        }
        return match jwks.current().validate(rest, now_ms()) {
            Ok(token) => Ok(KafkaPrincipal::user(token.principal_name)),
            Err(e) => {
                tracing::info!(error = %e, "gateway: invalid bearer token");
                Err(unauthorized(m, &format!("Authentication failed: {e}")))
            }
        };
    }
    Err(unauthorized(
        m,
        "Authentication failed: unsupported Authorization scheme",
    ))
}

/// Middleware: authenticates every request (CORS preflights excepted, as a
/// browser sends them without credentials), counts its connection against
/// the principal's limit, and hands handlers the [`Caller`].
pub async fn layer(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let principal = match authenticate(&gw, req.headers()) {
        Ok(p) => Arc::new(p),
        Err(resp) => return *resp,
    };
    let conn = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::conn::ConnState>>()
        .map(|c| c.0 .0.clone());
    let host = conn
        .as_ref()
        .and_then(|c| c.peer.map(|p| p.ip()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    if let Some(conn) = conn {
        if gw.config.security.mechanisms.any() {
            let max = gw.config.security.max_connections_per_principal;
            if !conn.count_for(&principal, &gw.connections_per_principal, max) {
                return too_many(
                    "connections",
                    &principal,
                    max,
                    "gateway.max.connections.per.principal",
                );
            }
        }
    }
    req.extensions_mut().insert(Caller { principal, host });
    next.run(req).await
}

/// One of the caller's streams (with authentication on), or 429 when the
/// principal holds `gateway.max.streams.per.principal` already.
pub fn stream_slot(gw: &Gateway, caller: Option<&Caller>) -> RestResult<Option<Held>> {
    let Some(c) = caller.filter(|_| gw.config.security.mechanisms.any()) else {
        return Ok(None);
    };
    let max = gw.config.security.max_streams_per_principal;
    match gw.streams_per_principal.try_take(&c.principal, max) {
        Some(h) => Ok(Some(h)),
        None => Err(too_many_error(
            "streams",
            &c.principal,
            max,
            "gateway.max.streams.per.principal",
        )),
    }
}

fn too_many_error(what: &str, principal: &KafkaPrincipal, max: usize, setting: &str) -> RestError {
    RestError::status(
        StatusCode::TOO_MANY_REQUESTS,
        format!("HTTP 429 Too Many Requests: {principal} already holds {max} {what} ({setting})"),
    )
}

/// 429 for a principal over one of its limits.
pub fn too_many(what: &str, principal: &KafkaPrincipal, max: usize, setting: &str) -> Response {
    let mut resp = too_many_error(what, principal, max, setting).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// May the caller perform `operation` on the resource? 403 (40301) if not.
pub fn authorize(
    gw: &Gateway,
    caller: &Caller,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> RestResult<()> {
    if allowed(gw, caller, operation, resource_type, name) {
        return Ok(());
    }
    let what = match resource_type {
        ResourceType::Topic => "topic",
        ResourceType::Group => "group",
        ResourceType::Cluster => "cluster",
        _ => "resource",
    };
    Err(RestError::new(
        StatusCode::FORBIDDEN,
        KAFKA_AUTHORIZATION,
        format!(
            "Not authorized to access {what} {name}: {} may not {} it",
            caller.principal,
            operation.as_str()
        ),
    ))
}

pub fn allowed(
    gw: &Gateway,
    caller: &Caller,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    gw.config.security.authorizer.as_ref().is_none_or(|a| {
        a.authorize(
            &caller.principal,
            caller.host,
            operation,
            resource_type,
            name,
        )
    })
}

/// Whether a topic is listed to the caller (DESCRIBE on it).
pub fn visible_topic(gw: &Gateway, caller: Option<&Caller>, topic: &str) -> bool {
    caller.is_none_or(|c| allowed(gw, c, AclOperation::Describe, ResourceType::Topic, topic))
}

/// The ACL checks a route needs before its handler runs, as KafkaApis asks
/// for the Kafka requests the handler makes: produce is WRITE on the topic,
/// reading records READ on the topic (and the group), describing DESCRIBE,
/// deleting DELETE, configs DESCRIBE_CONFIGS / ALTER_CONFIGS, consumer
/// instances READ on their group. Lists are filtered by their handlers, and
/// topic creation (its name is in the body) is checked by its handler.
fn checks(method: &Method, route: &str) -> Vec<(AclOperation, ResourceType, &'static str)> {
    use AclOperation as Op;
    use ResourceType as R;
    let get = method == Method::GET;
    let post = method == Method::POST;
    let topic = |op| vec![(op, R::Topic, "topic")];
    match route {
        "/topics/{topic}" | "/topics/{topic}/partitions/{partition}" if post => topic(Op::Write),
        "/topics/{topic}"
        | "/topics/{topic}/partitions"
        | "/topics/{topic}/partitions/{partition}"
        | "/topics/{topic}/partitions/{partition}/offsets" => topic(Op::Describe),
        "/ws/v1/topics/{topic}/records" => topic(Op::Read),
        "/ws/v1/topics/{topic}/produce" => topic(Op::Write),
        "/v3/clusters/{cluster}/topics/{topic}" if method == Method::DELETE => topic(Op::Delete),
        "/v3/clusters/{cluster}/topics/{topic}"
        | "/v3/clusters/{cluster}/topics/{topic}/partitions"
        | "/v3/clusters/{cluster}/topics/{topic}/partitions/{partition}" => topic(Op::Describe),
        "/v3/clusters/{cluster}/topics/{topic}/records" => topic(Op::Write),
        "/v3/clusters/{cluster}/topics/{topic}/configs"
        | "/v3/clusters/{cluster}/topics/{topic}/configs/{name}"
            if get =>
        {
            topic(Op::DescribeConfigs)
        }
        "/v3/clusters/{cluster}/topics/{topic}/configs/{name}" => topic(Op::AlterConfigs),
        r if r.starts_with("/v3/clusters/{cluster}/consumer-groups/{group}") => {
            vec![(Op::Describe, R::Group, "group")]
        }
        r if r.starts_with("/consumers/{group}") => vec![(Op::Read, R::Group, "group")],
        _ => Vec::new(),
    }
}

/// Route middleware (after routing, so the matched route is known): the
/// checks of [`checks`], a stream's `group` READ, and that a consumer
/// instance is used only by the principal that created it.
pub async fn acl_layer(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let needed = checks(req.method(), &route);
    let instance_route = route.starts_with("/consumers/{group}/instances/{instance}");
    let stream_route = route == "/ws/v1/topics/{topic}/records";
    if needed.is_empty() && !instance_route {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let params = match Path::<HashMap<String, String>>::from_request_parts(&mut parts, &()).await {
        Ok(Path(p)) => p,
        Err(e) => return e.into_response(),
    };
    for (op, rt, param) in needed {
        let Some(name) = params.get(param) else {
            continue;
        };
        if let Err(e) = authorize(&gw, &caller, op, rt, name) {
            return e.into_response();
        }
    }
    if stream_route {
        let group = parts
            .uri
            .query()
            .and_then(|q| url_query_value(q, "group").filter(|g| !g.is_empty()));
        if let Some(g) = group {
            if let Err(e) = authorize(&gw, &caller, AclOperation::Read, ResourceType::Group, &g) {
                return e.into_response();
            }
        }
    }
    if instance_route {
        if let (Some(g), Some(i)) = (params.get("group"), params.get("instance")) {
            if !gw.consumers.owned_by(g, i, &caller.principal) {
                return RestError::consumer_not_found().into_response();
            }
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// One value of a query string, percent-decoded.
fn url_query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_security::scram::{ScramCredential, ScramMechanism};

    #[test]
    fn mechanisms_parse() {
        assert_eq!(Mechanisms::parse("none").unwrap(), Mechanisms::default());
        let both = Mechanisms {
            basic: true,
            bearer: true,
        };
        assert_eq!(Mechanisms::parse("basic,bearer").unwrap(), both);
        assert_eq!(Mechanisms::parse("Bearer, basic").unwrap(), both);
        assert!(Mechanisms::parse("digest").is_err());
    }

    #[test]
    fn per_principal_counts_give_back_on_drop() {
        let counts = Arc::new(PerPrincipal::default());
        let alice = Arc::new(KafkaPrincipal::user("alice"));
        let bob = Arc::new(KafkaPrincipal::user("bob"));
        let a1 = counts.try_take(&alice, 2).unwrap();
        let _a2 = counts.try_take(&alice, 2).unwrap();
        assert!(counts.try_take(&alice, 2).is_none());
        assert!(counts.try_take(&bob, 2).is_some(), "bob has his own count");
        drop(a1);
        assert_eq!(counts.held_by(&alice), 1);
        assert!(counts.try_take(&alice, 2).is_some());
    }

    struct OneUser(ScramCredential);
    impl ScramCredentialStore for OneUser {
        fn credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice" && m == self.0.mechanism).then(|| self.0.clone())
        }
    }

    #[test]
    fn basic_passwords_are_checked_against_the_scram_credential() {
        let cred = ScramCredential::generate(ScramMechanism::Sha512, "s3cret", 4096).unwrap();
        let store = OneUser(cred);
        let cache = VerifiedCache::default();
        assert!(cache.verify_in(&store, "alice", "s3cret"));
        // Again, from the cache.
        assert!(cache.verify_in(&store, "alice", "s3cret"));
        assert!(!cache.verify_in(&store, "alice", "wrong"));
        assert!(!cache.verify_in(&store, "bob", "s3cret"));
        // A changed password: the cached entry no longer counts.
        let changed =
            OneUser(ScramCredential::generate(ScramMechanism::Sha512, "new", 4096).unwrap());
        assert!(!cache.verify_in(&changed, "alice", "s3cret"));
        assert!(cache.verify_in(&changed, "alice", "new"));
    }

    #[test]
    fn route_checks_follow_kafka_apis() {
        use AclOperation as Op;
        let c = |m: Method, r: &str| checks(&m, r).into_iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(c(Method::POST, "/topics/{topic}"), vec![Op::Write]);
        assert_eq!(c(Method::GET, "/topics/{topic}"), vec![Op::Describe]);
        assert_eq!(
            c(Method::GET, "/ws/v1/topics/{topic}/records"),
            vec![Op::Read]
        );
        assert_eq!(
            c(Method::DELETE, "/v3/clusters/{cluster}/topics/{topic}"),
            vec![Op::Delete]
        );
        assert_eq!(
            c(
                Method::PUT,
                "/v3/clusters/{cluster}/topics/{topic}/configs/{name}"
            ),
            vec![Op::AlterConfigs]
        );
        assert_eq!(
            c(
                Method::GET,
                "/consumers/{group}/instances/{instance}/records"
            ),
            vec![Op::Read]
        );
        assert!(c(Method::GET, "/brokers").is_empty());
    }

    struct OnlyTopic(&'static str);
    impl GatewayAuthorizer for OnlyTopic {
        fn authorize(
            &self,
            _: &KafkaPrincipal,
            _: IpAddr,
            _: AclOperation,
            rt: ResourceType,
            name: &str,
        ) -> bool {
            rt == ResourceType::Topic && name == self.0
        }
    }

    /// The status line and headers of the gateway's answer to one request, in front of no
    /// cluster (only answers given before a Kafka request are looked at).
    async fn head(config: crate::GatewayConfig, request: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::serve(listener, config, std::future::pending()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    }

    #[tokio::test]
    async fn missing_bad_and_refused_credentials() {
        let mut config = crate::GatewayConfig::new("127.0.0.1:1");
        config.security.mechanisms = Mechanisms::parse("basic,bearer").unwrap();
        config.security.plain = Some(Arc::new(StaticPlainUsers::new([(
            "carol".to_string(),
            "pw".to_string(),
        )])));
        config.security.authorizer = Some(Arc::new(OnlyTopic("mine")));
        let req = |path: &str, auth: Option<&str>| {
            let auth = auth
                .map(|a| format!("authorization: {a}\r\n"))
                .unwrap_or_default();
            format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n")
        };
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("carol:pw")
        );
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("carol:nope")
        );
        for auth in [None, Some(wrong.as_str()), Some("Bearer not.a.jwt")] {
            let h = head(config.clone(), req("/topics/mine", auth)).await;
            assert!(h.starts_with("http/1.1 401 "), "{auth:?}: {h}");
            assert!(h.contains("www-authenticate: basic realm="), "{h}");
            assert!(h.contains("www-authenticate: bearer realm="), "{h}");
            assert!(h.contains("\"error_code\":40101"), "{h}");
        }
        let h = head(config.clone(), req("/topics/theirs", Some(&good))).await;
        assert!(h.starts_with("http/1.1 403 "), "{h}");
        assert!(h.contains("\"error_code\":40301"), "{h}");
        assert!(h.contains("user:carol"), "{h}");
        // Allowed: it gets past the checks to the (absent) cluster.
        let h = head(config, req("/topics/mine", Some(&good))).await;
        assert!(
            !h.starts_with("http/1.1 401 ") && !h.starts_with("http/1.1 403 "),
            "{h}"
        );
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            url_query_value("from=earliest&group=g%201", "group").as_deref(),
            Some("g 1")
        );
        assert_eq!(url_query_value("group=", "group").as_deref(), Some(""));
        assert_eq!(url_query_value("x=1", "group"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
