//! `strom gateway`: the HTTP and WebSocket gateway to topics, standalone in
//! front of any Kafka-compatible cluster; and its start inside `strom serve`
//! when `gateway.listener` is set.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strom_broker::broker::Broker;
use strom_broker::config::{parse_i64, BrokerConfig, ConfigError, ConfigSource};
use strom_gateway::auth::{GatewayAuthorizer, GatewaySecurity, Mechanisms};
use strom_gateway::GatewayConfig;
use strom_security::authorizer::{AclOperation, ResourceType};
use strom_security::sasl::ScramCredentialStore;
use strom_security::scram::{ScramCredential, ScramMechanism};
use strom_security::KafkaPrincipal;
use tokio::net::TcpListener;

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// Bootstrap broker(s) of the Kafka cluster, HOST:PORT[,HOST:PORT...].
    #[arg(
        short = 'b',
        long = "bootstrap",
        env = "STROM_BOOTSTRAP",
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap: String,
    /// Address the gateway listens on.
    #[arg(long, default_value = "0.0.0.0:8082", value_name = "ADDR")]
    pub listener: SocketAddr,
    /// Time allowed for each request to a broker, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,
    /// Largest HTTP request body accepted, in bytes (413 beyond).
    #[arg(long, default_value_t = 8 * 1024 * 1024, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..=1_073_741_824))]
    pub max_request_bytes: u64,
    /// Most records in one produce request (422 beyond).
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_records_per_request: u64,
    /// A connection with nothing read or written this long is closed, in milliseconds.
    #[arg(long, default_value_t = 60_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    pub idle_timeout_ms: u64,
    /// Most open HTTP connections; more wait to be accepted.
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Most WebSocket and Server-Sent Event streams at once (429 beyond).
    #[arg(long, default_value_t = 1_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_streams: u64,
    /// Most REST consumer instances at once (429 beyond).
    #[arg(long, default_value_t = 1_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_consumer_instances: u64,
    /// A consumer instance unused this long is removed, in milliseconds.
    #[arg(long, default_value_t = 300_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1_000..=604_800_000))]
    pub consumer_instance_timeout_ms: u64,
    /// Origins whose browser pages may call the gateway (CORS): comma-separated
    /// scheme://host[:port], or * for any; none by default.
    #[arg(long, default_value = "", value_name = "ORIGINS",
          value_parser = |s: &str| strom_gateway::cors::AllowedOrigins::parse(s))]
    pub access_control_allow_origin: strom_gateway::cors::AllowedOrigins,
    /// Kafka client properties (security.protocol, ssl.*, sasl.*) of the gateway's own
    /// connections to the cluster; every request is forwarded as that principal.
    #[arg(long, value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
    /// Properties file of the gateway's own security settings, by their `strom serve` names:
    /// gateway.ssl.* (HTTPS), gateway.authentication, gateway.plain.sasl.jaas.config,
    /// gateway.sasl.oauthbearer.*, gateway.max.*.per.principal.
    #[arg(long, value_name = "FILE")]
    pub gateway_config: Option<std::path::PathBuf>,
}

/// The broker of this process, once `strom serve` has built it: the in-process gateway's
/// SCRAM users and authorizer. One broker per process, so one cell.
static BROKER: OnceLock<(
    Arc<Broker>,
    strom_broker::metadata::ImageScramCredentialStore,
)> = OnceLock::new();

/// Handed to `strom_broker::server::run_with`: from here on the gateway checks Basic
/// passwords against the image's SCRAM credentials and asks the broker's authorizer.
pub fn broker_ready(broker: &Arc<Broker>) {
    let store = strom_broker::metadata::ImageScramCredentialStore::new(broker.loader.clone());
    let _ = BROKER.set((broker.clone(), store));
}

/// The broker's SCRAM users and authorizer, for the in-process gateway. Until the broker is
/// built nobody authenticates, and with an authorizer configured nothing is allowed.
struct InProcess;

impl ScramCredentialStore for InProcess {
    fn credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        BROKER.get()?.1.credential(user, mechanism)
    }
}

impl GatewayAuthorizer for InProcess {
    fn authorize(
        &self,
        principal: &KafkaPrincipal,
        host: IpAddr,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let Some((broker, _)) = BROKER.get() else {
            return false;
        };
        // The caller as the broker's authorizer sees a connection: its principal and address.
        let (_cancel_tx, cancel) = strom_broker::request::WaitCancel::new();
        let info = strom_broker::request::ConnectionInfo::new(
            Arc::from("GATEWAY"),
            SocketAddr::new(host, 0),
            cancel,
        );
        let _ = info.authenticated.set(principal.clone());
        strom_broker::authz::authorize(broker, &info, operation, resource_type, name)
    }
}

/// A bad gateway setting: (name, value, reason).
type SettingError = (String, String, String);

fn bad(key: &str, value: &str, reason: impl ToString) -> SettingError {
    (key.to_string(), value.to_string(), reason.to_string())
}

/// The gateway's TLS, authentication and per-principal limits from its `gateway.*`
/// settings (`get` gives a set value); `scram` and `authorizer` are the broker's when it
/// runs in process.
fn security_settings(
    get: &dyn Fn(&str) -> Option<String>,
    authorizer_configured: bool,
    in_process: bool,
    g: &mut GatewayConfig,
) -> Result<(), SettingError> {
    let set = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let count = |k: &str, default: usize| -> Result<usize, SettingError> {
        match set(k) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(bad(k, &v, "a whole number from 1 to 1000000")),
            },
        }
    };
    let mut sec = GatewaySecurity::new();
    sec.max_connections_per_principal = count(
        "gateway.max.connections.per.principal",
        sec.max_connections_per_principal,
    )?;
    sec.max_streams_per_principal = count(
        "gateway.max.streams.per.principal",
        sec.max_streams_per_principal,
    )?;
    sec.mechanisms = match set("gateway.authentication") {
        Some(v) => Mechanisms::parse(&v).map_err(|r| bad("gateway.authentication", &v, r))?,
        // With ACLs on, the gateway cannot let everyone in as ANONYMOUS by default.
        None if authorizer_configured => Mechanisms {
            basic: true,
            bearer: false,
        },
        None => Mechanisms::default(),
    };
    if let Some(jaas) = set("gateway.plain.sasl.jaas.config") {
        let users = strom_broker::network::security::plain_users(&jaas)
            .map_err(|r| bad("gateway.plain.sasl.jaas.config", "(hidden)", r))?;
        sec.plain = Some(Arc::new(strom_security::plain::StaticPlainUsers::new(
            users,
        )));
    }
    if in_process {
        sec.scram = Some(Arc::new(InProcess));
        if authorizer_configured {
            sec.authorizer = Some(Arc::new(InProcess));
        }
    }
    if sec.mechanisms.basic && sec.plain.is_none() && sec.scram.is_none() {
        return Err(bad(
            "gateway.authentication",
            "basic",
            "a standalone gateway has no SCRAM users: give PLAIN users in gateway.plain.sasl.jaas.config",
        ));
    }
    if sec.mechanisms.bearer {
        let mut props = HashMap::new();
        for name in [
            "jwks.endpoint.url",
            "expected.audience",
            "expected.issuer",
            "sub.claim.name",
            "clock.skew.seconds",
        ] {
            let v = set(&format!("gateway.sasl.oauthbearer.{name}"))
                .or_else(|| set(&format!("sasl.oauthbearer.{name}")));
            if let Some(v) = v {
                props.insert(format!("sasl.oauthbearer.{name}"), v);
            }
        }
        let key = "gateway.sasl.oauthbearer.jwks.endpoint.url";
        let url = props
            .get("sasl.oauthbearer.jwks.endpoint.url")
            .cloned()
            .unwrap_or_default();
        let config =
            strom_security::oauthbearer::OAuthBearerValidatorConfig::from_properties(&props)
                .map_err(|e| bad("gateway.sasl.oauthbearer.*", "", e))?;
        match strom_security::oauthbearer::JwksSource::from_properties(&props)
            .map_err(|e| bad(key, &url, e))?
        {
            strom_security::oauthbearer::JwksSource::File(path) => {
                let jwks = strom_security::oauthbearer::JwksFileReloader::new(path, config)
                    .map_err(|e| bad(key, &url, e))?;
                sec.jwks = Some(Arc::new(jwks));
            }
            strom_security::oauthbearer::JwksSource::Url(_) => {
                return Err(bad(
                    key,
                    &url,
                    "the gateway reads a file:// JWKS only (not yet HTTPS)",
                ));
            }
        }
    }
    g.security = sec;
    if set("gateway.ssl.keystore.location").is_some()
        || set("gateway.ssl.keystore.certificate.chain").is_some()
    {
        let mut props = HashMap::new();
        for name in [
            "keystore.location",
            "keystore.certificate.chain",
            "keystore.key",
            "keystore.type",
            "enabled.protocols",
        ] {
            if let Some(v) = set(&format!("gateway.ssl.{name}")) {
                props.insert(format!("ssl.{name}"), v);
            }
        }
        // Errors name the gateway's setting that turned TLS on (the message says which
        // ssl.* piece is wrong).
        let (key, value) = match set("gateway.ssl.keystore.location") {
            Some(v) => ("gateway.ssl.keystore.location", v),
            None => (
                "gateway.ssl.keystore.certificate.chain",
                "(PEM text)".to_string(),
            ),
        };
        let settings = strom_security::tls::TlsSettings::from_properties(&props)
            .map_err(|e| bad(key, &value, e))?;
        let reloader =
            strom_security::tls::TlsReloader::new(settings).map_err(|e| bad(key, &value, e))?;
        g.tls = Some(Arc::new(reloader));
    }
    if let Some(path) = set("gateway.client.config") {
        g.client_security = client_security(std::path::Path::new(&path))
            .map_err(|e| bad("gateway.client.config", &path, e))?;
    }
    Ok(())
}

/// The security a client properties file describes (`--command-config`).
fn client_security(
    path: &std::path::Path,
) -> Result<Option<Arc<strom_client::ClientSecurity>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let props = strom_security::client_config::parse_properties(&text);
    Ok(strom_client::ClientSecurity::from_properties(&props)?.map(Arc::new))
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listener)
        .await
        .with_context(|| format!("cannot listen on {}", args.listener))?;
    let addr = listener.local_addr()?;
    let mut config = GatewayConfig::new(args.bootstrap.clone());
    config.request_timeout = Duration::from_millis(args.request_timeout_ms);
    config.max_request_bytes = args.max_request_bytes as usize;
    config.max_records_per_request = args.max_records_per_request as usize;
    config.idle_timeout = Duration::from_millis(args.idle_timeout_ms);
    config.max_connections = args.max_connections as usize;
    config.allowed_origins = args.access_control_allow_origin;
    config.max_streams = args.max_streams as usize;
    config.max_consumer_instances = args.max_consumer_instances as usize;
    config.consumer_instance_timeout = Duration::from_millis(args.consumer_instance_timeout_ms);
    if let Some(path) = &args.command_config {
        config.client_security = client_security(path)
            .map_err(|e| anyhow::anyhow!("--command-config {}: {e}", path.display()))?;
    }
    let props = match &args.gateway_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read --gateway-config {}: {e}", path.display())
            })?;
            strom_security::client_config::parse_properties(&text)
        }
        None => HashMap::new(),
    };
    for key in props.keys() {
        if !key.starts_with("gateway.") || key == "gateway.client.config" {
            anyhow::bail!("--gateway-config: unknown setting '{key}' (gateway.ssl.*, gateway.authentication, gateway.plain.sasl.jaas.config, gateway.sasl.oauthbearer.*, gateway.max.*.per.principal)");
        }
    }
    security_settings(&|k| props.get(k).cloned(), false, false, &mut config).map_err(
        |(key, value, reason)| {
            anyhow::anyhow!("--gateway-config: invalid value {value:?} for '{key}': {reason}")
        },
    )?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!(
        "strom gateway: listening on {scheme}://{addr}, cluster {}",
        args.bootstrap
    );
    strom_gateway::serve(listener, config, crate::shutdown_signal()).await?;
    Ok(())
}

/// The broker's own address over loopback: its first listener, a wildcard
/// host replaced by the loopback address.
fn loopback_bootstrap(config: &BrokerConfig) -> Option<String> {
    let l = config.listeners.iter().find(|l| l.name != "CONTROLLER")?;
    if l.port == 0 {
        return None;
    }
    let host = match l.host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    Some(format!("{host}:{}", l.port))
}

/// The gateway's settings from `strom serve`'s configuration (`gateway.*`),
/// checked before anything starts so that a bad value is a configuration
/// error like any other. The bootstrap is filled in once the broker's
/// listener is known.
pub fn config_for_broker(config: &BrokerConfig) -> Result<GatewayConfig, ConfigError> {
    let mut g = GatewayConfig::new(String::new());
    let raw = &config.raw;
    let int = |key: &str, default: u64, min: i64, max: i64| -> Result<u64, ConfigError> {
        match raw.get(key) {
            None => Ok(default),
            // Bounds are positive, so the checked value is too.
            Some(v) => parse_i64(key, v, min, max).map(|n| n.unsigned_abs()),
        }
    };
    let ms = |n: u64| Duration::from_millis(n);
    const GIB: i64 = 1 << 30;
    g.max_request_bytes = int(
        "gateway.max.request.bytes",
        g.max_request_bytes as u64,
        1,
        GIB,
    )? as usize;
    g.max_records_per_request = int(
        "gateway.max.records.per.request",
        g.max_records_per_request as u64,
        1,
        10_000_000,
    )? as usize;
    g.max_connections = int(
        "gateway.max.connections",
        g.max_connections as u64,
        1,
        1_000_000,
    )? as usize;
    g.max_streams = int("gateway.max.streams", g.max_streams as u64, 1, 1_000_000)? as usize;
    g.max_consumer_instances = int(
        "gateway.max.consumer.instances",
        g.max_consumer_instances as u64,
        1,
        1_000_000,
    )? as usize;
    g.idle_timeout = ms(int("gateway.idle.timeout.ms", 60_000, 100, 86_400_000)?);
    g.consumer_instance_timeout = ms(int(
        "gateway.consumer.instance.timeout.ms",
        300_000,
        1_000,
        7 * 86_400_000,
    )?);
    g.consumer_request_timeout_ms = int(
        "gateway.consumer.request.timeout.ms",
        g.consumer_request_timeout_ms,
        0,
        30_000,
    )?;
    // Within what the gateway's client takes in one response.
    g.consumer_request_max_bytes = int(
        "gateway.consumer.request.max.bytes",
        g.consumer_request_max_bytes as u64,
        1,
        128 * 1024 * 1024,
    )? as usize;
    g.request_timeout = ms(int("gateway.request.timeout.ms", 30_000, 1, 3_600_000)?);
    let origins = raw.get("gateway.access.control.allow.origin").unwrap_or("");
    g.allowed_origins = strom_gateway::cors::AllowedOrigins::parse(origins).map_err(|reason| {
        ConfigError::Invalid {
            key: "gateway.access.control.allow.origin".to_string(),
            value: origins.to_string(),
            reason,
        }
    })?;
    let authorizer = !raw
        .get("authorizer.class.name")
        .unwrap_or("")
        .trim()
        .is_empty();
    security_settings(
        &|k| raw.get(k).map(str::to_string),
        authorizer,
        true,
        &mut g,
    )
    .map_err(|(key, value, reason)| ConfigError::Invalid { key, value, reason })?;
    Ok(g)
}

/// Binds `gateway.listener` and serves the gateway in the background of
/// `strom serve`. A listener set explicitly that cannot be bound is an
/// error; the default one (8082) only warns, so that several brokers on one
/// machine still start.
pub async fn start_in_broker(
    config: &BrokerConfig,
    mut gateway: GatewayConfig,
) -> anyhow::Result<()> {
    let Some(addr) = config.gateway_listener else {
        return Ok(());
    };
    let explicit = config.raw.source("gateway.listener") != ConfigSource::Default;
    let Some(bootstrap) = loopback_bootstrap(config) else {
        tracing::warn!(
            "gateway.listener: the broker's listener has no fixed port; gateway not started"
        );
        return Ok(());
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if explicit => {
            return Err(anyhow::anyhow!(
                "cannot listen on gateway.listener {addr}: {e}"
            ));
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot listen on the default gateway.listener; gateway not started");
            return Ok(());
        }
    };
    tracing::info!(addr = %listener.local_addr()?, %bootstrap, "gateway listening");
    gateway.bootstrap = bootstrap;
    tokio::spawn(async move {
        if let Err(e) = strom_gateway::serve(listener, gateway, std::future::pending()).await {
            tracing::warn!(error = %e, "gateway listener failed");
        }
    });
    Ok(())
}
