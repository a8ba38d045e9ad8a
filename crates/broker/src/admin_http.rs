//! The HTTP admin listener: liveness, readiness and Prometheus metrics for Kubernetes probes.
//!
//! Plain HTTP by default; HTTPS with its own `admin.http.ssl.*` settings (Kafka's `ssl.*`
//! names under the listener's prefix). `admin.http.auth.*` makes the paths of
//! `admin.http.auth.paths` require `Authorization: Bearer <token>`: the static token of a
//! file, or an OAUTHBEARER JWT checked as SASL checks it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use strom_security::tls::{TlsReloader, TlsSettings};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use crate::broker::Broker;
use crate::config::{BrokerConfig, ConfigError, BROKER_CONFIGS};
use crate::network::jwks::JwksProvider;
use crate::network::security::TlsSetup;

/// TLS handshakes of the admin listener in progress at once; more wait in the backlog.
const MAX_HANDSHAKES: usize = 64;
/// How often a token file is looked at again at most (a rotated Secret is picked up).
const TOKEN_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// What `/` answers, so that someone who opens the admin port in a browser or with curl
/// learns what it serves.
const INDEX: &str = "Strom admin listener\n\
/healthz  liveness: 200 while the process runs\n\
/readyz   readiness: 200 once start-up and recovery are done, 503 while starting or stopping\n\
/metrics  Prometheus metrics (text format 0.0.4)\n";

fn invalid(key: &str, value: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The admin listener's TLS and bearer authentication, from `admin.http.ssl.*` and
/// `admin.http.auth.*`.
pub struct AdminHttpSecurity {
    tls: Option<TlsSetup>,
    auth: Option<Arc<AdminAuth>>,
}

impl AdminHttpSecurity {
    /// Open plain HTTP, as without any of the settings.
    pub fn open() -> Self {
        AdminHttpSecurity {
            tls: None,
            auth: None,
        }
    }

    pub fn from_config(config: &BrokerConfig) -> Result<Self, ConfigError> {
        let ssl: std::collections::HashMap<String, String> = BROKER_CONFIGS
            .iter()
            .filter(|d| d.name.starts_with("ssl."))
            .filter_map(|d| {
                config
                    .raw
                    .get(&format!("admin.http.{}", d.name))
                    .map(|v| (d.name.to_string(), v.to_string()))
            })
            .collect();
        let keystore_given = [
            "ssl.keystore.location",
            "ssl.keystore.certificate.chain",
            "ssl.keystore.key",
        ]
        .iter()
        .any(|k| ssl.get(*k).is_some_and(|v| !v.trim().is_empty()));
        let tls = if keystore_given {
            let key = "admin.http.ssl.keystore.location";
            let shown = ssl
                .get("ssl.keystore.location")
                .cloned()
                .unwrap_or_default();
            let settings =
                TlsSettings::from_properties(&ssl).map_err(|e| invalid(key, &shown, e))?;
            let mapper = settings
                .principal_mapper()
                .map_err(|e| invalid(key, &shown, e))?;
            let reloader = TlsReloader::new(settings).map_err(|e| invalid(key, &shown, e))?;
            let timeout_ms = crate::config::parse_i64(
                "admin.http.ssl.handshake.timeout.ms",
                ssl.get("ssl.handshake.timeout.ms")
                    .map(String::as_str)
                    .unwrap_or("10000"),
                1,
                i64::MAX,
            )?;
            Some(TlsSetup::new(
                Arc::new(reloader),
                mapper,
                Duration::from_millis(timeout_ms as u64),
            ))
        } else {
            if let Some((k, v)) = ssl.iter().find(|(_, v)| !v.trim().is_empty()) {
                if k != "ssl.keystore.type" && k != "ssl.truststore.type" {
                    return Err(invalid(
                        &format!("admin.http.{k}"),
                        v,
                        "admin.http.ssl.keystore.location (or .certificate.chain and .key) is not set, so the admin listener has no TLS",
                    ));
                }
            }
            None
        };
        Ok(AdminHttpSecurity {
            tls,
            auth: AdminAuth::from_config(config)?.map(Arc::new),
        })
    }

    /// Fetches an OAUTHBEARER JWKS endpoint for the first time, when the admin listener
    /// takes JWTs.
    pub async fn start(&self) -> anyhow::Result<()> {
        if let Some(jwks) = self.auth.as_ref().and_then(|a| a.jwks.as_ref()) {
            jwks.start().await?;
        }
        Ok(())
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// A bearer token kept in a file (a Kubernetes Secret's mount): re-read when it changes.
struct TokenFile {
    path: PathBuf,
    state: Mutex<(Instant, Vec<u8>)>,
}

fn read_token(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = bytes.trim_ascii().to_vec();
    // An empty token would make every "Bearer " header with nothing after it a match.
    if token.is_empty() {
        return Err(format!("{} holds no token", path.display()));
    }
    Ok(token)
}

impl TokenFile {
    fn matches(&self, given: &[u8]) -> bool {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.0.elapsed() >= TOKEN_RELOAD_INTERVAL {
            g.0 = Instant::now();
            match read_token(&self.path) {
                Ok(t) => g.1 = t,
                Err(e) => {
                    tracing::warn!(error = %e, "admin.http.auth.token.file: keeping the token in use")
                }
            }
        }
        strom_security::ct_eq(&g.1, given)
    }
}

/// Who may read the admin listener's protected paths.
struct AdminAuth {
    token: Option<TokenFile>,
    jwks: Option<Arc<JwksProvider>>,
    paths: Vec<String>,
}

impl AdminAuth {
    fn from_config(config: &BrokerConfig) -> Result<Option<Self>, ConfigError> {
        let raw = &config.raw;
        let token = match raw
            .get("admin.http.auth.token.file")
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(path) => {
                let token = read_token(path.as_ref())
                    .map_err(|e| invalid("admin.http.auth.token.file", path, e))?;
                Some(TokenFile {
                    path: path.into(),
                    state: Mutex::new((Instant::now(), token)),
                })
            }
        };
        const JWT: &str = "admin.http.auth.oauthbearer.enable";
        let jwt_value = raw.get(JWT).unwrap_or("false");
        let jwks = if crate::config::parse_bool(JWT, jwt_value)? {
            let props: std::collections::HashMap<String, String> = BROKER_CONFIGS
                .iter()
                .filter(|d| d.name.starts_with("sasl.oauthbearer."))
                .filter_map(|d| raw.get(d.name).map(|v| (d.name.to_string(), v.to_string())))
                .collect();
            Some(Arc::new(
                JwksProvider::new(&props).map_err(|e| invalid(JWT, jwt_value, e))?,
            ))
        } else {
            None
        };
        const PATHS: &str = "admin.http.auth.paths";
        let paths_value = raw.get(PATHS).unwrap_or("/metrics,/healthz,/readyz");
        let paths: Vec<String> = paths_value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
            return Err(invalid(
                PATHS,
                paths_value,
                format!("`{bad}` is not a path (it must start with /)"),
            ));
        }
        if token.is_none() && jwks.is_none() {
            return Ok(None);
        }
        Ok(Some(AdminAuth { token, jwks, paths }))
    }

    fn protects(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    fn accepts(&self, token: &str) -> bool {
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.matches(token.as_bytes()))
        {
            return true;
        }
        let Some(validator) = self.jwks.as_ref().and_then(|j| j.current()) else {
            return false;
        };
        match validator.validate(token, crate::network::sasl::now_ms()) {
            Ok(t) => {
                tracing::debug!(principal = %t.principal_name, "admin http: JWT accepted");
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "admin http: bearer token refused");
                false
            }
        }
    }
}

async fn require_token(State(auth): State<Arc<AdminAuth>>, req: Request, next: Next) -> Response {
    if !auth.protects(req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    match given {
        Some(t) if auth.accepts(t) => next.run(req).await,
        // RFC 6750: no token is a bare challenge, a wrong one names invalid_token.
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                r#"Bearer realm="strom-admin", error="invalid_token""#,
            )],
            "unauthorized: the bearer token is not valid\n",
        )
            .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", r#"Bearer realm="strom-admin""#)],
            "unauthorized: this path needs Authorization: Bearer <token>\n",
        )
            .into_response(),
    }
}

/// The admin listener over TLS, for `axum::serve`: handshakes run in their own tasks (a
/// slow client delays no other), bounded in number and time.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl TlsListener {
    fn new(listener: TcpListener, tls: TlsSetup) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let tls = Arc::new(tls);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "admin http: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                tls.maybe_reload();
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.reloader.current());
                let timeout = tls.handshake_timeout;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "admin http: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "admin http: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accept_task,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept task is gone (only at shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[derive(Clone)]
struct AdminState {
    broker: Arc<Broker>,
    metrics: Option<PrometheusHandle>,
}

pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    metrics: Option<PrometheusHandle>,
    security: AdminHttpSecurity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/", get(|| async { INDEX }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { broker, metrics });
    if let Some(auth) = security.auth {
        app = app.layer(axum::middleware::from_fn_with_state(auth, require_token));
    }
    match security.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            axum::serve(TlsListener::new(listener, tls)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, String) {
    if s.broker.is_ready() {
        return (StatusCode::OK, "ready\n".to_string());
    }
    // Which metadata publisher holds readiness back, if one does: what an operator needs.
    let mut body = "not ready\n".to_string();
    for (publisher, reason) in s.broker.loader.failing() {
        body.push_str(&format!(
            "metadata publisher {publisher} failed: {reason}\n"
        ));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn metrics_text(
    State(s): State<AdminState>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let body = match &s.metrics {
        Some(h) => {
            h.run_upkeep();
            let mut text = h.render();
            text.push_str(&crate::metrics::collect::render(&s.broker));
            text
        }
        None => String::new(),
    };
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        body,
    )
}
