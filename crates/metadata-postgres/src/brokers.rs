//! Broker registrations: which brokers are alive, by their heartbeats, on PostgreSQL's clock.
//! The image learns of a broker from its `RegisterBroker` metadata record (the controller
//! writes it, see [`BrokerRegistration::record`]); this table is the liveness.
//!
//! A broker is live while it is not fenced and its last heartbeat is within the session
//! timeout (Kafka's `broker.session.timeout.ms`). A broker that lapsed, or that was fenced,
//! must register again (a new incarnation); its id is free to take over once it is not live,
//! and an id is never handed to a second broker while the first is live.

use postgres::Transaction;
use strom_metadata::records::{BrokerEndpoint, MetadataRecord};
use uuid::Uuid;

use crate::conn::{col, Conn, Failure};
use crate::error::PgMetadataError;
use crate::schema::RESERVED_BROKER_MAX_ID;

/// Kafka's `broker.session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: i64 = 9_000;
/// Kafka's `broker.heartbeat.interval.ms` default: what a broker's heartbeat loop should use.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: i64 = 2_000;
/// How many taken ids an allocation steps over before giving up.
const MAX_ALLOCATION_PROBES: i32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// New for each start of a broker process (Kafka's incarnation id).
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    /// PostgreSQL's clock, milliseconds since the Unix epoch.
    pub last_heartbeat_ms: i64,
    pub fenced: bool,
}

impl BrokerRegistration {
    /// The metadata record the controller appends so that the image knows this broker.
    pub fn record(&self) -> MetadataRecord {
        MetadataRecord::RegisterBroker {
            node_id: self.node_id,
            endpoints: self.endpoints.clone(),
            rack: self.rack.clone(),
        }
    }
}

pub struct BrokerRegistry {
    conn: Conn,
    session_timeout_ms: i64,
}

const SELECT_COLUMNS: &str = "node_id, incarnation_id, endpoints::text, rack,
    (EXTRACT(EPOCH FROM last_heartbeat_at) * 1000)::bigint, fenced";

fn from_row(row: &postgres::Row) -> Result<BrokerRegistration, Failure> {
    let node_id: i32 = col(row, 0)?;
    let endpoints: &str = col(row, 2)?;
    let endpoints = serde_json::from_str(endpoints).map_err(|e| PgMetadataError::Corrupt {
        offset: -1,
        reason: format!("broker {node_id}'s endpoints: {e}"),
    })?;
    Ok(BrokerRegistration {
        node_id,
        incarnation_id: col(row, 1)?,
        endpoints,
        rack: col(row, 3)?,
        last_heartbeat_ms: col(row, 4)?,
        fenced: col(row, 5)?,
    })
}

impl BrokerRegistry {
    pub(crate) fn new(conn: Conn, session_timeout_ms: i64) -> BrokerRegistry {
        BrokerRegistry {
            conn,
            session_timeout_ms: session_timeout_ms.max(1),
        }
    }

    pub fn session_timeout_ms(&self) -> i64 {
        self.session_timeout_ms
    }

    /// Registers a broker process: with `node_id` as configured, or with a newly allocated
    /// id (from [`crate::schema::FIRST_ALLOCATED_NODE_ID`] up) when `None`. The answer's
    /// heartbeat is now. Registering again with the same incarnation refreshes it.
    pub fn register(
        &self,
        node_id: Option<i32>,
        incarnation_id: Uuid,
        endpoints: &[BrokerEndpoint],
        rack: Option<&str>,
    ) -> Result<BrokerRegistration, PgMetadataError> {
        if let Some(id) = node_id {
            if !(0..=RESERVED_BROKER_MAX_ID).contains(&id) {
                return Err(PgMetadataError::InvalidNodeId {
                    node_id: id,
                    reason: format!(
                        "a configured node.id must be between 0 and {RESERVED_BROKER_MAX_ID} (reserved.broker.max.id); leave it unset to have one allocated"
                    ),
                });
            }
        }
        self.register_unchecked(node_id, incarnation_id, endpoints, rack)
    }

    /// Registers again under an id this broker was given before (allocated ids are above
    /// `reserved.broker.max.id`, so [`BrokerRegistry::register`] refuses them as configured
    /// ones): kept in the broker's data directory, or its own id after a lapsed session.
    /// The same rule holds: not while another incarnation's registration is live.
    pub fn register_again(
        &self,
        node_id: i32,
        incarnation_id: Uuid,
        endpoints: &[BrokerEndpoint],
        rack: Option<&str>,
    ) -> Result<BrokerRegistration, PgMetadataError> {
        if node_id < 0 {
            return Err(PgMetadataError::InvalidNodeId {
                node_id,
                reason: "a node id is not negative".into(),
            });
        }
        self.register_unchecked(Some(node_id), incarnation_id, endpoints, rack)
    }

    fn register_unchecked(
        &self,
        node_id: Option<i32>,
        incarnation_id: Uuid,
        endpoints: &[BrokerEndpoint],
        rack: Option<&str>,
    ) -> Result<BrokerRegistration, PgMetadataError> {
        let endpoints_json =
            serde_json::to_string(endpoints).map_err(|e| PgMetadataError::Corrupt {
                offset: -1,
                reason: format!("cannot encode endpoints: {e}"),
            })?;
        let timeout = self.session_timeout_ms as f64;
        self.conn.run(|c| {
            let mut tx = c.transaction()?;
            let id = match node_id {
                Some(id) => id,
                None => allocate(&mut tx)?,
            };
            // Insert first, so two brokers racing for one new id serialise on its key.
            let inserted = tx.execute(
                "INSERT INTO broker_registrations
                     (node_id, incarnation_id, endpoints, rack, registered_at, last_heartbeat_at, fenced)
                 VALUES ($1, $2, $3::text::json, $4, clock_timestamp(), clock_timestamp(), false)
                 ON CONFLICT (node_id) DO NOTHING",
                &[&id, &incarnation_id, &endpoints_json, &rack],
            )?;
            if inserted == 0 {
                let row = tx.query_one(
                    "SELECT incarnation_id,
                            NOT fenced AND last_heartbeat_at > clock_timestamp() - $2::float8 * interval '1 millisecond'
                       FROM broker_registrations WHERE node_id = $1 FOR UPDATE",
                    &[&id, &timeout],
                )?;
                let holder: Uuid = col(&row, 0)?;
                let live: bool = col(&row, 1)?;
                if live && holder != incarnation_id {
                    return Err(PgMetadataError::DuplicateRegistration {
                        node_id: id,
                        incarnation_id: holder,
                    }
                    .into());
                }
                tx.execute(
                    "UPDATE broker_registrations
                        SET incarnation_id = $2, endpoints = $3::text::json, rack = $4,
                            registered_at = clock_timestamp(), last_heartbeat_at = clock_timestamp(),
                            fenced = false
                      WHERE node_id = $1",
                    &[&id, &incarnation_id, &endpoints_json, &rack],
                )?;
            }
            let row = tx.query_one(
                &format!("SELECT {SELECT_COLUMNS} FROM broker_registrations WHERE node_id = $1"),
                &[&id],
            )?;
            let registration = from_row(&row)?;
            tx.commit()?;
            Ok(registration)
        })
    }

    /// Records a heartbeat; a broker that is not registered under this incarnation, was
    /// fenced, or let its session lapse gets [`PgMetadataError::NotRegistered`].
    pub fn heartbeat(&self, node_id: i32, incarnation_id: Uuid) -> Result<i64, PgMetadataError> {
        let timeout = self.session_timeout_ms as f64;
        let at_ms = self.conn.run(|c| {
            let row = c.query_opt(
                "UPDATE broker_registrations SET last_heartbeat_at = clock_timestamp()
                  WHERE node_id = $1 AND incarnation_id = $2 AND NOT fenced
                    AND last_heartbeat_at > clock_timestamp() - $3::float8 * interval '1 millisecond'
              RETURNING (EXTRACT(EPOCH FROM last_heartbeat_at) * 1000)::bigint",
                &[&node_id, &incarnation_id, &timeout],
            )?;
            row.map(|r| col::<i64>(&r, 0)).transpose()
        })?;
        at_ms.ok_or(PgMetadataError::NotRegistered {
            node_id,
            incarnation_id,
        })
    }

    /// The live brokers, by node id.
    pub fn live(&self) -> Result<Vec<BrokerRegistration>, PgMetadataError> {
        let timeout = self.session_timeout_ms as f64;
        self.conn.run(|c| {
            let rows = c.query(
                &format!(
                    "SELECT {SELECT_COLUMNS} FROM broker_registrations
                      WHERE NOT fenced
                        AND last_heartbeat_at > clock_timestamp() - $1::float8 * interval '1 millisecond'
                      ORDER BY node_id"
                ),
                &[&timeout],
            )?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Every registration, live or not, by node id.
    pub fn all(&self) -> Result<Vec<BrokerRegistration>, PgMetadataError> {
        self.conn.run(|c| {
            let rows = c.query(
                &format!("SELECT {SELECT_COLUMNS} FROM broker_registrations ORDER BY node_id"),
                &[],
            )?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Fences every broker whose session lapsed; returns their ids (the controller moves
    /// their leaderships away).
    pub fn fence_expired(&self) -> Result<Vec<i32>, PgMetadataError> {
        let timeout = self.session_timeout_ms as f64;
        self.conn.run(|c| {
            let rows = c.query(
                "UPDATE broker_registrations SET fenced = true
                  WHERE NOT fenced
                    AND last_heartbeat_at <= clock_timestamp() - $1::float8 * interval '1 millisecond'
              RETURNING node_id",
                &[&timeout],
            )?;
            let mut ids = rows
                .iter()
                .map(|r| col::<i32>(r, 0))
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort_unstable();
            Ok(ids)
        })
    }

    /// Fences one broker process at once (its controlled shutdown, or the controller's
    /// decision); `false` if that incarnation was not registered or already fenced.
    pub fn fence(&self, node_id: i32, incarnation_id: Uuid) -> Result<bool, PgMetadataError> {
        let n = self.conn.run(|c| {
            Ok(c.execute(
                "UPDATE broker_registrations SET fenced = true
                  WHERE node_id = $1 AND incarnation_id = $2 AND NOT fenced",
                &[&node_id, &incarnation_id],
            )?)
        })?;
        Ok(n > 0)
    }
}

/// The next allocatable id, stepping over any id that has a registration row (configured
/// ids are at most `reserved.broker.max.id`, but a row may be there from an earlier
/// allocation whose counter update was lost to a restore).
fn allocate(tx: &mut Transaction<'_>) -> Result<i32, Failure> {
    let row = tx.query_one(
        "SELECT next_node_id FROM node_id_allocation WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let mut candidate: i32 = col(&row, 0)?;
    for _ in 0..MAX_ALLOCATION_PROBES {
        let taken = tx
            .query_opt(
                "SELECT 1 FROM broker_registrations WHERE node_id = $1",
                &[&candidate],
            )?
            .is_some();
        let Some(next) = candidate.checked_add(1) else {
            return Err(PgMetadataError::NodeIdsExhausted.into());
        };
        if !taken {
            tx.execute(
                "UPDATE node_id_allocation SET next_node_id = $1 WHERE id = 1",
                &[&next],
            )?;
            return Ok(candidate);
        }
        candidate = next;
    }
    Err(PgMetadataError::NodeIdsExhausted.into())
}
