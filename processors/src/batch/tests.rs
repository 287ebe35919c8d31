use std::time::Duration;

use flowtel_core::{Payload, component::Processor, config::Validate};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use tokio::time::Instant;

use super::{BatchConfig, BatchProcessor};

fn records(n: usize) -> Payload {
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs { log_records: vec![LogRecord::default(); n], ..Default::default() }],
        ..Default::default()
    }])
}

fn sizes(out: &[Payload]) -> Vec<usize> {
    out.iter().map(Payload::item_count).collect()
}

fn config(size: usize, max: usize, timeout_ms: u64) -> BatchConfig {
    BatchConfig { send_batch_size: size, send_batch_max_size: max, timeout: Duration::from_millis(timeout_ms) }
}

#[test]
fn holds_until_size_is_reached() {
    let mut batch = BatchProcessor::new(config(10, 0, 1000));
    let mut out = Vec::new();
    batch.process(records(4), &mut out);
    batch.process(records(4), &mut out);
    assert!(out.is_empty());
    assert!(batch.deadline().is_some());
    batch.process(records(4), &mut out);
    assert_eq!(sizes(&out), vec![12]);
    assert_eq!(batch.deadline(), None);
}

#[test]
fn max_size_splits_and_keeps_the_remainder() {
    let mut batch = BatchProcessor::new(config(10, 10, 1000));
    let mut out = Vec::new();
    batch.process(records(25), &mut out);
    assert_eq!(sizes(&out), vec![10, 10]);
    out.clear();
    batch.flush(&mut out);
    assert_eq!(sizes(&out), vec![5]);
}

#[test]
fn timeout_sends_what_is_held() {
    let mut batch = BatchProcessor::new(config(100, 0, 50));
    let mut out = Vec::new();
    batch.process(records(3), &mut out);
    let deadline = batch.deadline().expect("a deadline after the first item");
    assert!(deadline > Instant::now());
    batch.on_deadline(deadline, &mut out);
    assert_eq!(sizes(&out), vec![3]);
    assert_eq!(batch.deadline(), None);
}

#[test]
fn zero_timeout_passes_through_split_by_max() {
    let mut batch = BatchProcessor::new(config(0, 4, 0));
    let mut out = Vec::new();
    batch.process(records(9), &mut out);
    assert_eq!(sizes(&out), vec![4, 4, 1]);
}

#[test]
fn max_below_size_is_refused() {
    let problems = config(100, 10, 200).validate();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].0, "send_batch_max_size");
}
