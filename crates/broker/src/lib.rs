//! The Strom broker: a Kafka-protocol server over Strom's log engine.
//!
//! A request flows one way: [`network`] (listener, connection, frame) → [`request`] (header,
//! version, decode) → [`handlers`] → [`partition`] / [`controller`] → `strom_log`, and back.

pub mod acl;
pub mod admin_http;
pub mod authz;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod config_validator;
pub mod controller;
pub mod disk_space;
pub mod dispatch;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
/// Kept as a path of this crate while its users move to the crate's own name.
pub use strom_group_coordinator as group;
pub mod group_ports;
pub mod handlers;
pub mod memory;
/// Kept as a path of this crate while the modules that use it move out.
pub use strom_metadata as metadata;
pub mod metrics;
pub mod network;
pub mod partition;
pub mod replica_manager;
pub mod replica_selector;
pub mod request;
pub mod server;
pub mod shared_partition;
pub mod storage;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod txn_ports;
pub mod wiring;
