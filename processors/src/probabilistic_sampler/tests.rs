use flowtel_core::{attributes::find, config::Validate};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};

use super::*;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn flow(source: (&str, i64), destination: (&str, i64), event_name: &str) -> LogRecord {
    LogRecord {
        event_name: event_name.into(),
        attributes: vec![
            kv("network.transport", Value::StringValue("tcp".into())),
            kv("source.address", Value::StringValue(source.0.into())),
            kv("source.port", Value::IntValue(source.1)),
            kv("destination.address", Value::StringValue(destination.0.into())),
            kv("destination.port", Value::IntValue(destination.1)),
        ],
        ..Default::default()
    }
}

fn sampler(percentage: f64, seed: u32) -> ProbabilisticSampler {
    ProbabilisticSampler::new(ProbabilisticSamplerConfig {
        sampling_percentage: percentage,
        hash_seed: seed,
        ..ProbabilisticSamplerConfig::default()
    })
}

fn address(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

#[test]
fn the_kept_fraction_converges_and_both_directions_stay_together() {
    let sampler = sampler(25.0, 7);
    let flows = 100_000u32;
    let mut kept = 0;
    for i in 0..flows {
        let (client, server) = ((address(i).clone(), 30_000 + (i % 20_000) as i64), ("192.0.2.10".to_owned(), 443));
        let forward = flow((&client.0, client.1), (&server.0, server.1), "network.flow");
        let reverse = flow((&server.0, server.1), (&client.0, client.1), "network.flow");
        let drop = flow((&client.0, client.1), (&server.0, server.1), "network.packet.drop");
        let decision = sampler.keeps(&forward);
        assert_eq!(sampler.keeps(&reverse), decision, "flow {i}: both directions decide alike");
        assert_eq!(sampler.keeps(&drop), decision, "flow {i}: every record of the flow decides alike");
        kept += u32::from(decision);
    }
    let fraction = f64::from(kept) / f64::from(flows);
    // The binomial standard deviation is 0.14%; 5 of them is 0.7%.
    assert!((fraction - 0.25).abs() < 0.007, "kept {fraction}");
}

#[test]
fn seeds_decide_independently_and_extremes_are_exact() {
    let (a, b) = (sampler(50.0, 1), sampler(50.0, 2));
    let differ = (0..1000)
        .filter(|i| {
            let record = flow((&address(*i), 1000), ("192.0.2.1", 80), "network.flow");
            a.keeps(&record) != b.keeps(&record)
        })
        .count();
    assert!((400..600).contains(&differ), "{differ} of 1000 decided differently");
    let record = flow(("10.0.0.1", 1), ("10.0.0.2", 2), "network.flow");
    assert!(sampler(100.0, 0).keeps(&record));
    assert!(!sampler(0.0, 0).keeps(&record));
}

/// The records a sampler keeps of one payload.
fn sampled(sampler: &mut ProbabilisticSampler, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let payload = Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
        ..Default::default()
    }]);
    let mut out = Vec::new();
    sampler.process(payload, &mut out);
    let Payload::Logs(resources) = &out[0] else { panic!("logs") };
    resources[0].scope_logs[0].log_records.clone()
}

#[test]
fn kept_records_say_what_they_stand_for_and_other_signals_pass() {
    let mut sampler = sampler(50.0, 0);
    let records: Vec<LogRecord> =
        (0..200).map(|i| flow((&address(i), 1000), ("192.0.2.1", 80), "network.flow")).collect();
    let mut already = records[0].clone();
    already.attributes.push(kv(ADJUSTED_COUNT, Value::DoubleValue(2.0)));
    let kept = sampled(&mut sampler, records);
    assert!((60..140).contains(&kept.len()), "{}", kept.len());
    assert!(kept.iter().all(|r| find(&r.attributes, ADJUSTED_COUNT) == Some(&Value::DoubleValue(2.0))));

    let mut resampled = already.clone();
    set_adjusted_count(&mut resampled.attributes, 2.0);
    assert_eq!(find(&resampled.attributes, ADJUSTED_COUNT), Some(&Value::DoubleValue(4.0)));

    let mut out = Vec::new();
    sampler.process(Payload::Metrics(Vec::new()), &mut out);
    assert!(out.is_empty(), "an empty payload is not passed on");
}

#[test]
fn records_without_a_tuple_use_their_trace_or_are_kept() {
    let sampler = sampler(1.0, 0);
    let plain = LogRecord::default();
    assert!(sampler.keeps(&plain), "nothing to decide by: kept");
    assert_eq!(decision_key(&plain, &DecisionSource::FlowThenTrace), None);
    let traced = LogRecord { trace_id: vec![0xab; 16], ..Default::default() };
    assert_eq!(decision_key(&traced, &DecisionSource::FlowThenTrace).unwrap(), &[0xab; 16][..]);
    let chosen = DecisionSource::Attributes(vec!["destination.port".into(), "absent".into()]);
    assert_eq!(decision_key(&flow(("10.0.0.1", 1), ("10.0.0.2", 2), "x"), &chosen).unwrap(), "2\u{1f}".as_bytes());
    assert_eq!(decision_key(&plain, &chosen), None, "none of the attributes: nothing to decide by");

    let closed = ProbabilisticSampler::new(ProbabilisticSamplerConfig {
        sampling_percentage: 99.0,
        fail_closed: true,
        ..ProbabilisticSamplerConfig::default()
    });
    assert!(!closed.keeps(&plain), "fail_closed drops what cannot be decided");
    assert!(closed.keeps(&LogRecord { trace_id: vec![0; 16], ..Default::default() }));
}

/// A sampler from its config (JSON, the YAML config's data model).
fn from_config(json: &str) -> ProbabilisticSampler {
    let config: ProbabilisticSamplerConfig = serde_json::from_str(json).expect("config");
    assert_eq!(config.validate(), Vec::new());
    ProbabilisticSampler::new(config)
}

#[test]
fn the_collectors_attribute_source_and_from_attribute_choose_what_decides() {
    let by_id = from_config(r#"{"sampling_percentage": 50, "attribute_source": "record", "from_attribute": "log.id"}"#);
    let with_id = |id: &str, port: i64| {
        let mut record = flow(("10.0.0.1", port), ("10.0.0.2", 80), "app");
        record.attributes.push(kv("log.id", Value::StringValue(id.into())));
        record
    };
    let kept = (0..1000).filter(|i| by_id.keeps(&with_id(&format!("id-{i}"), 1))).count();
    assert!((400..600).contains(&kept), "{kept} of 1000");
    for i in 0..100 {
        let id = format!("id-{i}");
        assert_eq!(by_id.keeps(&with_id(&id, 1)), by_id.keeps(&with_id(&id, 2)), "the 5-tuple no longer decides");
    }

    let by_trace = from_config(r#"{"sampling_percentage": 50, "attribute_source": "traceID", "fail_closed": true}"#);
    assert!(!by_trace.keeps(&flow(("10.0.0.1", 1), ("10.0.0.2", 2), "x")), "a flow without a trace id");
    let traced = (0..1000u32)
        .filter(|i| by_trace.keeps(&LogRecord { trace_id: [i.to_be_bytes(); 4].concat(), ..Default::default() }))
        .count();
    assert!((400..600).contains(&traced), "{traced} of 1000");
}

#[test]
fn a_records_sampling_priority_overrides_the_percentage() {
    let mut sampler = from_config(r#"{"sampling_percentage": 0, "sampling_priority": "sampling.priority"}"#);
    let with_priority = |i: u32, priority: Value| {
        let mut record = flow((&address(i), 1000), ("192.0.2.1", 80), "network.flow");
        record.attributes.push(kv("sampling.priority", priority));
        record
    };
    assert!(!sampler.keeps(&flow(("10.0.0.1", 1), ("10.0.0.2", 2), "x")), "no priority: the 0% setting");
    assert!((0..100).all(|i| sampler.keeps(&with_priority(i, Value::IntValue(100)))));
    assert!((0..100).all(|i| !sampler.keeps(&with_priority(i, Value::StringValue("0".into())))));
    let halves: Vec<LogRecord> = (0..1000).map(|i| with_priority(i, Value::DoubleValue(50.0))).collect();
    let kept = sampled(&mut sampler, halves);
    assert!((400..600).contains(&kept.len()), "{} of 1000", kept.len());
    assert!(kept.iter().all(|r| find(&r.attributes, ADJUSTED_COUNT) == Some(&Value::DoubleValue(2.0))));
}

#[test]
fn config_errors_name_the_field() {
    let problems = |json: &str| {
        let config: ProbabilisticSamplerConfig = serde_json::from_str(json).expect("parses");
        config.validate().into_iter().map(|(field, _)| field).collect::<Vec<_>>()
    };
    assert_eq!(problems(r#"{"mode": "proportional"}"#), ["mode"]);
    assert_eq!(problems(r#"{"attribute_source": "record"}"#), ["from_attribute"]);
    assert_eq!(problems(r#"{"from_attribute": "x"}"#), ["from_attribute"]);
    assert_eq!(problems(r#"{"attribute_source": "traceID", "hash_attributes": ["a"]}"#), ["hash_attributes"]);
    assert!(serde_json::from_str::<ProbabilisticSamplerConfig>(r#"{"attribute_source": "span"}"#).is_err());
}

#[test]
fn decisions_are_the_collectors_hash_seed_decisions() {
    // 32-bit FNV-1a's published test vectors.
    assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
    assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    // The seed goes first, little-endian; 14 bits decide.
    assert_eq!(bucket(0x0403_0201, b"x"), fnv1a_32(&[1, 2, 3, 4, b'x']) & 0x3fff);
    // The percentage becomes buckets in 32-bit floating point, rounded down.
    assert_eq!(accepted_buckets(25.0), 4096);
    assert_eq!(accepted_buckets(15.3), 2506);
    assert_eq!(accepted_buckets(0.001), 0);
    // A trace id decides by its 16 raw bytes.
    let sampler = from_config(r#"{"sampling_percentage": 15.3, "hash_seed": 22, "attribute_source": "traceID"}"#);
    for i in 0..2000u32 {
        let trace_id = [i.to_le_bytes(); 4].concat();
        let expected = bucket(22, &trace_id) < 2506;
        assert_eq!(sampler.keeps(&LogRecord { trace_id, ..Default::default() }), expected);
    }
}

#[test]
fn spans_are_sampled_by_trace_id_and_their_priority() {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    let mut sampler = sampler(50.0, 7);
    let span = |trace: u32, priority: Option<i64>| Span {
        trace_id: [trace.to_be_bytes(); 4].concat(),
        span_id: vec![1; 8],
        attributes: priority.map(|p| vec![kv(SPAN_PRIORITY, Value::IntValue(p))]).unwrap_or_default(),
        ..Default::default()
    };
    // Two spans of every trace: a trace is kept or dropped whole.
    let spans: Vec<Span> = (0..1000).flat_map(|t| [span(t, None), span(t, None)]).collect();
    let forced = vec![span(5000, Some(1)), span(5001, Some(0))];
    let mut out = Vec::new();
    let payload = Payload::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans { spans: spans.into_iter().chain(forced).collect(), ..Default::default() }],
        ..Default::default()
    }]);
    sampler.process(payload, &mut out);
    let Payload::Traces(resources) = &out[0] else { panic!("traces") };
    let kept = &resources[0].scope_spans[0].spans;
    let traces: std::collections::BTreeMap<&[u8], usize> = kept.iter().fold(Default::default(), |mut seen, s| {
        *seen.entry(&s.trace_id[..]).or_default() += 1;
        seen
    });
    let forced_kept = span(5000, None).trace_id;
    assert_eq!(traces.get(&forced_kept[..]), Some(&1), "sampling.priority 1 keeps");
    assert!(!traces.contains_key(&span(5001, None).trace_id[..]), "sampling.priority 0 drops");
    assert!(traces.iter().all(|(id, &n)| n == 2 || *id == &forced_kept[..]), "traces are kept whole");
    assert!((400..600).contains(&(traces.len() - 1)), "{} of 1000 traces", traces.len() - 1);
}
