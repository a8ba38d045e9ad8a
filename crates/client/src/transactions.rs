//! Transactions, as an operator sees them (KIP-664): ListTransactions on every broker and
//! DescribeTransactions at an id's coordinator.

use proto_kafka::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use proto_kafka::protocol::StrBytes;

use crate::client::Client;
use crate::error::{Error, Result};

/// One transactional id as ListTransactions reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
    pub coordinator: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub coordinator: i32,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_time_ms: i64,
    /// topic → partitions of the open transaction.
    pub partitions: Vec<(String, Vec<i32>)>,
}

impl Client {
    /// ListTransactions on every broker, filtered by state names (all when empty).
    pub async fn list_transactions(&self, states: &[String]) -> Result<Vec<ListedTransaction>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (node, conn) in self.all_brokers().await? {
            let result = async {
                let conn = conn?;
                let version = conn.version::<ListTransactionsRequest>()?;
                let req = ListTransactionsRequest::default()
                    .with_state_filters(
                        states
                            .iter()
                            .map(|s| StrBytes::from_string(s.clone()))
                            .collect(),
                    )
                    .with_duration_filter(-1);
                let resp = conn.send(version, &req).await?;
                if resp.error_code != 0 {
                    return Err(Error::kafka(
                        format!("list transactions on broker {node}"),
                        resp.error_code,
                        None,
                    ));
                }
                Ok(resp
                    .transaction_states
                    .iter()
                    .map(|t| ListedTransaction {
                        transactional_id: t.transactional_id.to_string(),
                        producer_id: t.producer_id.0,
                        state: t.transaction_state.to_string(),
                        coordinator: node,
                    })
                    .collect::<Vec<_>>())
            }
            .await;
            match result {
                Ok(t) => out.extend(t),
                Err(e) => errors.push(e),
            }
        }
        if out.is_empty() {
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// DescribeTransactions of one id, at its coordinator.
    pub async fn describe_transaction(&self, id: &str) -> Result<TransactionDescription> {
        let meta = self.find_coordinator_of(1, id).await?;
        let conn = self.broker(meta.node_id).await?;
        let version = conn.version::<DescribeTransactionsRequest>()?;
        let req = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_string()))]);
        let resp = conn.send(version, &req).await?;
        let t = resp
            .transaction_states
            .iter()
            .find(|t| t.transactional_id.as_str() == id)
            .ok_or_else(|| Error::Other(format!("the coordinator did not describe {id}")))?;
        if t.error_code != 0 {
            return Err(Error::kafka(
                format!("describe transactional id {id}"),
                t.error_code,
                None,
            ));
        }
        Ok(TransactionDescription {
            transactional_id: id.to_string(),
            coordinator: meta.node_id,
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .iter()
                .map(|td| (td.topic.to_string(), td.partitions.clone()))
                .collect(),
        })
    }
}
