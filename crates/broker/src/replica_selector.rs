//! KIP-392: which replica a consumer should fetch from. The partition's leader answers a
//! consumer's Fetch carrying `rack_id` with a `preferred_read_replica` when the selector picks
//! another broker; with shared storage every live broker can serve any partition's reads.

/// Kafka's rack-aware selector, the class `replica.selector.class` names to enable it.
pub const RACK_AWARE_REPLICA_SELECTOR: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";
/// Kafka's default selector (always the leader), accepted by name too.
pub const LEADER_SELECTOR: &str = "org.apache.kafka.common.replica.LeaderSelector";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaSelector {
    /// Consumers fetch from the leader (Kafka's default: no selector).
    #[default]
    Leader,
    /// A replica in the consumer's rack when the leader is not in it.
    RackAware,
}

/// `replica.selector.class`: unset or Kafka's leader selector, or its rack-aware one. Strom
/// loads no classes, so any other name is refused at start-up rather than ignored; the error
/// is the reason, which `config` puts beside the setting's name and value.
pub fn parse(value: &str) -> Result<ReplicaSelector, String> {
    match value.trim() {
        "" | LEADER_SELECTOR => Ok(ReplicaSelector::Leader),
        RACK_AWARE_REPLICA_SELECTOR => Ok(ReplicaSelector::RackAware),
        _ => Err(format!(
            "Strom has {RACK_AWARE_REPLICA_SELECTOR} (or none: the leader)"
        )),
    }
}

/// One replica the selector may pick: a live broker and its rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView<'a> {
    pub node_id: i32,
    pub rack: Option<&'a str>,
}

impl ReplicaSelector {
    /// The replica a consumer in `client_rack` should fetch from, as Kafka's
    /// RackAwareReplicaSelector picks it: the leader when the client names no rack, when no
    /// replica is in that rack, or when the leader is in it; else one in that rack. Every
    /// replica on shared storage is equally caught up (Kafka prefers the highest log end),
    /// so the lowest node id is taken, which keeps a client on one broker across fetches.
    pub fn select(self, client_rack: &str, leader: i32, replicas: &[ReplicaView<'_>]) -> i32 {
        if self == ReplicaSelector::Leader || client_rack.is_empty() {
            return leader;
        }
        let in_rack: Vec<i32> = replicas
            .iter()
            .filter(|r| r.rack == Some(client_rack))
            .map(|r| r.node_id)
            .collect();
        if in_rack.is_empty() || in_rack.contains(&leader) {
            return leader;
        }
        in_rack.into_iter().min().unwrap_or(leader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(node_id: i32, rack: Option<&str>) -> ReplicaView<'_> {
        ReplicaView { node_id, rack }
    }

    #[test]
    fn the_setting_takes_kafkas_class_names_only() {
        assert_eq!(parse("").unwrap(), ReplicaSelector::Leader);
        assert_eq!(parse(LEADER_SELECTOR).unwrap(), ReplicaSelector::Leader);
        assert_eq!(
            parse(RACK_AWARE_REPLICA_SELECTOR).unwrap(),
            ReplicaSelector::RackAware
        );
        let e = parse("com.example.MySelector").unwrap_err();
        assert!(e.contains(RACK_AWARE_REPLICA_SELECTOR), "{e}");
    }

    #[test]
    fn rack_aware_picks_a_replica_in_the_clients_rack() {
        let replicas = [
            view(1, Some("r1")),
            view(2, Some("r2")),
            view(3, Some("r3")),
            view(4, None),
        ];
        let s = ReplicaSelector::RackAware;
        // The leader elsewhere: the client's rack wins.
        assert_eq!(s.select("r2", 1, &replicas), 2);
        assert_eq!(s.select("r3", 1, &replicas), 3);
        // The leader in the client's rack, no rack given, or a rack nobody is in: the leader.
        assert_eq!(s.select("r1", 1, &replicas), 1);
        assert_eq!(s.select("", 1, &replicas), 1);
        assert_eq!(s.select("r9", 1, &replicas), 1);
        // Several in the rack: the same one every time.
        let two = [
            view(7, Some("r2")),
            view(5, Some("r2")),
            view(1, Some("r1")),
        ];
        assert_eq!(s.select("r2", 1, &two), 5);
        // The leader selector never moves a client.
        assert_eq!(ReplicaSelector::Leader.select("r2", 1, &replicas), 1);
    }
}
