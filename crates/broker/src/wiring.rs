//! Where the broker is assembled with the parts that reach back into it: the group and
//! transaction coordinators over their ports (which hold the broker weakly: it owns them)
//! and the authorizer. It stands above `broker`, `group_ports`, `txn_ports` and `authz`, so
//! none of them imports another that imports it back.

use std::sync::{Arc, Weak};

use strom_metadata::{MetadataImage, MetadataPublisher};

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
    Services {
        groups,
        txns,
        producer_ids,
        authz: authz.map(|a| a as Arc<dyn Authorizer>),
        publishers,
    }
}
