//! Config changes: AlterConfigs and IncrementalAlterConfigs on TOPIC and BROKER resources.
//! The broker's knowledge of config names and values comes through
//! [`super::ConfigValidator`].

use std::collections::{BTreeMap, HashSet};

use proto_kafka::ResponseError;

use super::{ApiError, Controller};
use crate::image::MetadataImage;
use crate::records::{MetadataRecord, RESOURCE_BROKER, RESOURCE_TOPIC};

/// How a resource's configuration changes: AlterConfigs replaces the whole set of
/// overrides, IncrementalAlterConfigs edits them one by one.
pub enum ConfigChange {
    Replace(BTreeMap<String, String>),
    /// (name, operation, value): 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT.
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// The Config records that take a resource's settings from `current` to `next`.
fn config_records(
    resource_type: i8,
    resource_name: &str,
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
    records: &mut Vec<MetadataRecord>,
) {
    let record = |name: &str, value: Option<&String>| MetadataRecord::Config {
        resource_type,
        resource_name: resource_name.to_string(),
        name: name.to_string(),
        value: value.cloned(),
    };
    for (k, v) in next {
        if current.get(k) != Some(v) {
            records.push(record(k, Some(v)));
        }
    }
    for k in current.keys().filter(|k| !next.contains_key(*k)) {
        records.push(record(k, None));
    }
}

/// The names whose value differs between `current` and `next`.
fn changed_names(
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<String> = next
        .keys()
        .chain(current.keys())
        .filter(|k| current.get(*k) != next.get(*k))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// APPEND (`add`) or SUBTRACT the comma-separated `given` items to the list `base`. Sets,
/// so a value of a million items costs a million look-ups, not their square (with the
/// metadata lock held).
fn edit_list(base: &str, given: Option<&str>, add: bool) -> String {
    let mut items: Vec<String> = base
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let given = given
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if add {
        let mut present: HashSet<String> = items.iter().cloned().collect();
        for item in given {
            if present.insert(item.to_string()) {
                items.push(item.to_string());
            }
        }
    } else {
        let gone: HashSet<&str> = given.collect();
        items.retain(|i| !gone.contains(i.as_str()));
    }
    items.join(",")
}

/// The settings after `change`. `list_value` gives the current value of a list setting (for
/// APPEND and SUBTRACT), `Ok(None)` for a setting that is not a list.
pub fn apply_change(
    current: &BTreeMap<String, String>,
    change: &ConfigChange,
    list_value: &dyn Fn(&str) -> Result<Option<String>, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = |m: String| ApiError::new(ResponseError::InvalidConfig, m);
    let ops = match change {
        ConfigChange::Replace(all) => return Ok(all.clone()),
        ConfigChange::Incremental(ops) => ops,
    };
    let mut next = current.clone();
    let mut touched = HashSet::new();
    for (name, op, value) in ops {
        if !touched.insert(name.clone()) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys: {name}"),
            ));
        }
        match op {
            0 => {
                let v = value
                    .clone()
                    .ok_or_else(|| invalid(format!("Null value not supported for: {name}")))?;
                next.insert(name.clone(), v);
            }
            1 => {
                next.remove(name);
            }
            2 | 3 => {
                let Some(list_default) = list_value(name).map_err(invalid)? else {
                    return Err(invalid(format!(
                        "Config value append/subtract is not allowed for config key: {name}"
                    )));
                };
                let base = next.get(name).cloned().unwrap_or(list_default);
                next.insert(name.clone(), edit_list(&base, value.as_deref(), *op == 2));
            }
            other => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(next)
}

impl Controller {
    fn plan_topic_config(
        &self,
        image: &MetadataImage,
        name: &str,
        change: &ConfigChange,
        records: &mut Vec<MetadataRecord>,
    ) -> Result<(), ApiError> {
        if image.topic(name).is_none() {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {name} does not exist"),
            ));
        }
        let current = image.topic_configs(name);
        let list_value = |n: &str| self.validator.topic_list_default(image, n);
        let next = apply_change(&current, change, &list_value)?;
        self.validator
            .validate_topic(image, &next)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e))?;
        config_records(RESOURCE_TOPIC, name, &current, &next, records);
        Ok(())
    }

    /// Changes topic configurations; the new values reach the partitions as the image is
    /// published.
    pub async fn alter_topic_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let guard = self.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        let results = changes
            .iter()
            .map(|(name, change)| self.plan_topic_config(&image, name, change, &mut records))
            .collect();
        self.commit_all_or_none(guard, records, results, validate_only)
            .await
    }

    fn plan_broker_config(
        &self,
        image: &MetadataImage,
        resource_name: &str,
        change: &ConfigChange,
        records: &mut Vec<MetadataRecord>,
    ) -> Result<(), ApiError> {
        let node = self.config.node_id.to_string();
        if !resource_name.is_empty() && resource_name != node {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Unexpected broker id, expected {node} or empty but received {resource_name}"
                ),
            ));
        }
        let current = image.broker_configs(resource_name);
        let list_value = |n: &str| Ok(self.validator.broker_list_value(image, n));
        let next = apply_change(&current, change, &list_value)?;
        let changed = changed_names(&current, &next);
        let set: Vec<&str> = changed
            .iter()
            .filter(|k| next.contains_key(*k))
            .map(String::as_str)
            .collect();
        let fixed: Vec<&str> = set
            .iter()
            .copied()
            .filter(|k| !self.validator.is_dynamic_broker_config(k))
            .collect();
        if !fixed.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Cannot update these configs dynamically: {} (only topic defaults such as log.retention.ms are dynamic; set the others in the config file, environment or flags and restart)",
                    fixed.join(", ")
                ),
            ));
        }
        let pinned: Vec<String> = set
            .iter()
            .filter_map(|k| self.validator.pinned_by(k))
            .collect();
        if !pinned.is_empty() {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!(
                    "Cannot update these configs dynamically: {} (given on this broker's command line, which wins over dynamic values)",
                    pinned.join(", ")
                ),
            ));
        }
        let cluster_wide = resource_name.is_empty();
        let (cluster, this) = if cluster_wide {
            (next.clone(), image.broker_configs(&node))
        } else {
            (image.broker_configs(""), next.clone())
        };
        self.validator
            .validate_broker_change(image, &changed, cluster_wide, &cluster, &this)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e))?;
        config_records(RESOURCE_BROKER, resource_name, &current, &next, records);
        Ok(())
    }

    /// Changes dynamic broker settings (AlterConfigs on a BROKER resource): `""` for the
    /// cluster-wide defaults, or this node's id. Only dynamic settings may change, and the
    /// values must leave every topic valid. They reach the partitions as the image is
    /// published.
    pub async fn alter_broker_configs(
        &self,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let guard = self.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        let results = changes
            .iter()
            .map(|(name, change)| self.plan_broker_config(&image, name, change, &mut records))
            .collect();
        self.commit_all_or_none(guard, records, results, validate_only)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// APPEND and SUBTRACT of a list value with 200,000 items finish in moments (they took
    /// the square of that in comparisons), keep the order and drop repeats.
    #[test]
    fn list_append_subtract_of_a_huge_value() {
        let current = BTreeMap::new();
        let huge: Vec<String> = (0..200_000).map(|i| format!("p{i}")).collect();
        let list = |_: &str| Ok(Some("delete".to_string()));
        let started = std::time::Instant::now();
        let add = ConfigChange::Incremental(vec![(
            "cleanup.policy".into(),
            2,
            Some(format!("{},p0,delete", huge.join(","))),
        )]);
        let next = apply_change(&current, &add, &list).unwrap();
        let v = &next["cleanup.policy"];
        assert!(v.starts_with("delete,p0,p1,") && v.ends_with(",p199999"));
        let sub =
            ConfigChange::Incremental(vec![("cleanup.policy".into(), 3, Some(huge.join(",")))]);
        let next = apply_change(&next, &sub, &list).unwrap();
        assert_eq!(next["cleanup.policy"], "delete");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn incremental_errors_have_kafkas_codes() {
        let current = BTreeMap::new();
        let not_list = |_: &str| Ok(None);
        let cases = [
            (
                vec![("a".to_string(), 0, None)],
                ResponseError::InvalidConfig,
            ),
            (
                vec![("a".to_string(), 1, None), ("a".to_string(), 1, None)],
                ResponseError::InvalidRequest,
            ),
            (
                vec![("a".to_string(), 2, Some("x".into()))],
                ResponseError::InvalidConfig,
            ),
            (
                vec![("a".to_string(), 9, None)],
                ResponseError::InvalidRequest,
            ),
        ];
        for (ops, want) in cases {
            let got = apply_change(&current, &ConfigChange::Incremental(ops), &not_list);
            assert_eq!(got.unwrap_err().code, want.code());
        }
    }
}
