//! Where the broker is assembled with the parts that reach back into it or that it only
//! feeds: the group and transaction coordinators over their ports (which hold the broker
//! weakly: it owns them), the authorizer, and the metrics that follow the image. It stands
//! above `broker`, `group_ports`, `txn_ports`, `authz` and `metrics`, so none of them imports
//! another that imports it back.

use std::sync::{Arc, Weak};

use strom_metadata::{MetadataDelta, MetadataImage, MetadataPublisher, PublishError};

use crate::acl::Authorizer;
use crate::authz::Authz;
use crate::broker::{Broker, Services};
use crate::config::BrokerConfig;
use crate::txn_ports::TxnPublisher;

/// The services of the broker `me` will be, with `config`, starting from `image` (the
/// authorizer starts from its ACLs): what `Broker::new` is handed.
pub fn services(me: Weak<Broker>, config: &BrokerConfig, image: &MetadataImage) -> Services {
    let groups = crate::group_ports::coordinator(me.clone(), config);
    let (txns, producer_ids) = crate::txn_ports::coordinator(me, config);
    let authz = config
        .authorizer
        .clone()
        .map(|c| Arc::new(Authz::new(c, image)));
    let mut publishers: Vec<Arc<dyn MetadataPublisher>> =
        vec![Arc::new(TxnPublisher(txns.clone()))];
    if let Some(a) = &authz {
        publishers.push(a.clone());
    }
    publishers.push(Arc::new(MetricsPublisher));
    Services {
        groups,
        txns,
        producer_ids,
        authz: authz.map(|a| a as Arc<dyn Authorizer>),
        publishers,
    }
}

/// The partition gauge, after the replica manager and the coordinators (the publishers of a
/// commit, in registration order).
struct MetricsPublisher;

impl MetadataPublisher for MetricsPublisher {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn on_metadata_update(
        &self,
        _delta: &MetadataDelta,
        image: &Arc<MetadataImage>,
    ) -> Result<(), PublishError> {
        crate::metrics::partitions(image.partition_count());
        Ok(())
    }
}
