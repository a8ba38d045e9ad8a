//! The controller's config port (`strom_metadata::controller::ConfigValidator`) over this
//! broker's configuration: Kafka's names, types and defaults, with the image's dynamic values
//! on top.

use std::collections::BTreeMap;

use crate::config::topic::TopicConfig;
use crate::config::{BrokerConfig, ConfigType, RawConfig};
use crate::metadata::controller::ConfigValidator;
use crate::metadata::MetadataImage;

/// The controller's config port over this broker's static configuration: Kafka's names,
/// types and defaults (`config`, `topic_config`), with the image's dynamic values on top.
pub struct BrokerConfigValidator {
    /// The static settings (defaults, file, environment, flags).
    raw: RawConfig,
    node_id: i32,
}

impl BrokerConfigValidator {
    pub fn new(config: &BrokerConfig) -> Self {
        BrokerConfigValidator {
            raw: config.raw.clone(),
            node_id: config.node_id,
        }
    }

    /// The broker settings in force with `image`, as `Broker::raw_config_for`.
    fn raw_for(&self, image: &MetadataImage) -> RawConfig {
        self.raw.with_dynamic(
            &image.broker_configs(""),
            &image.broker_configs(&self.node_id.to_string()),
        )
    }
}

impl ConfigValidator for BrokerConfigValidator {
    fn validate_topic(
        &self,
        image: &MetadataImage,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        TopicConfig::effective(&self.raw_for(image), overrides)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn topic_list_default(
        &self,
        image: &MetadataImage,
        name: &str,
    ) -> Result<Option<String>, String> {
        let is_list = crate::config::TOPIC_CONFIGS
            .iter()
            .any(|(t, _, ty)| *t == name && *ty == ConfigType::List);
        if !is_list {
            return Ok(None);
        }
        // cleanup.policy is the only list-typed topic config.
        let defaults =
            TopicConfig::broker_defaults(&self.raw_for(image)).map_err(|e| e.to_string())?;
        Ok(Some(defaults.cleanup_policy))
    }

    fn broker_list_value(&self, image: &MetadataImage, name: &str) -> Option<String> {
        crate::config::BROKER_CONFIGS
            .iter()
            .any(|d| d.name == name && d.ty == ConfigType::List)
            .then(|| {
                self.raw_for(image)
                    .get(name)
                    .unwrap_or_default()
                    .to_string()
            })
    }

    fn is_dynamic_broker_config(&self, name: &str) -> bool {
        crate::config::is_dynamic_broker_config(name)
    }

    fn pinned_by(&self, name: &str) -> Option<String> {
        self.raw.pinned_by(name).map(str::to_string)
    }

    /// Each value the change sets must be one the broker takes (not left out as invalid),
    /// the whole broker configuration must still parse, and no topic whose configuration is
    /// valid now may become invalid under the new defaults.
    fn validate_broker_change(
        &self,
        image: &MetadataImage,
        changed: &[String],
        cluster_wide: bool,
        cluster: &BTreeMap<String, String>,
        this: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let raw_now = self.raw_for(image);
        let (candidate, ignored) = self.raw.with_dynamic_checked(cluster, this);
        if let Some(i) = ignored
            .iter()
            .find(|i| i.per_broker != cluster_wide && changed.contains(&i.name))
        {
            // The reason names the setting and the value.
            return Err(i.reason.clone());
        }
        BrokerConfig::from_raw(candidate.clone()).map_err(|e| e.to_string())?;
        for topic in image.topics.values() {
            let overrides = image.topic_configs(&topic.name);
            if TopicConfig::effective(&raw_now, &overrides).is_err() {
                continue;
            }
            if let Err(e) = TopicConfig::effective(&candidate, &overrides) {
                return Err(format!(
                    "the change would make the configuration of topic {} invalid: {e}",
                    topic.name
                ));
            }
        }
        Ok(())
    }
}
