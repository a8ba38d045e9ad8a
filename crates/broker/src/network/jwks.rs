//! The OAUTHBEARER key set in force for `sasl.oauthbearer.jwks.endpoint.url`: a `file://`
//! JWKS re-read when it changes, or an `http(s)://` one fetched at start-up and again every
//! `sasl.oauthbearer.jwks.endpoint.refresh.ms` (Kafka's `RefreshingHttpsJwks`). A fetch
//! that fails is retried after `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`, doubled up
//! to `...retry.backoff.max.ms` (KIP-768's names), and the last good key set stays in use
//! meanwhile, so an identity provider that is down for a while refuses no valid token.
//!
//! A token whose `kid` the key set lacks has its key fetched early, as Kafka's
//! `RefreshingHttpsJwks.maybeExpediteRefresh` does for a rotated key, and waits for that
//! fetch: the same `kid` starts at most one early fetch a minute (of the last 16 such kids
//! remembered, ids over 1000 characters never), as in Kafka, and Strom adds a bound for all
//! kids together, at most one early fetch per `...retry.backoff.max.ms`, so tokens with
//! made-up kids, which anyone can send, cannot make the broker hammer the identity provider.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use strom_security::oauthbearer::{
    Jwks, JwksFileReloader, JwksSource, OAuthBearerValidator, OAuthBearerValidatorConfig,
};
use strom_security::tls::{build_client_config, ClientTlsSettings};

/// A JWKS bigger than this is refused: a key set is a few KiB, and the endpoint is a peer
/// whose answer is read into memory.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// One fetch, connection included, before it counts as failed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("{name}: {reason}")]
    Config { name: &'static str, reason: String },
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] strom_security::oauthbearer::OAuthBearerError),
}

struct Endpoint {
    url: String,
    client: reqwest::Client,
    config: OAuthBearerValidatorConfig,
    refresh_ms: u64,
    backoff_ms: u64,
    backoff_max_ms: u64,
    current: RwLock<Option<Arc<OAuthBearerValidator>>>,
    early: Mutex<EarlyFetches>,
    /// Counts finished early fetches, so a token waiting for one learns it is over.
    early_done: tokio::sync::watch::Sender<u64>,
}

/// The same unknown `kid` starts no second early fetch within this (Kafka's
/// `MISSING_KEY_ID_CACHE_IN_FLIGHT_MS`).
pub const MISSING_KID_RETRY_MS: u64 = 60_000;
/// How many unknown kids are remembered (Kafka's `MISSING_KEY_ID_CACHE_MAX_ENTRIES`).
const MISSING_KIDS_REMEMBERED: usize = 16;
/// A longer `kid` is taken for garbage and fetches nothing (Kafka's
/// `MISSING_KEY_ID_MAX_KEY_LENGTH`).
const MAX_KID_CHARS: usize = 1000;

/// The early fetches' bookkeeping.
#[derive(Default)]
struct EarlyFetches {
    /// Unknown kids and when each may start an early fetch again, oldest first.
    missing: VecDeque<(String, Instant)>,
    /// When the last early fetch started.
    last_started: Option<Instant>,
    in_flight: bool,
}

impl EarlyFetches {
    /// Whether `kid` may start (or join) an early fetch at `now`: not one of the kids tried
    /// within the last minute, nor, for a new fetch, within `min_interval` of the last.
    /// Returns `Some(start)` when the caller should wait, starting a fetch if `start`.
    fn admit(&mut self, kid: &str, now: Instant, min_interval: Duration) -> Option<bool> {
        if kid.chars().count() > MAX_KID_CHARS {
            return None;
        }
        self.missing.retain(|(_, until)| *until > now);
        if self.missing.iter().any(|(k, _)| k == kid) {
            return None;
        }
        let start = !self.in_flight;
        if start
            && self
                .last_started
                .is_some_and(|at| now.saturating_duration_since(at) < min_interval)
        {
            return None;
        }
        self.missing.push_back((
            kid.to_string(),
            now + Duration::from_millis(MISSING_KID_RETRY_MS),
        ));
        while self.missing.len() > MISSING_KIDS_REMEMBERED {
            self.missing.pop_front();
        }
        if start {
            self.in_flight = true;
            self.last_started = Some(now);
        }
        Some(start)
    }

    /// A fetch ended with these kids in the key set: they are missing no more.
    fn finished(&mut self, present: &[String]) {
        self.in_flight = false;
        self.missing.retain(|(k, _)| !present.contains(k));
    }
}

enum Source {
    File(JwksFileReloader),
    Endpoint(Endpoint),
}

/// The validator of OAUTHBEARER tokens over the configured JWKS.
pub struct JwksProvider(Source);

fn long(
    props: &HashMap<String, String>,
    name: &'static str,
    default: u64,
) -> Result<u64, JwksError> {
    match props.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(JwksError::Config {
                name,
                reason: format!("`{v}` is not a positive number of milliseconds"),
            }),
        },
    }
}

impl JwksProvider {
    /// Reads the settings. A `file://` JWKS is read here; an endpoint is fetched by
    /// [`JwksProvider::start`].
    pub fn new(props: &HashMap<String, String>) -> Result<Self, JwksError> {
        let config = OAuthBearerValidatorConfig::from_properties(props)?;
        match JwksSource::from_properties(props)? {
            JwksSource::File(path) => Ok(JwksProvider(Source::File(JwksFileReloader::new(
                path, config,
            )?))),
            JwksSource::Url(url) => {
                let refresh_ms = long(
                    props,
                    "sasl.oauthbearer.jwks.endpoint.refresh.ms",
                    3_600_000,
                )?;
                let backoff_ms = long(
                    props,
                    "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
                    100,
                )?;
                let backoff_max_ms = long(
                    props,
                    "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
                    10_000,
                )?;
                let mut builder = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .connect_timeout(FETCH_TIMEOUT)
                    // A redirect could lead anywhere; the configured URL is the one trusted.
                    .redirect(reqwest::redirect::Policy::none());
                const TRUST: &str = "sasl.oauthbearer.jwks.endpoint.ssl.truststore.location";
                if let Some(path) = props.get(TRUST).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                    let trust =
                        HashMap::from([("ssl.truststore.location".to_string(), path.to_string())]);
                    let tls = ClientTlsSettings::from_properties(&trust)
                        .and_then(|s| build_client_config(&s))
                        .map_err(|e| JwksError::Config {
                            name: TRUST,
                            reason: e.to_string(),
                        })?;
                    builder = builder.use_preconfigured_tls((*tls).clone());
                }
                let client = builder.build().map_err(|e| JwksError::Config {
                    name: "sasl.oauthbearer.jwks.endpoint.url",
                    reason: e.to_string(),
                })?;
                Ok(JwksProvider(Source::Endpoint(Endpoint {
                    url,
                    client,
                    config,
                    refresh_ms,
                    backoff_ms,
                    backoff_max_ms,
                    current: RwLock::new(None),
                    early: Mutex::new(EarlyFetches::default()),
                    early_done: tokio::sync::watch::Sender::new(0),
                })))
            }
        }
    }

    /// Fetches an endpoint's key set for the first time (an error here is a start-up error,
    /// as Kafka's broker fails to start when its JWKS cannot be read) and starts refreshing
    /// it; the task ends with the provider.
    pub async fn start(self: &Arc<Self>) -> Result<(), JwksError> {
        let Source::Endpoint(e) = &self.0 else {
            return Ok(());
        };
        let validator = e.fetch_validator().await?;
        e.set(validator);
        tokio::spawn(refresh_loop(Arc::downgrade(self), e.refresh_ms));
        Ok(())
    }

    /// The validator for one exchange, or none while no key set was ever read.
    pub fn current(&self) -> Option<Arc<OAuthBearerValidator>> {
        match &self.0 {
            Source::File(f) => {
                if let Err(e) = f.maybe_reload() {
                    tracing::warn!(error = %e, "cannot reload the OAUTHBEARER JWKS; keeping the keys in use");
                }
                Some(f.current())
            }
            Source::Endpoint(e) => match e.current.read() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            },
        }
    }
}

impl JwksProvider {
    /// A token was refused for want of a key for `kid`: fetches the key set early if the
    /// rules above allow (or joins the early fetch under way), and gives what to wait for
    /// before checking the token again with [`JwksProvider::current`]. None: no early fetch
    /// (a `file://` JWKS is re-read when it changes anyway), so the refusal stands.
    pub fn fetch_early(self: &Arc<Self>, kid: &str) -> Option<impl Future<Output = ()> + use<>> {
        let Source::Endpoint(e) = &self.0 else {
            return None;
        };
        let mut done = e.early_done.subscribe();
        let start = {
            let mut early = e.early.lock().unwrap_or_else(|p| p.into_inner());
            early.admit(kid, Instant::now(), Duration::from_millis(e.backoff_max_ms))?
        };
        if start {
            tracing::info!(url = %e.url, kid, "OAUTHBEARER token with a kid not in the JWKS; fetching it early");
            let provider = Arc::clone(self);
            // Its own task: the fetch completes for every waiter even if this one goes.
            tokio::spawn(async move {
                let Source::Endpoint(e) = &provider.0 else {
                    return;
                };
                let present = match e.fetch_validator().await {
                    Ok(v) => {
                        let kids = v.key_ids();
                        e.set(v);
                        kids
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "early JWKS fetch failed; keeping the keys in use");
                        Vec::new()
                    }
                };
                e.early
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .finished(&present);
                e.early_done.send_modify(|n| *n = n.wrapping_add(1));
            });
        }
        Some(async move {
            // A fetch is bounded by FETCH_TIMEOUT; the margin covers its bookkeeping.
            let _ =
                tokio::time::timeout(FETCH_TIMEOUT + Duration::from_secs(1), done.changed()).await;
        })
    }
}

impl Endpoint {
    fn set(&self, validator: Arc<OAuthBearerValidator>) {
        match self.current.write() {
            Ok(mut g) => *g = Some(validator),
            Err(p) => *p.into_inner() = Some(validator),
        }
    }

    async fn fetch_validator(&self) -> Result<Arc<OAuthBearerValidator>, JwksError> {
        let bytes = fetch_bounded(&self.client, &self.url).await?;
        Ok(Arc::new(OAuthBearerValidator::new(
            self.config.clone(),
            Jwks::from_json(&bytes)?,
        )))
    }
}

async fn refresh_loop(provider: Weak<JwksProvider>, refresh_ms: u64) {
    let mut wait_ms = refresh_ms;
    loop {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let Some(p) = provider.upgrade() else {
            return;
        };
        let Source::Endpoint(e) = &p.0 else {
            return;
        };
        match e.fetch_validator().await {
            Ok(v) => {
                e.set(v);
                tracing::debug!(url = %e.url, "JWKS refreshed");
                wait_ms = e.refresh_ms;
            }
            Err(err) => {
                wait_ms = retry_wait_ms(wait_ms, e.refresh_ms, e.backoff_ms, e.backoff_max_ms);
                tracing::warn!(error = %err, retry_in_ms = wait_ms, "JWKS refresh failed; keeping the keys in use");
            }
        }
    }
}

/// The wait after a failed fetch that followed a wait of `previous_ms`: the backoff after
/// a regular refresh, then twice as long each time, never beyond the maximum (nor the
/// refresh interval itself).
fn retry_wait_ms(previous_ms: u64, refresh_ms: u64, backoff_ms: u64, backoff_max_ms: u64) -> u64 {
    let next = if previous_ms >= refresh_ms {
        backoff_ms
    } else {
        previous_ms.saturating_mul(2)
    };
    next.min(backoff_max_ms).min(refresh_ms)
}

/// One GET of at most [`MAX_JWKS_BYTES`], within [`FETCH_TIMEOUT`].
pub async fn fetch_bounded(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, JwksError> {
    let fail = |reason: String| JwksError::Fetch {
        url: url.to_string(),
        reason,
    };
    let mut response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP status {}", response.status())));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(fail(format!("more than {MAX_JWKS_BYTES} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(fail(format!("more than {MAX_JWKS_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// reqwest's own message is only "error sending request"; the cause (a certificate that
/// is not trusted, a refused connection) is what an operator needs.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_maximum() {
        let mut waits = Vec::new();
        let mut w = 3_600_000;
        for _ in 0..10 {
            w = retry_wait_ms(w, 3_600_000, 100, 10_000);
            waits.push(w);
        }
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        // A maximum above the refresh interval is cut to it.
        assert_eq!(retry_wait_ms(400, 500, 50, 10_000), 500);
    }

    #[test]
    fn early_fetches_follow_kafkas_rules_and_a_global_bound() {
        let mut early = EarlyFetches::default();
        let t0 = Instant::now();
        let gap = Duration::from_millis(10_000);
        // The first unknown kid starts a fetch; others while it runs join it.
        assert_eq!(early.admit("k2", t0, gap), Some(true));
        assert_eq!(early.admit("k3", t0, gap), Some(false));
        // The same kid again within the minute: nothing (its token is refused).
        assert_eq!(early.admit("k2", t0, gap), None);
        early.finished(&["k2".to_string()]);
        // k2 arrived with the fetch, so it is not missing; but a new fetch waits for the gap.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(early.admit("k4", t1, gap), None);
        assert_eq!(early.admit("k2", t1, gap), None, "rate-limited");
        // After the gap a new kid fetches again; k3 (still missing) waits for its minute.
        let t2 = t0 + gap;
        assert_eq!(early.admit("k3", t2, gap), None);
        assert_eq!(early.admit("k4", t2, gap), Some(true));
        early.finished(&[]);
        let t3 = t0 + Duration::from_millis(MISSING_KID_RETRY_MS);
        assert_eq!(
            early.admit("k3", t3, gap),
            Some(true),
            "k3's minute is over"
        );
        early.finished(&[]);
        // A kid over 1000 characters never fetches; at most 16 kids are remembered.
        let long = "x".repeat(1001);
        assert_eq!(early.admit(&long, t3 + gap, gap), None);
        let mut early = EarlyFetches::default();
        for i in 0..40 {
            let _ = early.admit(&format!("kid{i}"), t0, gap);
        }
        assert_eq!(early.missing.len(), MISSING_KIDS_REMEMBERED);
    }

    #[test]
    fn settings_are_checked() {
        let props = |extra: &[(&str, &str)]| {
            let mut p: HashMap<String, String> = HashMap::from([(
                "sasl.oauthbearer.jwks.endpoint.url".to_string(),
                "https://idp.example/jwks".to_string(),
            )]);
            for (k, v) in extra {
                p.insert(k.to_string(), v.to_string());
            }
            p
        };
        assert!(JwksProvider::new(&props(&[])).is_ok());
        for (k, v) in [
            ("sasl.oauthbearer.jwks.endpoint.refresh.ms", "0"),
            ("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", "-1"),
            (
                "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
                "soon",
            ),
            (
                "sasl.oauthbearer.jwks.endpoint.ssl.truststore.location",
                "/nonexistent.pem",
            ),
        ] {
            let err = JwksProvider::new(&props(&[(k, v)]))
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(k)),
                "{k}={v}: {err:?}"
            );
        }
        // Nothing is fetched before start(): no key set yet.
        let p = JwksProvider::new(&props(&[])).ok();
        assert!(p.is_some_and(|p| p.current().is_none()));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_fails_the_start() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let props = HashMap::from([(
            "sasl.oauthbearer.jwks.endpoint.url".to_string(),
            format!("http://127.0.0.1:{port}/jwks"),
        )]);
        let p = Arc::new(
            JwksProvider::new(&props)
                .map_err(|e| e.to_string())
                .unwrap(),
        );
        let err = p.start().await.err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("cannot fetch")),
            "{err:?}"
        );
    }
}
