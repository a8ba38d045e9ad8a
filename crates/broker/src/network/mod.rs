//! The network edge: a connection reads size-prefixed frames
//! ([`frame`]), hands each to the request layer, and writes responses back in request order.

pub mod connection;
pub mod frame;
pub mod jwks;
pub mod listener;
pub mod sasl;
pub mod security;
pub mod zero_copy;
