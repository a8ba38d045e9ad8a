//! The controller lease: one row naming the active controller, its epoch and when its term
//! ends. Time is PostgreSQL's clock (`clock_timestamp()`), never a broker's, so brokers with
//! skewed clocks agree on who holds it.
//!
//! Every grant bumps the epoch, including a grant to the node that held it last (a restarted
//! process is a new term): appends made under an older epoch are fenced
//! ([`crate::PgMetadataLog::for_controller`]). A renew extends only an unexpired lease of the
//! same epoch; a lapsed one must be acquired again.

use crate::conn::{col, Conn};
use crate::error::PgMetadataError;

/// Upper bound on a lease term: a controller that vanishes holds the cluster's metadata
/// writes for at most this long.
pub const MAX_LEASE_TTL_MS: i64 = 10 * 60 * 1000;

/// A granted lease, as of the moment it was granted or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerLease {
    pub node_id: i32,
    pub epoch: i64,
    /// PostgreSQL's clock, milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

pub struct ControllerLeases {
    conn: Conn,
}

pub(crate) fn check_ttl(ttl_ms: i64) -> Result<(), PgMetadataError> {
    if !(1..=MAX_LEASE_TTL_MS).contains(&ttl_ms) {
        return Err(PgMetadataError::InvalidTtl {
            ttl_ms,
            max_ms: MAX_LEASE_TTL_MS,
        });
    }
    Ok(())
}

const EXPIRES_MS: &str = "(EXTRACT(EPOCH FROM expires_at) * 1000)::bigint";

impl ControllerLeases {
    pub(crate) fn new(conn: Conn) -> ControllerLeases {
        ControllerLeases { conn }
    }

    /// Takes the lease for `node_id` for `ttl_ms` if no other node holds it unexpired, with
    /// a new epoch; else [`PgMetadataError::LeaseHeld`].
    pub fn acquire(&self, node_id: i32, ttl_ms: i64) -> Result<ControllerLease, PgMetadataError> {
        check_ttl(ttl_ms)?;
        self.conn.run(|c| {
            let mut tx = c.transaction()?;
            let row = tx.query_one(
                &format!(
                    "SELECT holder_node_id, epoch, expires_at > clock_timestamp(),
                            GREATEST(0, {EXPIRES_MS} - (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint)
                       FROM controller_lease WHERE id = 1 FOR UPDATE"
                ),
                &[],
            )?;
            let holder: Option<i32> = col(&row, 0)?;
            let epoch: i64 = col(&row, 1)?;
            let live: bool = col(&row, 2)?;
            let remaining_ms: i64 = col(&row, 3)?;
            if let (Some(holder), true) = (holder, live) {
                if holder != node_id {
                    return Err(PgMetadataError::LeaseHeld {
                        holder,
                        epoch,
                        remaining_ms,
                    }
                    .into());
                }
            }
            let row = tx.query_one(
                &format!(
                    "UPDATE controller_lease
                        SET holder_node_id = $1, epoch = epoch + 1,
                            expires_at = clock_timestamp() + $2::float8 * interval '1 millisecond'
                      WHERE id = 1
                  RETURNING epoch, {EXPIRES_MS}"
                ),
                &[&node_id, &(ttl_ms as f64)],
            )?;
            tx.commit()?;
            Ok(ControllerLease {
                node_id,
                epoch: col(&row, 0)?,
                expires_at_ms: col(&row, 1)?,
            })
        })
    }

    /// Extends `lease` by `ttl_ms` from now, if it is still current and unexpired; else
    /// [`PgMetadataError::LeaseLost`].
    pub fn renew(
        &self,
        lease: &ControllerLease,
        ttl_ms: i64,
    ) -> Result<ControllerLease, PgMetadataError> {
        check_ttl(ttl_ms)?;
        let expires_at_ms = self.conn.run(|c| {
            let row = c.query_opt(
                &format!(
                    "UPDATE controller_lease
                        SET expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond'
                      WHERE id = 1 AND holder_node_id = $1 AND epoch = $2
                        AND expires_at > clock_timestamp()
                  RETURNING {EXPIRES_MS}"
                ),
                &[&lease.node_id, &lease.epoch, &(ttl_ms as f64)],
            )?;
            row.map(|row| col::<i64>(&row, 0)).transpose()
        })?;
        match expires_at_ms {
            Some(expires_at_ms) => Ok(ControllerLease {
                expires_at_ms,
                ..lease.clone()
            }),
            None => Err(PgMetadataError::LeaseLost {
                node_id: lease.node_id,
                epoch: lease.epoch,
            }),
        }
    }

    /// Gives the lease up at once (a controlled shutdown), so another node need not wait for
    /// it to expire. Releasing a lease already lost answers [`PgMetadataError::LeaseLost`].
    pub fn release(&self, lease: &ControllerLease) -> Result<(), PgMetadataError> {
        let n = self.conn.run(|c| {
            Ok(c.execute(
                "UPDATE controller_lease SET holder_node_id = NULL, expires_at = clock_timestamp()
                  WHERE id = 1 AND holder_node_id = $1 AND epoch = $2",
                &[&lease.node_id, &lease.epoch],
            )?)
        })?;
        if n == 0 {
            return Err(PgMetadataError::LeaseLost {
                node_id: lease.node_id,
                epoch: lease.epoch,
            });
        }
        Ok(())
    }

    /// The lease in force now, or `None` when no node holds one unexpired.
    pub fn current(&self) -> Result<Option<ControllerLease>, PgMetadataError> {
        self.conn.run(|c| {
            let row = c.query_opt(
                &format!(
                    "SELECT holder_node_id, epoch, {EXPIRES_MS} FROM controller_lease
                      WHERE id = 1 AND holder_node_id IS NOT NULL
                        AND expires_at > clock_timestamp()"
                ),
                &[],
            )?;
            row.map(|row| {
                Ok(ControllerLease {
                    node_id: col(&row, 0)?,
                    epoch: col(&row, 1)?,
                    expires_at_ms: col(&row, 2)?,
                })
            })
            .transpose()
        })
    }

    /// The epoch of the last grant, whether or not it is still in force: what a new
    /// controller's first append is fenced against.
    pub fn last_epoch(&self) -> Result<i64, PgMetadataError> {
        self.conn.run(|c| {
            let row = c.query_one("SELECT epoch FROM controller_lease WHERE id = 1", &[])?;
            col(&row, 0)
        })
    }
}
