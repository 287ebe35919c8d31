//! The `log_dedup` processor (alias `logdedup`): identical log records
//! within `interval` become one, with the count in `log_count` and
//! `first_observed_timestamp` / `last_observed_timestamp`, as the
//! collector's does. Its flow mode drops the copies of one flow that
//! several interfaces report (a veth and the host's NIC): the first
//! interface to report a 5-tuple keeps it while it stays active.
//!
//! Metrics and traces pass unchanged.

mod config;

use flowtel_core::schema::{attr, event};
use std::collections::HashMap;

use flowtel_core::{
    Payload,
    attributes::{directed_flow_identity, find_text, of_resource},
    component::Processor,
    time::rfc3339_millis,
};

use flowtel_core::condition::{Expr, parse_all, record::any_log_record};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use tokio::time::Instant;

pub use config::LogDedupConfig;

/// One distinct record and how often it was seen.
struct Aggregate {
    resource: Option<Resource>,
    scope: Option<InstrumentationScope>,
    record: LogRecord,
    count: i64,
    first_observed: u64,
    last_observed: u64,
}

/// The interface that owns a flow's 5-tuple, and when it last reported it.
struct Owner {
    interface: String,
    last_seen: Instant,
}

/// The `log_dedup` processor.
pub struct LogDedupProcessor {
    config: LogDedupConfig,
    include: Vec<String>,
    exclude: Vec<String>,
    time_zone: jiff::tz::TimeZone,
    conditions: Vec<Expr>,
    held: Vec<Aggregate>,
    index: HashMap<Vec<u8>, usize>,
    deadline: Option<Instant>,
    owners: HashMap<String, Owner>,
    last_sweep: Instant,
}

fn observed(record: &LogRecord) -> u64 {
    if record.observed_time_unix_nano != 0 { record.observed_time_unix_nano } else { record.time_unix_nano }
}

/// An observed time as RFC 3339 with milliseconds, in UTC (`…Z`) or with
/// the offset of the configured zone.
fn observed_timestamp(unix_nanos: u64, zone: &jiff::tz::TimeZone) -> String {
    if *zone == jiff::tz::TimeZone::UTC {
        return rfc3339_millis(unix_nanos);
    }
    match jiff::Timestamp::from_nanosecond(i128::from(unix_nanos)) {
        Ok(at) => at.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        Err(_) => rfc3339_millis(unix_nanos),
    }
}

/// The directional 5-tuple of a flow record (a NATed connection's by its
/// conntrack original tuple and direction).
fn flow_tuple(record: &LogRecord) -> Option<String> {
    find_text(&record.attributes, attr::NETWORK_TRANSPORT)?;
    directed_flow_identity(&record.attributes)
}

impl LogDedupProcessor {
    /// A processor with the given (validated) config.
    pub fn new(config: LogDedupConfig) -> Self {
        LogDedupProcessor {
            include: LogDedupConfig::attribute_keys(&config.include_fields),
            exclude: LogDedupConfig::attribute_keys(&config.exclude_fields),
            time_zone: config.time_zone().unwrap_or(jiff::tz::TimeZone::UTC),
            conditions: parse_all(&config.conditions),
            config,
            held: Vec::new(),
            index: HashMap::new(),
            deadline: None,
            owners: HashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Flow mode: whether this flow record's interface owns its 5-tuple.
    fn owns(&mut self, record: &LogRecord, now: Instant) -> bool {
        let (Some(tuple), Some(interface)) =
            (flow_tuple(record), find_text(&record.attributes, attr::NETWORK_INTERFACE_NAME))
        else {
            return true;
        };
        let interval = self.config.interval;
        match self.owners.get_mut(&tuple) {
            Some(owner) if owner.interface == interface => {
                owner.last_seen = now;
                true
            }
            Some(owner) if now.duration_since(owner.last_seen) < interval => false,
            _ => {
                self.owners.insert(tuple, Owner { interface: interface.into_owned(), last_seen: now });
                true
            }
        }
    }

    /// What decides identity: resource, scope, event name, severity, body
    /// and the chosen attributes (timestamps never).
    fn identity(
        &self,
        resource: Option<&Resource>,
        scope: Option<&InstrumentationScope>,
        record: &LogRecord,
    ) -> Vec<u8> {
        let attributes: Vec<KeyValue> = record
            .attributes
            .iter()
            .filter(|kv| self.include.is_empty() || self.include.contains(&kv.key))
            .filter(|kv| !self.exclude.contains(&kv.key))
            .cloned()
            .collect();
        let normalized = LogRecord {
            event_name: record.event_name.clone(),
            severity_number: record.severity_number,
            severity_text: record.severity_text.clone(),
            body: record.body.clone(),
            attributes,
            ..Default::default()
        };
        let mut key = normalized.encode_to_vec();
        key.extend(resource.map(|r| r.encode_to_vec()).unwrap_or_default());
        key.push(0xff);
        key.extend(scope.map(|s| s.encode_to_vec()).unwrap_or_default());
        key
    }

    fn hold(&mut self, resource: Option<&Resource>, scope: Option<&InstrumentationScope>, record: LogRecord) {
        let key = self.identity(resource, scope, &record);
        let seen = observed(&record);
        match self.index.get(&key) {
            Some(&at) => {
                let aggregate = &mut self.held[at];
                aggregate.count += 1;
                aggregate.first_observed = aggregate.first_observed.min(seen);
                aggregate.last_observed = aggregate.last_observed.max(seen);
            }
            None => {
                self.index.insert(key, self.held.len());
                self.held.push(Aggregate {
                    resource: resource.cloned(),
                    scope: scope.cloned(),
                    record,
                    count: 1,
                    first_observed: seen,
                    last_observed: seen,
                });
            }
        }
    }

    /// Emits every aggregate, grouped back by resource and scope.
    fn emit(&mut self, out: &mut Vec<Payload>) {
        self.deadline = None;
        self.index.clear();
        if self.held.is_empty() {
            return;
        }
        let mut resources: Vec<ResourceLogs> = Vec::new();
        let count_key = self.config.log_count_attribute.clone();
        for aggregate in self.held.drain(..) {
            let mut record = aggregate.record;
            let string = |s: String| Some(AnyValue { value: Some(Value::StringValue(s)) });
            record.attributes.push(KeyValue {
                key: count_key.clone(),
                value: Some(AnyValue { value: Some(Value::IntValue(aggregate.count)) }),
                ..Default::default()
            });
            for (key, at) in [
                ("first_observed_timestamp", aggregate.first_observed),
                ("last_observed_timestamp", aggregate.last_observed),
            ] {
                record.attributes.push(KeyValue {
                    key: key.into(),
                    value: string(observed_timestamp(at, &self.time_zone)),
                    ..Default::default()
                });
            }
            record.observed_time_unix_nano = aggregate.last_observed;
            let resource_logs = match resources.iter_mut().find(|r| r.resource == aggregate.resource) {
                Some(existing) => existing,
                None => {
                    resources.push(ResourceLogs { resource: aggregate.resource, ..Default::default() });
                    resources.last_mut().unwrap_or_else(|| unreachable!("just pushed"))
                }
            };
            match resource_logs.scope_logs.iter_mut().find(|s| s.scope == aggregate.scope) {
                Some(scope) => scope.log_records.push(record),
                None => resource_logs.scope_logs.push(ScopeLogs {
                    scope: aggregate.scope,
                    log_records: vec![record],
                    schema_url: String::new(),
                }),
            }
        }
        out.push(Payload::Logs(resources));
    }

    /// Forgets 5-tuples no interface reported for an interval.
    fn sweep_owners(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) >= self.config.interval {
            let interval = self.config.interval;
            self.owners.retain(|_, owner| now.duration_since(owner.last_seen) < interval);
            self.last_sweep = now;
        }
    }
}

impl Processor for LogDedupProcessor {
    fn process(&mut self, payload: Payload, out: &mut Vec<Payload>) {
        let Payload::Logs(resources) = payload else {
            if !payload.is_empty() {
                out.push(payload);
            }
            return;
        };
        let now = Instant::now();
        self.sweep_owners(now);
        let mut passed: Vec<ResourceLogs> = Vec::new();
        for resource in resources {
            let mut passed_scopes = Vec::new();
            for scope in resource.scope_logs {
                let mut passed_records = Vec::new();
                for record in scope.log_records {
                    if self.config.flow_mode && record.event_name == event::FLOW {
                        if self.owns(&record, now) {
                            passed_records.push(record);
                        }
                    } else if !self.conditions.is_empty()
                        && !any_log_record(&self.conditions, &record, of_resource(resource.resource.as_ref()))
                    {
                        passed_records.push(record);
                    } else {
                        self.hold(resource.resource.as_ref(), scope.scope.as_ref(), record);
                    }
                }
                if !passed_records.is_empty() {
                    passed_scopes.push(ScopeLogs { log_records: passed_records, ..scope });
                }
            }
            if !passed_scopes.is_empty() {
                passed.push(ResourceLogs { scope_logs: passed_scopes, ..resource });
            }
        }
        if !passed.is_empty() {
            out.push(Payload::Logs(passed));
        }
        if !self.held.is_empty() && self.deadline.is_none() {
            self.deadline = Some(now + self.config.interval);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn holds_data(&self) -> bool {
        !self.held.is_empty()
    }

    fn on_deadline(&mut self, _now: Instant, out: &mut Vec<Payload>) {
        self.emit(out);
    }

    fn flush(&mut self, out: &mut Vec<Payload>) {
        self.emit(out);
    }
}

#[cfg(test)]
mod tests;
