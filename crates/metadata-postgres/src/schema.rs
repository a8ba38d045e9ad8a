//! The schema, created and upgraded by versioned migrations. Every broker runs
//! `PgMetadataStore::migrate` at start-up; a transaction-scoped advisory lock makes concurrent brokers take
//! turns, so the first one creates the schema and the others find it done.

use postgres::Client;
use tracing::info;

use crate::conn::{col, Conn, Failure};
use crate::error::PgMetadataError;

/// The advisory lock key that serialises migrations ("STROMSCH" as a big-endian i64).
const MIGRATION_LOCK_KEY: i64 = 0x5354_524f_4d53_4348;

/// First node id handed out when a broker starts without `node.id`: Kafka's
/// `reserved.broker.max.id` (1000) plus one, so configured ids (at most 1000) and allocated
/// ones never meet.
pub const FIRST_ALLOCATED_NODE_ID: i32 = 1001;
/// Configured node ids above this are refused (Kafka's `reserved.broker.max.id`).
pub const RESERVED_BROKER_MAX_ID: i32 = 1000;

/// (version, what it does, SQL). Append only: a released migration never changes.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "metadata log, controller lease, broker registrations, node id allocation",
        r#"
CREATE TABLE metadata_log (
    "offset"         bigint PRIMARY KEY CHECK ("offset" >= 0),
    -- json, not jsonb: the record's text as serialised (jsonb refuses \u0000 in strings).
    record           json   NOT NULL,
    timestamp_ms     bigint NOT NULL,
    -- The lease epoch of the controller that wrote it; NULL for an unfenced writer.
    controller_epoch bigint
);
CREATE TABLE controller_lease (
    id             smallint PRIMARY KEY CHECK (id = 1),
    holder_node_id integer,
    epoch          bigint NOT NULL CHECK (epoch >= 0),
    expires_at     timestamptz NOT NULL
);
INSERT INTO controller_lease (id, holder_node_id, epoch, expires_at)
    VALUES (1, NULL, 0, to_timestamp(0));
CREATE TABLE broker_registrations (
    node_id           integer PRIMARY KEY CHECK (node_id >= 0),
    incarnation_id    uuid NOT NULL,
    endpoints         json NOT NULL,
    rack              text,
    registered_at     timestamptz NOT NULL,
    last_heartbeat_at timestamptz NOT NULL,
    fenced            boolean NOT NULL DEFAULT false
);
CREATE TABLE node_id_allocation (
    id           smallint PRIMARY KEY CHECK (id = 1),
    next_node_id integer NOT NULL
);
INSERT INTO node_id_allocation (id, next_node_id) VALUES (1, 1001);
"#,
    ),
    (
        2,
        "the cluster id every broker reports",
        r#"
CREATE TABLE cluster_identity (
    id         smallint PRIMARY KEY CHECK (id = 1),
    cluster_id text NOT NULL
);
"#,
    ),
];

/// The schema version this binary creates and expects.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// Brings the schema up to [`latest_version`]; returns the version found before. All of it
/// is one transaction: a broker killed mid-migration leaves the schema as it was.
pub(crate) fn migrate(conn: &Conn) -> Result<i32, PgMetadataError> {
    let found = conn.run(migrate_on)?;
    if found < latest_version() {
        info!(url = %conn.url(), from = found, to = latest_version(), "metadata schema migrated");
    }
    Ok(found)
}

fn migrate_on(client: &mut Client) -> Result<i32, Failure> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
         )",
    )?;
    let row = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?;
    let found: i32 = col(&row, 0)?;
    if found > latest_version() {
        return Err(PgMetadataError::SchemaTooNew {
            found,
            known: latest_version(),
        }
        .into());
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
            &[version, description],
        )?;
    }
    tx.commit()?;
    Ok(found)
}
