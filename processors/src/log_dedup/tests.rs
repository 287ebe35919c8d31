use std::time::Duration;

use flowtel_core::{attributes::find, config::Validate};

use super::*;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }),
        ..Default::default()
    }
}

fn logs(records: Vec<LogRecord>) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        resource: Some(Resource { attributes: vec![kv("host.name", "a")], ..Default::default() }),
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        schema_url: String::new(),
    }])
}

fn records(payloads: &[Payload]) -> Vec<LogRecord> {
    payloads
        .iter()
        .flat_map(|p| match p {
            Payload::Logs(resources) => {
                resources.iter().flat_map(|r| r.scope_logs.iter().flat_map(|s| s.log_records.clone())).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

fn drop(reason: &str, port: &str, at: u64) -> LogRecord {
    LogRecord {
        event_name: "network.packet.drop".into(),
        observed_time_unix_nano: at,
        attributes: vec![kv("network.drop.reason", reason), kv("source.port", port)],
        ..Default::default()
    }
}

fn count(record: &LogRecord) -> Option<&Value> {
    find(&record.attributes, "log_count")
}

#[tokio::test(start_paused = true)]
async fn identical_records_within_the_interval_become_one_with_a_count() {
    let mut dedup = LogDedupProcessor::new(LogDedupConfig { interval: Duration::from_secs(5), ..Default::default() });
    let mut out = Vec::new();
    dedup.process(logs((0..5).map(|i| drop("NO_SOCKET", "1000", 1_000_000_000 + i)).collect()), &mut out);
    dedup.process(logs(vec![drop("NETFILTER_DROP", "1000", 2_000_000_000)]), &mut out);
    assert!(out.is_empty(), "held until the interval ends");
    let deadline = dedup.deadline().unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(Instant::now() >= deadline);
    dedup.on_deadline(Instant::now(), &mut out);
    let emitted = records(&out);
    assert_eq!(emitted.len(), 2);
    assert_eq!(count(&emitted[0]), Some(&Value::IntValue(5)));
    assert_eq!(count(&emitted[1]), Some(&Value::IntValue(1)));
    assert_eq!(
        find(&emitted[0].attributes, "first_observed_timestamp"),
        Some(&Value::StringValue("1970-01-01T00:00:01.000Z".into()))
    );
    assert_eq!(dedup.deadline(), None);
    let Payload::Logs(resources) = &out[0] else { panic!() };
    assert_eq!(resources.len(), 1, "regrouped under their one resource");
}

#[test]
fn included_and_excluded_fields_decide_identity() {
    let mut only_reason = LogDedupProcessor::new(LogDedupConfig {
        include_fields: vec!["attributes.network.drop.reason".into()],
        ..Default::default()
    });
    let mut out = Vec::new();
    only_reason.process(logs(vec![drop("NO_SOCKET", "1", 1), drop("NO_SOCKET", "2", 2)]), &mut out);
    only_reason.flush(&mut out);
    assert_eq!(records(&out).len(), 1, "ports differ but do not count");

    let mut without_port = LogDedupProcessor::new(LogDedupConfig {
        exclude_fields: vec!["attributes.source.port".into()],
        ..Default::default()
    });
    let mut out = Vec::new();
    without_port
        .process(logs(vec![drop("NO_SOCKET", "1", 1), drop("NO_SOCKET", "2", 2), drop("TCP_CSUM", "2", 3)]), &mut out);
    without_port.flush(&mut out);
    assert_eq!(records(&out).len(), 2);
}

#[test]
fn observed_timestamps_are_written_in_the_configured_time_zone() {
    let berlin = LogDedupConfig { timezone: "Europe/Berlin".into(), ..Default::default() };
    assert_eq!(berlin.validate(), Vec::new());
    let mut dedup = LogDedupProcessor::new(berlin);
    let mut out = Vec::new();
    // 2023-11-14T22:13:20.123Z is 23:13 in Berlin (CET, +01:00).
    dedup.process(logs(vec![drop("NO_SOCKET", "1", 1_700_000_000_123_000_000)]), &mut out);
    dedup.flush(&mut out);
    assert_eq!(
        find(&records(&out)[0].attributes, "last_observed_timestamp"),
        Some(&Value::StringValue("2023-11-14T23:13:20.123+01:00".into()))
    );
    let unknown = LogDedupConfig { timezone: "Mars/Olympus".into(), ..Default::default() };
    let problems = unknown.validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "timezone");
    assert!(problems[0].1.contains("Mars/Olympus"), "{}", problems[0].1);
}

#[test]
fn only_records_matching_the_conditions_are_deduplicated() {
    let config = LogDedupConfig {
        conditions: vec![r#"attributes["network.drop.reason"] == "NO_SOCKET""#.into()],
        ..Default::default()
    };
    assert_eq!(config.validate(), Vec::new());
    let mut dedup = LogDedupProcessor::new(config);
    let mut out = Vec::new();
    let sent =
        vec![drop("NO_SOCKET", "1", 1), drop("NO_SOCKET", "1", 2), drop("TCP_CSUM", "1", 3), drop("TCP_CSUM", "1", 4)];
    dedup.process(logs(sent), &mut out);
    assert_eq!(records(&out).len(), 2, "the two not matching pass at once, unchanged");
    assert!(records(&out).iter().all(|r| count(r).is_none()));
    dedup.flush(&mut out);
    let all = records(&out);
    assert_eq!(all.len(), 3);
    assert_eq!(count(&all[2]), Some(&Value::IntValue(2)));

    let bad = LogDedupConfig { conditions: vec!["a ==".into()], ..Default::default() };
    assert_eq!(bad.validate()[0].0, "conditions[0]");
}

fn flow(interface: &str, bytes: &str) -> LogRecord {
    LogRecord {
        event_name: "network.flow".into(),
        attributes: vec![
            kv("network.transport", "udp"),
            kv("source.address", "10.0.0.1"),
            kv("source.port", "5000"),
            kv("destination.address", "10.0.1.1"),
            kv("destination.port", "53"),
            kv("network.interface.name", interface),
            kv("flow.bytes", bytes),
        ],
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn flow_mode_keeps_the_first_interface_of_a_flow() {
    let mut dedup = LogDedupProcessor::new(LogDedupConfig {
        interval: Duration::from_secs(10),
        flow_mode: true,
        ..Default::default()
    });
    let mut out = Vec::new();
    dedup.process(logs(vec![flow("veth1", "100"), flow("eth0", "100")]), &mut out);
    tokio::time::advance(Duration::from_secs(5)).await;
    dedup.process(logs(vec![flow("eth0", "50"), flow("veth1", "50")]), &mut out);
    let passed = records(&out);
    let interfaces: Vec<String> =
        passed.iter().map(|r| find_text(&r.attributes, "network.interface.name").unwrap().into_owned()).collect();
    assert_eq!(interfaces, ["veth1", "veth1"], "the second interface's copies are dropped");
    assert!(passed.iter().all(|r| count(r).is_none()), "flow records pass at once, unaggregated");
    assert_eq!(dedup.deadline(), None, "nothing held");

    // A flow quiet on its first interface for an interval may be taken by another.
    tokio::time::advance(Duration::from_secs(11)).await;
    out.clear();
    dedup.process(logs(vec![flow("eth0", "10")]), &mut out);
    assert_eq!(records(&out).len(), 1);
}
