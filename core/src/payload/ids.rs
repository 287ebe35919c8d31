//! Trace and span ids of the lengths OTLP defines: 16 bytes for a trace id,
//! 8 for a span id. An item with an id of another length is removed where
//! it enters flowtel, and its sender told (an OTLP partial success): passed
//! on, it would make a strict backend refuse the whole batch it lands in,
//! with other senders' data in it.

use opentelemetry_proto::tonic::metrics::v1::{Exemplar, metric::Data};

use super::Payload;

const TRACE_ID: usize = 16;
const SPAN_ID: usize = 8;

/// What [`Payload::remove_malformed_ids`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalformedIds {
    /// Items removed.
    pub items: u64,
    /// What was wrong with the first of them.
    pub first: String,
}

/// The problem with an id that must be `want` bytes (or, when `optional`, empty).
fn id_problem(name: &str, id: &[u8], want: usize, optional: bool) -> Option<String> {
    let fine = id.len() == want || (optional && id.is_empty());
    (!fine).then(|| {
        let or_none = if optional { " (or none)" } else { "" };
        format!("{name} is {} bytes; OTLP requires {want}{or_none}", id.len())
    })
}

fn exemplar_problem(exemplars: &[Exemplar]) -> Option<String> {
    exemplars.iter().find_map(|e| {
        id_problem("an exemplar's trace_id", &e.trace_id, TRACE_ID, true)
            .or_else(|| id_problem("an exemplar's span_id", &e.span_id, SPAN_ID, true))
    })
}

/// Keeps the items without a problem; counts and remembers the first one.
fn retain<T>(items: &mut Vec<T>, found: &mut Option<MalformedIds>, problem: impl Fn(&T) -> Option<String>) {
    items.retain(|item| match problem(item) {
        None => true,
        Some(why) => {
            let found = found.get_or_insert_with(|| MalformedIds { items: 0, first: why });
            found.items += 1;
            false
        }
    });
}

impl Payload {
    /// Removes the log records, spans and metric data points whose trace or
    /// span ids (their own, their links' or their exemplars') have a length
    /// OTLP does not allow. `None` when every item is well formed.
    pub fn remove_malformed_ids(&mut self) -> Option<MalformedIds> {
        let mut found = None;
        match self {
            // Checked when it was kept encoded: its ids have OTLP's lengths.
            Payload::Encoded(_) => {}
            Payload::Logs(resources) => {
                for scope in resources.iter_mut().flat_map(|r| &mut r.scope_logs) {
                    retain(&mut scope.log_records, &mut found, |record| {
                        id_problem("trace_id", &record.trace_id, TRACE_ID, true)
                            .or_else(|| id_problem("span_id", &record.span_id, SPAN_ID, true))
                    });
                }
            }
            Payload::Traces(resources) => {
                for scope in resources.iter_mut().flat_map(|r| &mut r.scope_spans) {
                    retain(&mut scope.spans, &mut found, |span| {
                        id_problem("trace_id", &span.trace_id, TRACE_ID, false)
                            .or_else(|| id_problem("span_id", &span.span_id, SPAN_ID, false))
                            .or_else(|| id_problem("parent_span_id", &span.parent_span_id, SPAN_ID, true))
                            .or_else(|| {
                                span.links.iter().find_map(|link| {
                                    id_problem("a link's trace_id", &link.trace_id, TRACE_ID, false)
                                        .or_else(|| id_problem("a link's span_id", &link.span_id, SPAN_ID, false))
                                })
                            })
                    });
                }
            }
            Payload::Metrics(resources) => {
                for metric in resources.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics) {
                    match &mut metric.data {
                        Some(Data::Gauge(d)) => {
                            retain(&mut d.data_points, &mut found, |p| exemplar_problem(&p.exemplars))
                        }
                        Some(Data::Sum(d)) => {
                            retain(&mut d.data_points, &mut found, |p| exemplar_problem(&p.exemplars))
                        }
                        Some(Data::Histogram(d)) => {
                            retain(&mut d.data_points, &mut found, |p| exemplar_problem(&p.exemplars));
                        }
                        Some(Data::ExponentialHistogram(d)) => {
                            retain(&mut d.data_points, &mut found, |p| exemplar_problem(&p.exemplars));
                        }
                        Some(Data::Summary(_)) | None => {}
                    }
                }
            }
        }
        if found.is_some() {
            self.prune_empty();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
        trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link},
    };

    use super::*;

    fn logs(records: Vec<LogRecord>) -> Payload {
        Payload::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..ScopeLogs::default() }],
            ..ResourceLogs::default()
        }])
    }

    #[test]
    fn records_with_ids_of_the_wrong_length_are_removed_and_named() {
        let good = LogRecord { trace_id: vec![1; 16], span_id: vec![2; 8], ..LogRecord::default() };
        let bad = LogRecord { trace_id: vec![1; 5], ..LogRecord::default() };
        let mut payload = logs(vec![good.clone(), LogRecord::default(), bad.clone(), bad]);
        let found = payload.remove_malformed_ids().unwrap();
        assert_eq!(found, MalformedIds { items: 2, first: "trace_id is 5 bytes; OTLP requires 16 (or none)".into() });
        assert_eq!(payload, logs(vec![good, LogRecord::default()]));
        assert_eq!(logs(vec![LogRecord::default()]).remove_malformed_ids(), None);
    }

    #[test]
    fn spans_need_both_ids_and_well_formed_links() {
        let span = Span { trace_id: vec![1; 16], span_id: vec![2; 8], ..Span::default() };
        let bad_link = Span { links: vec![Link { trace_id: vec![1; 16], ..Link::default() }], ..span.clone() };
        let no_span_id = Span { span_id: Vec::new(), ..span.clone() };
        let mut payload = Payload::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span, bad_link, no_span_id], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }]);
        let found = payload.remove_malformed_ids().unwrap();
        assert_eq!(found.items, 2);
        assert!(found.first.starts_with("a link's span_id is 0 bytes"), "{}", found.first);
        assert_eq!(payload.item_count(), 1);
        let mut empty = Payload::Traces(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![Span::default()], ..ScopeSpans::default() }],
            ..ResourceSpans::default()
        }]);
        empty.remove_malformed_ids();
        assert!(empty.is_empty(), "the only span went, and its envelopes with it");
    }
}
