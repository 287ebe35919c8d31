//! `processors::log_dedup` config, with the collector's names.

use std::time::Duration;

use flowtel_core::config::Validate;
use serde::Deserialize;

/// `processors::log_dedup` (alias `logdedup`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogDedupConfig {
    /// Identical records within this window become one.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The attribute holding how many records one stands for.
    pub log_count_attribute: String,
    /// Only these fields decide identity (`attributes.<key>`); empty: all.
    pub include_fields: Vec<String>,
    /// Fields ignored for identity (`attributes.<key>`).
    pub exclude_fields: Vec<String>,
    /// Only records matching one of these conditions (the `filter`
    /// processor's language) are deduplicated; others pass at once.
    /// Empty: every record.
    pub conditions: Vec<String>,
    /// The IANA time zone of `first_observed_timestamp` /
    /// `last_observed_timestamp` (`UTC`, `Europe/Berlin`).
    pub timezone: String,
    /// Flow mode: a `network.flow` record of a 5-tuple already reported from
    /// another interface within `interval` is dropped (the first interface
    /// wins), so traffic crossing a veth and the host's NIC counts once.
    /// Flow records are then passed on at once, not aggregated.
    pub flow_mode: bool,
}

impl Default for LogDedupConfig {
    fn default() -> Self {
        LogDedupConfig {
            interval: Duration::from_secs(10),
            log_count_attribute: "log_count".into(),
            include_fields: Vec::new(),
            exclude_fields: Vec::new(),
            conditions: Vec::new(),
            timezone: "UTC".into(),
            flow_mode: false,
        }
    }
}

impl LogDedupConfig {
    /// The attribute keys of `include_fields` / `exclude_fields`.
    pub fn attribute_keys(fields: &[String]) -> Vec<String> {
        fields.iter().filter_map(|f| f.strip_prefix("attributes.")).map(str::to_owned).collect()
    }
}

impl LogDedupConfig {
    /// The time zone `timezone` names; UTC is always known, others come
    /// from the system's time zone database.
    pub fn time_zone(&self) -> Result<jiff::tz::TimeZone, UnknownTimeZone> {
        if self.timezone.eq_ignore_ascii_case("utc") {
            return Ok(jiff::tz::TimeZone::UTC);
        }
        jiff::tz::TimeZone::get(&self.timezone)
            .map_err(|source| UnknownTimeZone { name: self.timezone.clone(), source })
    }
}

/// A `timezone` the time zone database does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown time zone `{name}` (an IANA name such as UTC or Europe/Berlin): {source}")]
pub struct UnknownTimeZone {
    /// As configured.
    pub name: String,
    /// What the database said.
    pub source: jiff::Error,
}

impl Validate for LogDedupConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.interval.is_zero() {
            problems.push(("interval".into(), "must be more than 0".into()));
        }
        if self.log_count_attribute.is_empty() {
            problems.push(("log_count_attribute".into(), "must not be empty".into()));
        }
        problems.extend(flowtel_core::condition::problems(
            self.conditions.iter().enumerate().map(|(i, c)| (format!("conditions[{i}]"), c)),
        ));
        if let Err(problem) = self.time_zone() {
            problems.push(("timezone".into(), problem.to_string()));
        }
        if !self.include_fields.is_empty() && !self.exclude_fields.is_empty() {
            problems.push(("include_fields".into(), "cannot be set together with exclude_fields".into()));
        }
        for (name, fields) in [("include_fields", &self.include_fields), ("exclude_fields", &self.exclude_fields)] {
            for (index, field) in fields.iter().enumerate() {
                if field.strip_prefix("attributes.").is_none_or(str::is_empty) {
                    problems.push((format!("{name}[{index}]"), format!("`{field}` is not `attributes.<key>`")));
                }
            }
        }
        problems
    }
}
