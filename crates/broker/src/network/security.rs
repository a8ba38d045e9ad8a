//! What each listener needs to secure its connections, built once at start-up from the
//! listener's `ssl.*` and `sasl.*` settings (a `listener.name.<name>.` override first, then
//! the broker-wide value, as Kafka reads them): the TLS configuration that follows its files,
//! the principal mapper, and the SASL mechanisms with their credential stores. A setting that
//! cannot work is a start-up error naming the listener.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::jwks::JwksProvider;
use strom_security::auth_failures::{Admission, FailedAuthConfig, FailedAuthLimiter};
use strom_security::plain::StaticPlainUsers;
use strom_security::principal_mapper::SslPrincipalMapper;
use strom_security::sasl::ScramCredentialStore;
use strom_security::sasl::{parse_enabled_mechanisms, SaslMechanism, SaslStores};
use strom_security::scram_password::{PlainUsers, ScramPasswordCache};
use strom_security::tls::{TlsReloader, TlsSettings};
use strom_security::SecurityProtocol;

use crate::config::{BrokerConfig, Endpoint, BROKER_CONFIGS};

#[derive(Debug, thiserror::Error)]
pub enum ListenerSecurityError {
    #[error("listener {listener}: {reason}")]
    Invalid { listener: String, reason: String },
}

fn invalid(listener: &str, reason: impl std::fmt::Display) -> ListenerSecurityError {
    ListenerSecurityError::Invalid {
        listener: listener.to_string(),
        reason: reason.to_string(),
    }
}

/// A listener's TLS: the configuration for new connections and how a client certificate
/// becomes a principal.
pub struct TlsSetup {
    pub reloader: Arc<TlsReloader>,
    pub mapper: SslPrincipalMapper,
    /// A handshake still unfinished after this long is dropped.
    pub handshake_timeout: Duration,
    /// When the files were last looked at: a burst of connections reads them once.
    last_reload_check: Mutex<Option<std::time::Instant>>,
}

/// How often new connections look for rotated certificate files at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl TlsSetup {
    pub fn new(
        reloader: Arc<TlsReloader>,
        mapper: SslPrincipalMapper,
        handshake_timeout: Duration,
    ) -> Self {
        TlsSetup {
            reloader,
            mapper,
            handshake_timeout,
            last_reload_check: Mutex::new(Some(std::time::Instant::now())),
        }
    }

    /// Re-reads the keystore and truststore if they were not looked at within the last
    /// second, swapping in a configuration from changed files.
    pub fn maybe_reload(&self) {
        {
            let mut last = match self.last_reload_check.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if last.is_some_and(|at| at.elapsed() < RELOAD_CHECK_INTERVAL) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        if let Err(e) = self.reloader.maybe_reload() {
            tracing::warn!(error = %e, "cannot reload the TLS keystore or truststore; keeping the one in use");
        }
    }
}

/// A listener's SASL: the enabled mechanisms and what checks their credentials.
pub struct SaslSetup {
    pub enabled: Vec<SaslMechanism>,
    plain: Option<Arc<PlainUsers>>,
    scram: Option<Arc<dyn ScramCredentialStore>>,
    jwks: Option<Arc<JwksProvider>>,
    /// `connections.max.reauth.ms` (0: sessions do not expire).
    pub max_reauth_ms: u64,
    /// `sasl.server.max.receive.size` as Kafka: the largest frame before authentication.
    pub max_receive_bytes: usize,
    pub failures: Arc<AuthFailures>,
}

impl SaslSetup {
    /// A setup of the given mechanisms and stores, for tests of the SASL session.
    #[cfg(test)]
    pub(crate) fn for_test(
        enabled: Vec<SaslMechanism>,
        plain_users: Vec<(String, String)>,
        scram: Option<Arc<dyn ScramCredentialStore>>,
        max_reauth_ms: u64,
        failures: FailedAuthConfig,
    ) -> Self {
        SaslSetup {
            enabled,
            plain: Some(Arc::new(PlainUsers::new(
                StaticPlainUsers::new(plain_users),
                scram.clone(),
                Arc::new(ScramPasswordCache::default()),
            ))),
            scram,
            jwks: None,
            max_reauth_ms,
            max_receive_bytes: 524288,
            failures: Arc::new(AuthFailures::new(failures)),
        }
    }

    /// The OAUTHBEARER key set of this listener, if it enables OAUTHBEARER.
    pub fn jwks(&self) -> Option<&Arc<JwksProvider>> {
        self.jwks.as_ref()
    }

    /// The stores for one exchange; a JWKS file is re-read first when it changed.
    pub fn stores(&self) -> SaslStores {
        let oauthbearer = self.jwks.as_ref().and_then(|j| j.current());
        SaslStores {
            scram: self.scram.clone(),
            plain: self
                .plain
                .clone()
                .map(|p| p as Arc<dyn strom_security::plain::PlainCallback + Send + Sync>),
            oauthbearer,
        }
    }
}

/// The broker-wide table of failed authentications by address, shared by every listener.
pub struct AuthFailures(Mutex<FailedAuthLimiter>);

impl AuthFailures {
    pub fn new(config: FailedAuthConfig) -> Self {
        AuthFailures(Mutex::new(FailedAuthLimiter::new(config)))
    }

    fn with<T>(&self, f: impl FnOnce(&mut FailedAuthLimiter) -> T) -> T {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    pub fn admit(&self, addr: IpAddr, now_ms: u64) -> Admission {
        self.with(|l| l.admit(addr, now_ms))
    }

    /// Records a failure; how long to wait before answering and closing.
    pub fn record_failure(&self, addr: IpAddr, now_ms: u64) -> u64 {
        self.with(|l| l.record_failure(addr, now_ms))
    }

    pub fn record_success(&self, addr: IpAddr) {
        self.with(|l| l.record_success(addr))
    }
}

/// The broker's SCRAM credential store, known only once the metadata image is loaded, after
/// the listeners are bound: until then (no connection is served yet) it knows no user.
#[derive(Default)]
pub struct LateScramStore(std::sync::OnceLock<Arc<dyn ScramCredentialStore>>);

impl LateScramStore {
    /// Sets the store; a second call is ignored.
    pub fn set(&self, store: Arc<dyn ScramCredentialStore>) {
        let _ = self.0.set(store);
    }
}

impl ScramCredentialStore for LateScramStore {
    fn credential(
        &self,
        user: &str,
        mechanism: strom_security::scram::ScramMechanism,
    ) -> Option<strom_security::scram::ScramCredential> {
        self.0.get()?.credential(user, mechanism)
    }
}

/// Everything one listener's connections need.
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    pub tls: Option<TlsSetup>,
    pub sasl: Option<Arc<SaslSetup>>,
}

impl ListenerSecurity {
    pub fn plaintext() -> Self {
        ListenerSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }
}

/// The listener's view of every `ssl.*` and `sasl.*` setting, as the strom-security parsers
/// read Kafka properties.
fn listener_properties(config: &BrokerConfig, listener: &str) -> HashMap<String, String> {
    BROKER_CONFIGS
        .iter()
        .filter(|d| d.name.starts_with("ssl.") || d.name.starts_with("sasl."))
        .filter_map(|d| {
            config
                .listener_setting(listener, d.name)
                .map(|v| (d.name.to_string(), v.to_string()))
        })
        .collect()
}

/// Builds the security of `listener`. `scram` is the SCRAM credential store, if the broker
/// has one.
pub fn build(
    config: &BrokerConfig,
    listener: &Endpoint,
    failures: &Arc<AuthFailures>,
    scram: Option<Arc<dyn ScramCredentialStore>>,
) -> Result<ListenerSecurity, ListenerSecurityError> {
    let name = listener.name.as_str();
    let protocol = config.security_protocol(name);
    let props = listener_properties(config, name);
    let tls = if protocol.uses_tls() {
        let settings = TlsSettings::from_properties(&props).map_err(|e| invalid(name, e))?;
        let mapper = settings.principal_mapper().map_err(|e| invalid(name, e))?;
        let reloader = TlsReloader::new(settings).map_err(|e| invalid(name, e))?;
        let timeout_ms = config
            .listener_setting(name, "ssl.handshake.timeout.ms")
            .unwrap_or("10000");
        let timeout_ms =
            crate::config::parse_i64("ssl.handshake.timeout.ms", timeout_ms, 1, i64::MAX)
                .map_err(|e| invalid(name, e))?;
        Some(TlsSetup {
            reloader: Arc::new(reloader),
            mapper,
            handshake_timeout: Duration::from_millis(timeout_ms as u64),
            last_reload_check: Mutex::new(Some(std::time::Instant::now())),
        })
    } else {
        None
    };
    let sasl = if protocol.uses_sasl() {
        Some(Arc::new(sasl_setup(config, name, &props, failures, scram)?))
    } else {
        None
    };
    Ok(ListenerSecurity {
        protocol,
        tls,
        sasl,
    })
}

fn sasl_setup(
    config: &BrokerConfig,
    name: &str,
    props: &HashMap<String, String>,
    failures: &Arc<AuthFailures>,
    scram: Option<Arc<dyn ScramCredentialStore>>,
) -> Result<SaslSetup, ListenerSecurityError> {
    let enabled = parse_enabled_mechanisms(
        config
            .listener_setting(name, "sasl.enabled.mechanisms")
            .unwrap_or("PLAIN"),
    )
    .map_err(|e| invalid(name, format!("sasl.enabled.mechanisms: {e}")))?;
    let lower = name.to_ascii_lowercase();
    let mut plain = None;
    let mut jwks = None;
    for m in &enabled {
        match m {
            SaslMechanism::Plain => {
                // A JAAS entry is optional here (Kafka requires one): users it does not name
                // are checked against the SCRAM credentials of the metadata log.
                let key = format!("listener.name.{lower}.plain.sasl.jaas.config");
                let users = match config.raw.get(&key) {
                    Some(jaas) => {
                        plain_users(jaas).map_err(|e| invalid(name, format!("{key}: {e}")))?
                    }
                    None => Vec::new(),
                };
                if users.is_empty() && scram.is_none() {
                    return Err(invalid(
                        name,
                        format!(
                            "PLAIN is enabled but {key} has no user_<name>=\"<password>\" entry and this broker has no SCRAM credentials"
                        ),
                    ));
                }
                if users.is_empty() {
                    tracing::info!(
                        listener = name,
                        "PLAIN passwords are checked against the SCRAM credentials only ({key} names no user)"
                    );
                }
                plain = Some(Arc::new(PlainUsers::new(
                    StaticPlainUsers::new(users),
                    scram.clone(),
                    Arc::new(ScramPasswordCache::default()),
                )));
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                if scram.is_none() {
                    return Err(invalid(
                        name,
                        format!(
                            "{} is enabled but this broker has no SCRAM credential store yet",
                            m.name()
                        ),
                    ));
                }
            }
            SaslMechanism::OAuthBearer => {
                jwks = Some(Arc::new(
                    JwksProvider::new(props).map_err(|e| invalid(name, e))?,
                ));
            }
        }
    }
    let int = |k: &str, default: &str, max: i64| {
        crate::config::parse_i64(
            k,
            config.listener_setting(name, k).unwrap_or(default),
            0,
            max,
        )
        .map_err(|e| invalid(name, e))
    };
    Ok(SaslSetup {
        enabled,
        plain,
        scram,
        jwks,
        max_reauth_ms: int("connections.max.reauth.ms", "0", i64::MAX)? as u64,
        max_receive_bytes: int("sasl.server.max.receive.size", "524288", i32::MAX as i64)?.max(1)
            as usize,
        failures: failures.clone(),
    })
}

/// The `user_<name>="<password>"` options of a PlainLoginModule JAAS entry (Kafka's
/// `listener.name.<l>.plain.sasl.jaas.config`), e.g.
/// `org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="secret";`.
pub fn plain_users(jaas: &str) -> Result<Vec<(String, String)>, String> {
    let entry =
        strom_security::client_config::parse_jaas_config(jaas).map_err(|e| e.to_string())?;
    Ok(entry
        .options
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("user_").map(|u| (u.to_string(), v)))
        .filter(|(u, _)| !u.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_plain_users() {
        let users = plain_users(
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required
               username="admin" password="admin-secret"
               user_admin="admin-secret" user_alice="a \"quoted\" pass" user_bob=bare;"#,
        )
        .unwrap();
        assert_eq!(
            users,
            vec![
                ("admin".to_string(), "admin-secret".to_string()),
                ("alice".to_string(), "a \"quoted\" pass".to_string()),
                ("bob".to_string(), "bare".to_string()),
            ]
        );
    }

    #[test]
    fn jaas_errors() {
        assert!(
            plain_users("Module required user_a=\"x\"").is_err(),
            "no ';'"
        );
        assert!(
            plain_users("Module maybe user_a=\"x\";").is_err(),
            "bad flag"
        );
        assert!(
            plain_users("Module required user_a=\"x;").is_err(),
            "open quote"
        );
        assert!(plain_users("Module required user_a;").is_err(), "no '='");
        assert_eq!(plain_users("Module required;").unwrap(), vec![]);
    }
}
