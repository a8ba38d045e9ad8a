//! `strom gateway`: the HTTP and WebSocket gateway to topics, standalone in
//! front of any Kafka-compatible cluster; and its start inside `strom serve`
//! when `gateway.listener` is set.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strom_broker::config::{parse_i64, BrokerConfig, ConfigError, ConfigSource};
use strom_gateway::GatewayConfig;
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
    eprintln!(
        "strom gateway: listening on http://{addr}, cluster {}",
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
