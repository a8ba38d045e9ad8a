//! The OAUTHBEARER key set in force for `sasl.oauthbearer.jwks.endpoint.url`: a `file://`
//! JWKS re-read when it changes, or an `http(s)://` one fetched at start-up and again every
//! `sasl.oauthbearer.jwks.endpoint.refresh.ms` (Kafka's `RefreshingHttpsJwks`). A fetch
//! that fails is retried after `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`, doubled up
//! to `...retry.backoff.max.ms` (KIP-768's names), and the last good key set stays in use
//! meanwhile, so an identity provider that is down for a while refuses no valid token.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

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
