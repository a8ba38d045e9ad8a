//! Cluster mode (`cluster.metadata.url`, issue 11): this broker as one of many whose metadata
//! is in PostgreSQL (`strom-metadata-postgres`).
//!
//! - The metadata log is the PostgreSQL table, replayed at start and then followed (LISTEN/
//!   NOTIFY plus a catch-up read) into the same loader and image as the single node's.
//! - Every broker registers (its advertised listeners) and heartbeats every
//!   `broker.heartbeat.interval.ms`; a broker whose heartbeat is older than
//!   `broker.session.timeout.ms` is fenced.
//! - One broker at a time holds the controller lease ([`LeaseKeeper`]). Only it appends, and
//!   each append is fenced by the lease's epoch in the append's own transaction, so a stale
//!   controller's write is refused (NOT_CONTROLLER). Its loop fences lapsed brokers, writes
//!   the live brokers' registrations into the image and spreads partition leaders over them
//!   (`strom_metadata::controller::balance_leaders`).
//! - A broker that is not the controller forwards topic creation (CreateTopics and the
//!   auto-creation of Metadata and the group coordinator) to the controller over the Kafka
//!   protocol; the other metadata changes answer NOT_CONTROLLER there, and Kafka's clients
//!   send them to the controller named by Metadata.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use strom_metadata::log_client::MetadataLogClient;
use strom_metadata::metadata_log::MetadataLogError;
use strom_metadata::records::{BrokerEndpoint, MetadataRecord};
use strom_metadata_postgres::{
    BrokerRegistry, ControllerLease, ControllerLeases, LeaseKeeper, PgMetadataError, PgMetadataLog,
    PgMetadataStore,
};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::broker::{Broker, Membership};

/// A controller lease term is three heartbeat intervals at least and one session at most,
/// so a vanished controller is replaced about as fast as a vanished broker is fenced.
fn lease_ttl_ms(heartbeat_interval_ms: u64, session_timeout_ms: u64) -> i64 {
    let ttl = session_timeout_ms.max(heartbeat_interval_ms.saturating_mul(3));
    i64::try_from(ttl)
        .unwrap_or(strom_metadata_postgres::MAX_LEASE_TTL_MS)
        .min(strom_metadata_postgres::MAX_LEASE_TTL_MS)
}

/// How often the active controller looks at the registrations.
const CONTROLLER_TICK: Duration = Duration::from_millis(500);
/// How long a follower waits on one LISTEN before reading anyway.
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// This node's bid for the controller lease, shared by the log that fences appends with it.
pub struct Lease {
    keeper: Mutex<Option<LeaseKeeper>>,
}

impl Lease {
    pub fn current(&self) -> Option<ControllerLease> {
        self.keeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(LeaseKeeper::lease)
    }

    /// Stops bidding and releases the lease if held, so another broker takes over at once.
    fn release(&self) {
        let keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(k) = keeper {
            k.stop();
        }
    }
}

/// The metadata log as this broker's controller writes it: every append is fenced by the
/// lease this node holds now, and refused (as fenced: NOT_CONTROLLER) when it holds none.
pub struct LeasedLog {
    log: PgMetadataLog,
    lease: Arc<Lease>,
}

impl MetadataLogClient for LeasedLog {
    fn end_offset(&self) -> Result<i64, MetadataLogError> {
        self.log.end_offset()
    }

    fn append(
        &self,
        expected_offset: i64,
        records: &[MetadataRecord],
        timestamp_ms: i64,
    ) -> Result<i64, MetadataLogError> {
        let Some(lease) = self.lease.current() else {
            return Err(MetadataLogError::Fenced {
                epoch: -1,
                reason: "this broker is not the active controller".into(),
            });
        };
        self.log
            .for_controller(&lease)
            .append(expected_offset, records, timestamp_ms)
    }

    fn read(
        &self,
        from_offset: i64,
        max_records: usize,
    ) -> Result<Vec<(i64, MetadataRecord)>, MetadataLogError> {
        self.log.read(from_offset, max_records)
    }

    fn wait_for_more(&self, offset: i64, timeout: Duration) -> Result<i64, MetadataLogError> {
        self.log.wait_for_more(offset, timeout)
    }

    fn close(&self) -> Result<(), MetadataLogError> {
        self.log.close()
    }
}

/// This broker's membership of the cluster.
pub struct Cluster {
    store: PgMetadataStore,
    registry: BrokerRegistry,
    leases: ControllerLeases,
    lease: Arc<Lease>,
    node_id: i32,
    incarnation_id: Uuid,
    endpoints: Vec<BrokerEndpoint>,
    /// `broker.rack`, registered with every (re-)registration.
    rack: Option<String>,
    heartbeat_interval: Duration,
    session_timeout: Duration,
    /// The live unfenced brokers as last read (kept through a PostgreSQL outage).
    live: RwLock<Vec<i32>>,
    /// The active controller as last read; -1 when none is known.
    controller_id: AtomicI32,
    shutting_down: AtomicBool,
}

impl Membership for Cluster {
    fn live_brokers(&self) -> Vec<i32> {
        Cluster::live_brokers(self)
    }

    fn controller_id(&self) -> i32 {
        Cluster::controller_id(self)
    }

    fn is_controller(&self) -> bool {
        Cluster::is_controller(self)
    }
}

/// What [`join`] gives the start-up: the cluster, its id, this node's id, and the metadata
/// log (already replayed into `image`).
pub struct Joined {
    pub cluster: Arc<Cluster>,
    pub cluster_id: String,
    pub node_id: i32,
    pub log: Arc<dyn MetadataLogClient>,
    pub image: strom_metadata::MetadataImage,
}

/// Connects to the cluster's PostgreSQL, settles this node's id (configured, or allocated
/// and then kept in the data directory's `meta.properties`), registers, replays the
/// metadata log and starts bidding for the controller lease. Blocking: run it off the
/// async workers.
pub fn join(
    url: &str,
    configured_node_id: Option<i32>,
    stored_node_id: Option<i32>,
    endpoints: Vec<BrokerEndpoint>,
    heartbeat_interval_ms: u64,
    session_timeout_ms: u64,
) -> anyhow::Result<Joined> {
    join_in_rack(
        url,
        configured_node_id,
        stored_node_id,
        endpoints,
        None,
        heartbeat_interval_ms,
        session_timeout_ms,
    )
}

/// [`join`], registering `rack` (`broker.rack`) with the broker.
pub fn join_in_rack(
    url: &str,
    configured_node_id: Option<i32>,
    stored_node_id: Option<i32>,
    endpoints: Vec<BrokerEndpoint>,
    rack: Option<String>,
    heartbeat_interval_ms: u64,
    session_timeout_ms: u64,
) -> anyhow::Result<Joined> {
    use anyhow::Context;
    let store = PgMetadataStore::connect(url)
        .context("cannot reach the cluster's metadata (cluster.metadata.url)")?;
    let cluster_id = store
        .cluster_id(&crate::storage::new_cluster_id())
        .context("cannot read the cluster id")?;
    let session_ms = i64::try_from(session_timeout_ms).unwrap_or(i64::MAX);
    let registry = store.brokers(session_ms);
    let incarnation_id = Uuid::new_v4();
    let wanted = configured_node_id.or(stored_node_id);
    // A broker restarted within its old session (kill -9, then start) waits for that
    // session to lapse, as Kafka's DUPLICATE_BROKER_REGISTRATION retries do.
    let deadline = Instant::now() + Duration::from_millis(session_timeout_ms.saturating_mul(2));
    let registration = loop {
        let attempt = match (configured_node_id, stored_node_id) {
            (Some(id), _) => {
                registry.register(Some(id), incarnation_id, &endpoints, rack.as_deref())
            }
            (None, Some(id)) => {
                registry.register_again(id, incarnation_id, &endpoints, rack.as_deref())
            }
            (None, None) => registry.register(None, incarnation_id, &endpoints, rack.as_deref()),
        };
        match attempt {
            Err(PgMetadataError::DuplicateRegistration { node_id, .. })
                if Instant::now() < deadline =>
            {
                info!(node_id, "an earlier incarnation of this node id is still live; waiting for its session to lapse");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => break other.context("cannot register this broker")?,
        }
    };
    let node_id = registration.node_id;
    info!(
        node_id,
        %incarnation_id,
        allocated = wanted.is_none(),
        "registered with the cluster"
    );
    let log = store.log();
    let mut image = strom_metadata::MetadataImage::empty();
    loop {
        let records = log
            .read_records(
                image.offset + 1,
                strom_metadata::log_client::MAX_READ_RECORDS,
            )
            .context("cannot read the cluster's metadata log")?;
        if records.is_empty() {
            break;
        }
        for (offset, record) in &records {
            image
                .apply(*offset, record)
                .with_context(|| format!("metadata record {offset} does not apply"))?;
        }
    }
    let keeper = LeaseKeeper::start(
        &store,
        node_id,
        lease_ttl_ms(heartbeat_interval_ms, session_timeout_ms),
    )
    .context("cannot bid for the controller lease")?;
    let lease = Arc::new(Lease {
        keeper: Mutex::new(Some(keeper)),
    });
    let leases = store.leases();
    let controller_id = leases.current().ok().flatten().map_or(-1, |l| l.node_id);
    let live = registry
        .live()
        .map(|l| l.iter().map(|r| r.node_id).collect())
        .unwrap_or_else(|_| vec![node_id]);
    let cluster = Arc::new(Cluster {
        store,
        registry,
        leases,
        lease: lease.clone(),
        node_id,
        incarnation_id,
        endpoints,
        rack,
        heartbeat_interval: Duration::from_millis(heartbeat_interval_ms.max(1)),
        session_timeout: Duration::from_millis(session_timeout_ms.max(1)),
        live: RwLock::new(live),
        controller_id: AtomicI32::new(controller_id),
        shutting_down: AtomicBool::new(false),
    });
    Ok(Joined {
        cluster,
        cluster_id,
        node_id,
        log: Arc::new(LeasedLog { log, lease }),
        image,
    })
}

impl Cluster {
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The live unfenced brokers, as last read from PostgreSQL.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The active controller's id as last known (this node's when it holds the lease).
    pub fn controller_id(&self) -> i32 {
        if self.lease.current().is_some() {
            return self.node_id;
        }
        self.controller_id.load(Ordering::Acquire)
    }

    pub fn is_controller(&self) -> bool {
        self.lease.current().is_some()
    }

    fn set_live(&self, live: Vec<i32>) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = live;
    }

    /// Starts the heartbeat, the follower of the metadata log, and the controller's loop.
    pub fn start(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        stop: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(heartbeat_loop(self.clone(), broker.clone(), stop.clone())),
            tokio::spawn(follow_loop(self.store.log(), broker.clone(), stop.clone())),
            tokio::spawn(controller_loop(self.clone(), broker.clone(), stop)),
        ]
    }

    /// Kafka's controlled shutdown: this broker fences its own registration (so the
    /// controller moves its leaderships away, whichever broker that is), waits until the
    /// image shows it leads nothing or `timeout` passes, then gives up the controller lease.
    pub async fn controlled_shutdown(self: &Arc<Self>, broker: &Arc<Broker>, timeout: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        let me = self.clone();
        let fenced =
            tokio::task::spawn_blocking(move || me.registry.fence(me.node_id, me.incarnation_id))
                .await;
        match fenced {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "controlled shutdown: cannot fence this broker's registration")
            }
            Err(e) => warn!(error = %e, "controlled shutdown: the fence did not run"),
        }
        let started = Instant::now();
        loop {
            // What the controller committed since, including what this broker had not seen.
            if let Err(e) = broker.controller().catch_up().await {
                warn!(error = %e, "controlled shutdown: cannot read the metadata log");
            }
            let leading = leading(&broker.image(), self.node_id);
            if leading == 0 {
                info!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: this broker leads no partition"
                );
                break;
            }
            if started.elapsed() >= timeout {
                warn!(
                    leading,
                    timeout_ms = timeout.as_millis() as u64,
                    "controlled shutdown: leaderships did not move in time"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let lease = self.lease.clone();
        let _ = tokio::task::spawn_blocking(move || lease.release()).await;
    }
}

fn leading(image: &strom_metadata::MetadataImage, node_id: i32) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .filter(|p| p.leader == node_id)
        .count()
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Heartbeats, and reads who is live and who is the controller. A heartbeat refused (the
/// session lapsed, e.g. through a PostgreSQL outage, or the controller fenced this broker)
/// registers this incarnation again, unless it is shutting down.
async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let c = cluster.clone();
        let beat = tokio::task::spawn_blocking(move || {
            let beat = match c.registry.heartbeat(c.node_id, c.incarnation_id) {
                Err(PgMetadataError::NotRegistered { .. })
                    if !c.shutting_down.load(Ordering::Acquire) =>
                {
                    warn!(
                        node_id = c.node_id,
                        "this broker's registration lapsed or was fenced; registering again"
                    );
                    c.registry
                        .register_again(
                            c.node_id,
                            c.incarnation_id,
                            &c.endpoints,
                            c.rack.as_deref(),
                        )
                        .map(|_| 0)
                }
                other => other,
            };
            let live = c.registry.live();
            let controller = c.leases.current();
            (beat, live, controller)
        })
        .await;
        match beat {
            Ok((beat, live, controller)) => {
                if let Err(e) = beat {
                    if !cluster.shutting_down.load(Ordering::Acquire) {
                        warn!(error = %e, "heartbeat failed");
                    }
                }
                if let Ok(live) = live {
                    let ids: Vec<i32> = live.iter().map(|r| r.node_id).collect();
                    broker.controller().set_live_brokers(ids.clone());
                    cluster.set_live(ids);
                }
                if let Ok(current) = controller {
                    cluster
                        .controller_id
                        .store(current.map_or(-1, |l| l.node_id), Ordering::Release);
                }
            }
            Err(e) => warn!(error = %e, "heartbeat task failed"),
        }
        if sleep_or_stop(cluster.heartbeat_interval, &mut stop).await {
            return;
        }
    }
}

/// Follows the metadata log: waits on LISTEN/NOTIFY (with a timed catch-up read), then
/// publishes what other brokers' controller committed.
async fn follow_loop(log: PgMetadataLog, broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        let next = broker.image().offset + 1;
        let l = log.clone();
        let waited =
            tokio::task::spawn_blocking(move || l.wait_for_end_past(next, FOLLOW_WAIT)).await;
        let failed = match waited {
            Ok(Ok(end)) if end > next => false,
            Ok(Ok(_)) => {
                // Nothing new, but an end below what the image holds cannot happen; read
                // anyway now and then so a missed notification costs at most one wait.
                false
            }
            Ok(Err(e)) => {
                warn!(error = %e, "waiting on the metadata log failed; retrying");
                true
            }
            Err(e) => {
                warn!(error = %e, "the metadata follower task failed");
                true
            }
        };
        if *stop.borrow() {
            return;
        }
        if !failed {
            match broker.controller().catch_up().await {
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot catch up with the metadata log"),
            }
        }
        if failed && sleep_or_stop(Duration::from_millis(500), &mut stop).await {
            return;
        }
    }
}

/// The active controller's duties, while this node holds the lease: fence brokers whose
/// heartbeats lapsed, record the live brokers' registrations, and spread leaders over them.
async fn controller_loop(
    cluster: Arc<Cluster>,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
) {
    let mut held_epoch: Option<i64> = None;
    let mut term_started = Instant::now();
    loop {
        if sleep_or_stop(CONTROLLER_TICK, &mut stop).await {
            return;
        }
        let Some(lease) = cluster.lease.current() else {
            if held_epoch.take().is_some() {
                info!("this broker is no longer the active controller");
            }
            continue;
        };
        if held_epoch != Some(lease.epoch) {
            info!(epoch = lease.epoch, "this broker is the active controller");
            // A new term starts from everything the last controller committed.
            if let Err(e) = broker.controller().catch_up().await {
                warn!(error = %e, "the new controller cannot read the metadata log yet");
                continue;
            }
            held_epoch = Some(lease.epoch);
            term_started = Instant::now();
        }
        // A new term gives every broker one session before it fences or moves anything, as
        // Kafka's new controller does: after a PostgreSQL outage every heartbeat looks old,
        // and leaderships must not churn while the brokers come back.
        let settled = term_started.elapsed() >= cluster.session_timeout;
        let c = cluster.clone();
        let read = tokio::task::spawn_blocking(move || {
            let fenced = if settled {
                c.registry.fence_expired()?
            } else {
                Vec::new()
            };
            let live = if settled {
                c.registry.live()?
            } else {
                // Within the grace: every broker not fenced (a controlled shutdown fences
                // itself, so its leaderships still move at once).
                let mut all = c.registry.all()?;
                all.retain(|r| !r.fenced);
                all
            };
            Ok::<_, PgMetadataError>((fenced, live))
        })
        .await;
        let (fenced, live) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(error = %e, "the controller cannot read the registrations");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "the controller's registration task failed");
                continue;
            }
        };
        if !fenced.is_empty() {
            info!(brokers = ?fenced, "fenced brokers whose heartbeats lapsed");
        }
        let ids: Vec<i32> = live.iter().map(|r| r.node_id).collect();
        broker.controller().set_live_brokers(ids.clone());
        cluster.set_live(ids.clone());
        let planned = broker
            .controller()
            .commit_planned(|image| {
                let mut records: Vec<MetadataRecord> = live
                    .iter()
                    .filter(|r| {
                        image
                            .brokers
                            .get(&r.node_id)
                            .is_none_or(|b| b.endpoints != r.endpoints || b.rack != r.rack)
                    })
                    .map(|r| r.record())
                    .collect();
                records.extend(strom_metadata::controller::balance_leaders(image, &ids));
                records
            })
            .await;
        match planned {
            Ok(0) => {}
            Ok(n) => {
                info!(records = n, live = ?ids, "the controller moved leaderships or registered brokers")
            }
            Err(e) => warn!(error = %e, "the controller's change was not committed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proto_kafka::ResponseError;
    use strom_metadata::controller::{ControllerConfig, SystemClock, TopicRequest};
    use strom_metadata::{Controller, MetadataLoader};
    use strom_metadata_postgres::testing::TestPostgres;

    use super::*;
    use crate::config::{BrokerConfig, RawConfig};
    use crate::config_validator::BrokerConfigValidator;

    fn endpoints(port: u16) -> Vec<BrokerEndpoint> {
        vec![BrokerEndpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
        }]
    }

    fn controller_on(joined: &Joined) -> Controller {
        let config = BrokerConfig::from_raw(RawConfig::defaults()).unwrap();
        Controller::new(
            ControllerConfig {
                node_id: joined.node_id,
                num_partitions: 2,
                default_replication_factor: 1,
                delete_topic_enable: true,
                max_partitions: 100,
                files_per_partition: 1,
                internal_topics: vec![],
            },
            Arc::new(BrokerConfigValidator::new(&config)),
            Arc::new(SystemClock),
            joined.log.clone(),
            Arc::new(MetadataLoader::new(joined.image.clone())),
        )
    }

    fn topic(name: &str) -> TopicRequest {
        TopicRequest {
            name: name.into(),
            num_partitions: 2,
            replication_factor: -1,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Only the lease holder's controller writes; the other answers NOT_CONTROLLER and
    /// writes nothing, and when the lease moves the roles swap (the old holder's appends
    /// are fenced by the epoch in PostgreSQL).
    #[test]
    fn only_the_lease_holder_appends() {
        let pg = TestPostgres::shared();
        let url = pg.url(&pg.create_database());
        let a = join(&url, None, None, endpoints(1), 100, 1000).unwrap();
        wait_until("the first broker holds the lease", || {
            a.cluster.is_controller()
        });
        let b = join(&url, None, None, endpoints(2), 100, 1000).unwrap();
        assert_eq!(
            (a.node_id, b.node_id),
            (1001, 1002),
            "ids allocated from 1001"
        );
        assert_eq!(a.cluster_id, b.cluster_id, "one cluster id");
        assert!(!b.cluster.is_controller());
        assert_eq!(b.cluster.controller_id(), 1001);

        let rt = tokio::runtime::Runtime::new().unwrap();
        let (ca, cb) = (controller_on(&a), controller_on(&b));
        let refused = rt.block_on(cb.create_topics(vec![topic("t")], false));
        let code = refused[0].as_ref().err().map(|e| e.code);
        assert_eq!(code, Some(ResponseError::NotController.code()));
        assert_eq!(a.log.end_offset().unwrap(), 0, "nothing was written");
        let made = rt.block_on(ca.create_topics(vec![topic("t")], false));
        assert!(made[0].is_ok(), "{made:?}");
        let end = a.log.end_offset().unwrap();
        assert!(end > 0);

        // The lease moves: a gives it up, b takes it and catches up; a is fenced.
        a.cluster.lease.release();
        wait_until("the second broker holds the lease", || {
            b.cluster.is_controller()
        });
        rt.block_on(cb.catch_up()).unwrap();
        assert!(cb.image().topic("t").is_some());
        let refused = rt.block_on(ca.create_topics(vec![topic("u")], false));
        let code = refused[0].as_ref().err().map(|e| e.code);
        assert_eq!(code, Some(ResponseError::NotController.code()));
        assert_eq!(
            a.log.end_offset().unwrap(),
            end,
            "the old controller wrote nothing"
        );
        let made = rt.block_on(cb.create_topics(vec![topic("u")], false));
        assert!(made[0].is_ok(), "{made:?}");
        drop(rt);
    }

    /// An allocated id is kept: the same broker (its id from meta.properties) registers
    /// under it again once its earlier session lapsed, and a new broker gets the next id.
    #[test]
    fn an_allocated_node_id_is_kept_and_never_shared_while_live() {
        let pg = TestPostgres::shared();
        let url = pg.url(&pg.create_database());
        let first = join(&url, None, None, endpoints(1), 100, 500).unwrap();
        assert_eq!(first.node_id, 1001);
        let other = join(&url, None, None, endpoints(2), 100, 500).unwrap();
        assert_eq!(other.node_id, 1002, "a live id is not handed out again");
        // A restart of the first: a new incarnation under the kept id. Its old session is
        // still live (nothing heartbeats in this test, so it lapses after 500 ms): the join
        // waits for that rather than sharing the id.
        let started = Instant::now();
        let again = join(&url, None, Some(first.node_id), endpoints(1), 100, 500).unwrap();
        assert_eq!(again.node_id, 1001);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }

    fn leaders_of(broker: &Broker, topic: &str) -> Vec<(i32, i32)> {
        broker.image().topic(topic).map_or(Vec::new(), |t| {
            t.partitions
                .values()
                .map(|p| (p.leader, p.leader_epoch))
                .collect()
        })
    }

    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The active controller's loop on a real broker and a real PostgreSQL, with a second
    /// broker played by hand (its registration and heartbeats): leaders spread over both;
    /// when its heartbeats stop it is fenced and its leaderships move with a bumped epoch;
    /// when it comes back it takes its share again; its controlled shutdown (fencing its own
    /// registration) moves them at once, without waiting for the session.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_controller_moves_leaders_on_fence_unfence_and_controlled_shutdown() {
        let (pg, url) = tokio::task::spawn_blocking(|| {
            let pg = TestPostgres::shared();
            let url = pg.url(&pg.create_database());
            (pg, url)
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let u = url.clone();
        let joined =
            tokio::task::spawn_blocking(move || join(&u, None, None, endpoints(1), 100, 1000))
                .await
                .unwrap()
                .unwrap();
        let mut raw = RawConfig::defaults();
        raw.set("log.dirs", &dir.path().display().to_string(), "test")
            .unwrap();
        let mut config = BrokerConfig::from_raw(raw).unwrap();
        config.node_id = joined.node_id;
        let cluster = joined.cluster.clone();
        let broker = Broker::with_log(
            config,
            joined.cluster_id.clone(),
            joined.log.clone(),
            joined.image.clone(),
            crate::replica_manager::ReplicaManager::new(joined.node_id, dir.path()),
            crate::wiring::services,
        );
        broker.set_cluster(cluster.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = cluster.start(&broker, stop_rx);
        eventually("this broker is the controller", || cluster.is_controller()).await;

        // The second broker, by hand.
        let u = url.clone();
        let (other, other_id, incarnation) = tokio::task::spawn_blocking(move || {
            let store = PgMetadataStore::connect(&u).unwrap();
            let registry = store.brokers(1000);
            let incarnation = Uuid::new_v4();
            let r = registry
                .register(None, incarnation, &endpoints(2), None)
                .unwrap();
            (registry, r.node_id, incarnation)
        })
        .await
        .unwrap();
        let other = Arc::new(other);
        let beating = Arc::new(AtomicBool::new(true));
        let beat = {
            let (other, beating) = (other.clone(), beating.clone());
            std::thread::spawn(move || {
                while Arc::strong_count(&beating) > 1 {
                    if beating.load(Ordering::Acquire)
                        && other.heartbeat(other_id, incarnation).is_err()
                    {
                        let _ = other.register_again(other_id, incarnation, &endpoints(2), None);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let me = joined.node_id;
        eventually("both brokers are live", || {
            cluster.live_brokers() == vec![me, other_id]
        })
        .await;
        let created = crate::controller::create_topics(&broker, vec![topic("t")], false).await;
        assert!(created[0].is_ok(), "{created:?}");
        let both = |b: &Broker| {
            let l = leaders_of(b, "t");
            l.iter().any(|(n, _)| *n == me) && l.iter().any(|(n, _)| *n == other_id)
        };
        eventually("leaders spread over both", || both(&broker)).await;
        let before = leaders_of(&broker, "t");

        // Heartbeats stop: fenced after the session, its partition moves, epoch + 1.
        beating.store(false, Ordering::Release);
        eventually("the silent broker's leaderships moved", || {
            leaders_of(&broker, "t").iter().all(|(n, _)| *n == me)
        })
        .await;
        let moved = leaders_of(&broker, "t");
        for ((l0, e0), (l1, e1)) in before.iter().zip(&moved) {
            let want = if l0 == l1 { *e0 } else { e0 + 1 };
            assert_eq!(*e1, want, "{before:?} -> {moved:?}");
        }
        assert!(!cluster.live_brokers().contains(&other_id));
        let image = broker.image();
        let t = image.topic("t").unwrap();
        assert!(t
            .partitions
            .values()
            .all(|p| p.replicas == vec![me] && p.isr == vec![me]));

        // Back: registers again, unfenced, takes its share at once.
        beating.store(true, Ordering::Release);
        eventually("the returning broker leads again", || both(&broker)).await;
        let back = leaders_of(&broker, "t");
        assert!(back
            .iter()
            .zip(&moved)
            .any(|((l1, e1), (l0, e0))| l1 != l0 && *e1 == e0 + 1));

        // Its controlled shutdown: it fences itself and stops; the move does not wait for
        // the session to lapse.
        beating.store(false, Ordering::Release);
        let o = other.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || o.fence(other_id, incarnation).unwrap())
            .await
            .unwrap();
        eventually("the leaving broker leads nothing", || {
            leaders_of(&broker, "t").iter().all(|(n, _)| *n == me)
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );

        drop(beating);
        let _ = beat.join();
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let b = broker.clone();
        drop(broker);
        tokio::task::spawn_blocking(move || drop((b, pg)))
            .await
            .unwrap();
    }
}
