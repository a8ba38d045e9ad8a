//! InitProducerId for idempotent producers (the default of kafka-python 3 and Java clients);
//! with a transactional id it goes to the transaction coordinator (`handlers::txn`).

use std::sync::Arc;

use proto_kafka::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use proto_kafka::ResponseError;

use crate::broker::Broker;
use crate::controller;

pub async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(id) = req.transactional_id.as_ref().filter(|t| !t.0.is_empty()) {
        return super::txn::init_producer_id(broker, version, id.as_str(), &req).await;
    }
    // KIP-360: a producer that knows its id asks for the next epoch, keeping its id.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return InitProducerIdResponse::default()
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match controller::allocate_producer_id(broker).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(_) => fail(ResponseError::CoordinatorNotAvailable),
    }
}
