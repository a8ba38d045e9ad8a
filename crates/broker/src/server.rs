//! Start-up and shutdown of a broker: lock and format the data directory, replay the metadata
//! log, recover the partition logs, bind the listeners, serve until told to stop, then drain
//! connections, flush and close everything.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use strom_log::DirLock;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metadata::log_client::MetadataLogClient;
use crate::metadata::metadata_log::{now_ms, MetadataLog};
use crate::metadata::records::BrokerEndpoint;
use crate::network::connection;
use crate::network::security::{self, AuthFailures, LateScramStore, ListenerSecurity};
use crate::replica_manager::ReplicaManager;
use crate::storage;
use strom_security::auth_failures::FailedAuthConfig;
use strom_security::sasl::ScramCredentialStore;

/// Reads `meta.properties` (Kafka's record of which cluster and node a directory belongs to),
/// writing it on first start. Returns the cluster id. A missing file is only a first start if
/// the directory holds no data; a damaged one is never replaced silently.
fn format_or_check(dir: &Path, config: &BrokerConfig) -> anyhow::Result<String> {
    let path = storage::meta_properties_path(dir);
    let recover = format!(
        "restore it, or run `strom storage recover-metadata --data-dir {} [--cluster-id ID]` to write a new one (the old file is kept aside)",
        dir.display()
    );
    match storage::read_meta_properties(dir)
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        storage::MetaState::Valid(meta) => {
            if meta.node_id != config.node_id {
                bail!(
                    "{} belongs to node.id {}, but this broker is node.id {}",
                    path.display(),
                    meta.node_id,
                    config.node_id
                );
            }
            if let Some(wanted) = &config.cluster_id {
                if *wanted != meta.cluster_id {
                    bail!(
                        "{} belongs to cluster {}, not cluster.id {wanted}",
                        path.display(),
                        meta.cluster_id
                    );
                }
            }
            return Ok(meta.cluster_id);
        }
        storage::MetaState::Invalid(reason) => {
            bail!(
                "{} is damaged ({reason}); refusing to start: {recover}",
                path.display()
            )
        }
        storage::MetaState::Missing => {
            let partitions = storage::partition_dirs(dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .len();
            if partitions > 0 || storage::metadata_log_has_data(dir) {
                bail!(
                    "{} is missing but {} holds data ({partitions} partition directories); refusing to start with a new cluster id: {recover}",
                    path.display(),
                    dir.display()
                );
            }
        }
    }
    let cluster = config
        .cluster_id
        .clone()
        .unwrap_or_else(storage::new_cluster_id);
    storage::write_meta_properties(
        dir,
        &storage::MetaProperties {
            cluster_id: cluster.clone(),
            node_id: config.node_id,
        },
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(cluster)
}

type BoundListener = (Arc<str>, Arc<ListenerSecurity>, TcpListener);

async fn bind(
    config: &mut BrokerConfig,
    scram: &Arc<LateScramStore>,
) -> anyhow::Result<Vec<BoundListener>> {
    // Every listener's security is checked before anything binds: a bad certificate or SASL
    // setting is a start-up error that names the listener.
    let failures = Arc::new(AuthFailures::new(FailedAuthConfig {
        failed_authentication_delay_ms: crate::config::parse_i64(
            "connection.failed.authentication.delay.ms",
            config
                .raw
                .get("connection.failed.authentication.delay.ms")
                .unwrap_or("100"),
            0,
            i32::MAX as i64,
        )? as u64,
        ..FailedAuthConfig::default()
    }));
    let mut securities = Vec::new();
    for l in &config.listeners {
        let scram: Arc<dyn ScramCredentialStore> = scram.clone();
        securities.push(Arc::new(security::build(
            config,
            l,
            &failures,
            Some(scram),
        )?));
    }
    // An https:// JWKS is fetched once before any client is served.
    for (l, s) in config.listeners.iter().zip(&securities) {
        if let Some(jwks) = s.sasl.as_ref().and_then(|s| s.jwks()) {
            jwks.start().await.with_context(|| {
                format!("listener {}: sasl.oauthbearer.jwks.endpoint.url", l.name)
            })?;
        }
    }
    let mut out = Vec::new();
    for (l, security) in config.listeners.iter().zip(securities) {
        let host = if l.host.is_empty() {
            "0.0.0.0"
        } else {
            l.host.as_str()
        };
        let buffers = crate::network::listener::SocketBuffers::from_config(config);
        let listener = crate::network::listener::bind(host, l.port, buffers)
            .await
            .with_context(|| {
                format!("cannot listen on {}:{} (listener {})", host, l.port, l.name)
            })?;
        let bound = listener.local_addr()?;
        // An ephemeral port (0) is advertised as the port actually bound.
        for a in config.advertised_listeners.iter_mut() {
            if a.name == l.name && a.port == 0 {
                a.port = bound.port();
            }
        }
        out.push((Arc::from(l.name.as_str()), security, listener));
    }
    Ok(out)
}

pub async fn run(config: BrokerConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with(config, shutdown, |_| {}).await
}

/// [`run`], handing `on_ready` the broker once its image, SCRAM credentials and authorizer are
/// in place and before any listener serves (the in-process HTTP gateway authenticates and
/// authorizes its callers with them).
pub async fn run_with(
    mut config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(&Arc<Broker>),
) -> anyhow::Result<()> {
    let started = Instant::now();
    // Bound before the data directory is touched: a second instance whose port is taken must
    // fail without formatting (or locking) a directory. Connections that arrive while the logs
    // recover wait in the listen backlog until the accept loops start.
    let scram = Arc::new(LateScramStore::default());
    let listeners = bind(&mut config, &scram).await?;
    let admin_security = crate::admin_http::AdminHttpSecurity::from_config(&config)?;
    if config.admin_http_listener.is_some() {
        admin_security
            .start()
            .await
            .context("admin.http.auth.oauthbearer.enable")?;
    }
    let admin_listener = match config.admin_http_listener {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on admin.http.listener {addr}"))?,
        ),
        None => None,
    };
    let dir = config.log_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create log.dirs {}", dir.display()))?;
    let lock = DirLock::acquire(&dir)?;
    let joined = match config.cluster_metadata_url.clone() {
        Some(url) => Some(join_cluster(&mut config, &dir, url).await?),
        None => None,
    };
    let cluster_id = format_or_check(&dir, &config)?;
    // Without an admin listener nothing can scrape: no recorder, so recording is a no-op.
    let metrics = config
        .admin_http_listener
        .and_then(|_| crate::metrics::install());
    crate::metrics::register();

    let (metadata_log, image, cluster): (Arc<dyn MetadataLogClient>, _, _) = match joined {
        Some(j) => (j.log, j.image, Some(j.cluster)),
        None => {
            let (log, image) = MetadataLog::open(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "the metadata log is damaged ({e}); refusing to start rather than forget topics. \
                     Run `strom storage recover-metadata --data-dir {}` to rebuild it from the partition \
                     directories (the damaged log is kept aside)",
                    dir.display()
                )
            })?;
            (Arc::new(log), image, None)
        }
    };
    storage::check_metadata_covers_data(&dir, &image)?;
    let replicas = ReplicaManager::new(config.node_id, &dir).with_static_config(config.raw.clone());
    let replicas = match start_shared_storage(&config).await? {
        Some(shared) => replicas.with_shared_storage(shared),
        None => replicas,
    };
    let (raw_with_dynamic, ignored) = config.raw.with_dynamic_checked(
        &image.broker_configs(""),
        &image.broker_configs(&config.node_id.to_string()),
    );
    // Kafka's behaviour for dynamic configs: one that cannot apply is reported and skipped, the
    // static or default value is used, and the broker starts.
    for i in &ignored {
        let resource = if i.per_broker {
            "this broker"
        } else {
            "every broker"
        };
        warn!(config = %i.name, value = %i.value, resource, reason = %i.reason, "ignoring a persisted dynamic broker config; the static or default value is used");
    }
    replicas.apply_image(&image, &raw_with_dynamic).context(
        "cannot open partition logs (nothing was truncated or deleted: restore the damaged \
             files, or move that partition directory aside to start without it)",
    )?;
    replicas.remove_orphans(&image);
    crate::metrics::partitions(image.partition_count());
    let recovered_ms = started.elapsed().as_millis();

    let broker = Broker::with_log(
        config,
        cluster_id.clone(),
        metadata_log,
        image,
        replicas,
        crate::wiring::services,
    );
    // SCRAM credentials are the metadata image's (AlterUserScramCredentials), read at each
    // authentication.
    scram.set(Arc::new(strom_metadata::ImageScramCredentialStore::new(
        broker.loader.clone(),
    )));
    on_ready(&broker);
    match &cluster {
        // The active controller writes a cluster broker's registration record.
        Some(c) => broker.set_cluster(c.clone()),
        None => register_broker(&broker).await?,
    }
    if let Err(e) = broker.groups.on_image(&broker.image()) {
        // In shared storage an outage is retried (coordinator_load_retries); a local log
        // that cannot be read is a start-up error.
        if broker.replicas.shared_storage().is_none() {
            return Err(e).context("cannot load consumer groups from __consumer_offsets");
        }
    }
    // Transactions left prepared by a crash get their markers from here on.
    broker.txns.follow_image(&broker.image());

    let (stop_tx, stop_rx) = watch::channel(false);
    let max_connections = broker.config.max_connections;
    let connections = Arc::new(Semaphore::new(max_connections));
    let mut tasks = Vec::new();
    if let Some(c) = &cluster {
        tasks.extend(c.start(&broker, stop_rx.clone()));
        if broker.replicas.shared_storage().is_some() {
            tasks.push(tokio::spawn(coordinator_load_retries(
                broker.clone(),
                stop_rx.clone(),
            )));
        }
        // As Kafka's broker waits to be caught up and unfenced: clients are served once the
        // image lists this broker (the controller writes its registration), so no Metadata
        // answer leaves out the broker that gives it.
        let wait = Duration::from_millis(broker.config.broker_session_timeout_ms.saturating_mul(2));
        let started = Instant::now();
        while !broker.image().brokers.contains_key(&broker.node_id()) {
            if started.elapsed() >= wait {
                warn!(waited_ms = wait.as_millis() as u64, "the controller has not recorded this broker's registration yet; serving anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (name, security, listener) in listeners {
        let addr = listener.local_addr()?;
        info!(listener = %name, %addr, protocol = security.protocol.name(), "listening");
        tasks.push(tokio::spawn(accept_loop(
            broker.clone(),
            name,
            security,
            listener,
            connections.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(l) = admin_listener {
        let addr = l.local_addr()?;
        let scheme = if admin_security.uses_tls() {
            "https"
        } else {
            "http"
        };
        info!(%addr, scheme, "admin http listening");
        let mut rx = stop_rx.clone();
        let b = broker.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.changed().await;
            };
            if let Err(e) = crate::admin_http::serve(l, b, metrics, admin_security, stop).await {
                warn!(error = %e, "admin http listener failed");
            }
        }));
    }
    tasks.push(tokio::spawn(upkeep_loop(broker.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(
        broker.groups.clone().run_timers(stop_rx.clone()),
    ));
    {
        let mut stop = stop_rx.clone();
        let timers = broker.txns.clone().run_timers();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = timers => {}
                _ = stop.changed() => {}
            }
        }));
    }
    broker.set_ready(true);
    info!(
        node_id = broker.node_id(),
        cluster_id = %cluster_id,
        partitions = broker.image().partition_count(),
        recovery_ms = recovered_ms as u64,
        startup_ms = started.elapsed().as_millis() as u64,
        "strom broker ready"
    );

    shutdown.await;
    info!("shutting down: no new connections, finishing in-flight requests");
    broker.set_ready(false);
    if let Some(c) = &cluster {
        // Leaderships move before the listeners close, so clients find the new leaders.
        let timeout = Duration::from_millis(broker.config.shutdown_timeout_ms);
        c.controlled_shutdown(&broker, timeout).await;
    }
    let _ = stop_tx.send(true);
    // Waiting JoinGroups would otherwise hold their connections open through the drain.
    broker.groups.shutdown();
    let drain = Duration::from_millis(broker.config.shutdown_timeout_ms);
    let all = connections
        .clone()
        .acquire_many_owned(max_connections as u32);
    if tokio::time::timeout(drain, all).await.is_err() {
        warn!(
            timeout_ms = drain.as_millis() as u64,
            "connections still open after shutdown.timeout.ms; closing them"
        );
    }
    for t in tasks {
        t.abort();
    }
    broker.replicas.shutdown().await;
    broker.close_metadata().await;
    drop(lock);
    info!("shutdown complete");
    Ok(())
}

/// Joins the cluster of `cluster.metadata.url`: settles `config.node_id` (configured, or
/// kept in `meta.properties`, or allocated) and `config.cluster_id` (the cluster's).
async fn join_cluster(
    config: &mut BrokerConfig,
    dir: &std::path::Path,
    url: String,
) -> anyhow::Result<crate::cluster::Joined> {
    let stored = match storage::read_meta_properties(dir) {
        Ok(storage::MetaState::Valid(meta)) => Some(meta.node_id),
        _ => None,
    };
    let configured = config.node_id_configured.then_some(config.node_id);
    let endpoints = advertised_endpoints(config);
    let rack = config.broker_rack.clone();
    let (heartbeat_ms, session_ms) = (
        config.broker_heartbeat_interval_ms,
        config.broker_session_timeout_ms,
    );
    let joined = tokio::task::spawn_blocking(move || {
        crate::cluster::join_in_rack(
            &url,
            configured,
            stored,
            endpoints,
            rack,
            heartbeat_ms,
            session_ms,
        )
    })
    .await
    .context("the cluster join task failed")??;
    config.node_id = joined.node_id;
    if config.cluster_id.is_none() {
        config.cluster_id = Some(joined.cluster_id.clone());
    }
    Ok(joined)
}

fn advertised_endpoints(config: &BrokerConfig) -> Vec<BrokerEndpoint> {
    config
        .advertised_listeners
        .iter()
        .map(|e| BrokerEndpoint {
            name: e.name.clone(),
            host: e.host.clone(),
            port: e.port,
        })
        .collect()
}

/// Records this broker's advertised endpoints in the metadata log when they change, so the
/// image (and later, other brokers) know how to reach it.
pub(crate) async fn register_broker(broker: &Arc<Broker>) -> anyhow::Result<()> {
    let endpoints: Vec<BrokerEndpoint> = broker
        .config
        .advertised_listeners
        .iter()
        .map(|e| BrokerEndpoint {
            name: e.name.clone(),
            host: e.host.clone(),
            port: e.port,
        })
        .collect();
    let current = broker.image();
    if current.brokers.get(&broker.node_id()).map(|b| &b.endpoints) == Some(&endpoints) {
        return Ok(());
    }
    broker
        .controller()
        .register_broker(broker.node_id(), endpoints, None)
        .await
        .context("cannot register the broker in the metadata log")?;
    Ok(())
}

async fn accept_loop(
    broker: Arc<Broker>,
    name: Arc<str>,
    security: Arc<ListenerSecurity>,
    listener: TcpListener,
    connections: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let b = broker.clone();
                let listener_name = name.clone();
                let rx = stop.clone();
                let security = security.clone();
                tokio::spawn(async move {
                    connection::serve_secured(b, stream, listener_name, security, peer, rx).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Periodic work: time-based flushes, retention, compaction, and the log size gauge.
/// Loads again, every second, the coordinators' partitions whose load from shared storage
/// failed (PostgreSQL or the object store away): otherwise they would wait for the next
/// image, answering NOT_COORDINATOR meanwhile.
async fn coordinator_load_retries(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let image = broker.image();
        // Failures are logged by the coordinator; the next round tries again.
        let _ = broker.groups.retry_loads(&image);
        broker.txns.follow_image(&image);
    }
}

async fn upkeep_loop(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let flush_every = Duration::from_millis(broker.config.log_flush_scheduler_interval_ms);
    let retention_every = Duration::from_millis(broker.config.log_retention_check_interval_ms);
    let cleaner_every = Duration::from_millis(broker.config.log_cleaner_backoff_ms);
    let producer_expiry_every =
        Duration::from_millis(broker.config.producer_id_expiration_check_interval_ms);
    let tick = flush_every.min(cleaner_every).min(producer_expiry_every);
    let mut last_retention = Instant::now();
    let mut last_producer_expiry = Instant::now();
    let mut last_cleaning = Instant::now();
    let mut last_flush_ms: std::collections::HashMap<strom_log::TopicPartition, i64> =
        Default::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let mut total = 0u64;
        for p in broker.replicas.all() {
            if let Some(flush_ms) = p.config().flush_ms {
                let last = last_flush_ms
                    .entry(p.topic_partition.clone())
                    .or_insert(now);
                if now - *last >= flush_ms {
                    *last = now;
                    if let Err(e) = p.flush().await {
                        warn!(partition = %p.topic_partition, error = %e, "scheduled flush failed");
                    }
                }
            }
            total += p.size_bytes().unwrap_or(0);
        }
        crate::metrics::log_size(total);
        if last_retention.elapsed() >= retention_every {
            last_retention = Instant::now();
            for p in broker.replicas.all() {
                match p.with_log(|log| log.enforce_retention(now)) {
                    Ok(Ok(n)) if n > 0 => {
                        crate::metrics::retention_deleted(n);
                        info!(partition = %p.topic_partition, segments = n, "retention deleted segments")
                    }
                    Ok(Err(e)) => {
                        warn!(partition = %p.topic_partition, error = %e, "retention failed")
                    }
                    _ => {}
                }
            }
        }
        if last_producer_expiry.elapsed() >= producer_expiry_every {
            last_producer_expiry = Instant::now();
            let expiration_ms = broker.config.producer_id_expiration_ms;
            for p in broker.replicas.all() {
                if let Ok(n) = p.with_log(|log| log.remove_expired_producers(now, expiration_ms)) {
                    if n > 0 {
                        info!(partition = %p.topic_partition, producers = n, "expired producer ids");
                    }
                }
            }
        }
        if broker.config.log_cleaner_enable && last_cleaning.elapsed() >= cleaner_every {
            last_cleaning = Instant::now();
            for p in broker.replicas.all() {
                match p.compact(now_ms()).await {
                    Ok(Some((replaced, stats))) => {
                        crate::metrics::compacted(
                            stats.bytes_read.saturating_sub(stats.bytes_written),
                            stats.records_removed + stats.tombstones_removed,
                        );
                        info!(
                            partition = %p.topic_partition,
                            segments_read = stats.segments_read,
                            segments_replaced = replaced,
                            records_removed = stats.records_removed,
                            tombstones_removed = stats.tombstones_removed,
                            bytes_before = stats.bytes_read,
                            bytes_written = stats.bytes_written,
                            "compacted"
                        )
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(partition = %p.topic_partition, error = %e, "compaction failed")
                    }
                }
                if *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Cluster mode with `object.store.url`: the shared storage topics' partitions live on, its
/// sequencer the cluster's PostgreSQL (the URL is never logged).
async fn start_shared_storage(
    config: &BrokerConfig,
) -> anyhow::Result<Option<Arc<strom_shared_storage::SharedStorage>>> {
    let (Some(pg_url), Some(_)) = (&config.cluster_metadata_url, &config.object_store_url) else {
        return Ok(None);
    };
    let Some(store) = crate::config::object_store(&config.raw)? else {
        return Ok(None);
    };
    let shared = strom_shared_storage::SharedStorage::start(pg_url, store, config.node_id)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start shared storage: {e}"))?;
    Ok(Some(Arc::new(shared)))
}
