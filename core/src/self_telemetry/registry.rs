//! A small registry of flowtel's own counters and gauges.
//!
//! Components get cheap atomic handles; the registry renders them in the
//! Prometheus text format and hands snapshots to the OTLP push.

use crate::{
    exposition::{self, Format, Kind, Value},
    payload::Signal,
};

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

type GaugeFn = Arc<dyn Fn() -> i64 + Send + Sync>;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Observed(GaugeFn),
}

impl Series {
    fn value(&self) -> f64 {
        match self {
            Series::Counter(c) => c.get() as f64,
            Series::Gauge(g) => g.get() as f64,
            Series::Observed(f) => f() as f64,
        }
    }
}

type Labels = Vec<(String, String)>;

struct Family {
    help: &'static str,
    is_counter: bool,
    series: BTreeMap<Labels, Series>,
}

/// One series' value at the time of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, e.g. `flowtel_exporter_sent_items_total`.
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Counter (monotonic sum) or gauge.
    pub is_counter: bool,
    /// Label pairs.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A component's state as its `/debug/<name>` page shows it.
type DebugPage = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// flowtel's own metrics, and the state components show on the telemetry
/// server's `/debug/<name>` pages.
#[derive(Default)]
pub struct MetricsRegistry {
    families: Mutex<BTreeMap<&'static str, Family>>,
    debug_pages: Mutex<BTreeMap<String, DebugPage>>,
}

impl MetricsRegistry {
    /// Serves what `render` returns on `/debug/<name>` (JSON), built at
    /// each request. A later page of the same name replaces the earlier.
    pub fn add_debug_page(&self, name: &str, render: impl Fn() -> serde_json::Value + Send + Sync + 'static) {
        self.debug_pages.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), Arc::new(render));
    }

    /// The page `name`, rendered now.
    pub fn debug_page(&self, name: &str) -> Option<serde_json::Value> {
        let page = self.debug_pages.lock().unwrap_or_else(PoisonError::into_inner).get(name).cloned();
        page.map(|render| render())
    }

    /// The names of the debug pages.
    pub fn debug_pages(&self) -> Vec<String> {
        self.debug_pages.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
    }

    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn series<T>(
        &self,
        name: &'static str,
        help: &'static str,
        is_counter: bool,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
        get: impl Fn(&Series) -> Option<T>,
    ) -> Option<T> {
        let mut labels: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        labels.sort();
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family { help, is_counter, series: BTreeMap::new() });
        get(family.series.entry(labels).or_insert_with(make))
    }

    /// The counter `name` with `labels`, created at zero on first use.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.series(
            name,
            help,
            true,
            labels,
            || Series::Counter(Counter::default()),
            |s| match s {
                Series::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
    }

    /// The gauge `name` with `labels`, created at zero on first use.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        self.series(
            name,
            help,
            false,
            labels,
            || Series::Gauge(Gauge::default()),
            |s| match s {
                Series::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
    }

    /// A gauge whose value is read from `observe` whenever metrics are collected.
    pub fn observed_gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        observe: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        let observe: GaugeFn = Arc::new(observe);
        let _ = self.series(name, help, false, labels, || Series::Observed(observe), |_| Some(()));
    }

    /// Every series' current value.
    pub fn samples(&self) -> Vec<Sample> {
        self.collect(|_| true)
    }

    /// The current value of every series of the metric `name`.
    pub fn family_samples(&self, name: &str) -> Vec<Sample> {
        self.collect(|family| family == name)
    }

    fn collect(&self, wanted: impl Fn(&str) -> bool) -> Vec<Sample> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families
            .iter()
            .filter(|(name, _)| wanted(name))
            .flat_map(|(name, family)| {
                family.series.iter().map(|(labels, series)| Sample {
                    name,
                    help: family.help,
                    is_counter: family.is_counter,
                    labels: labels.clone(),
                    value: series.value(),
                })
            })
            .collect()
    }

    /// Every metric in `format`, written by the shared encoder ([`crate::exposition`]).
    pub fn render(&self, format: Format) -> String {
        let mut families: Vec<exposition::Family> = Vec::new();
        for sample in self.samples() {
            let (name, kind) = match sample.name.strip_suffix("_total") {
                Some(stem) if sample.is_counter => (stem, Kind::Counter),
                _ => (sample.name, if sample.is_counter { Kind::Counter } else { Kind::Gauge }),
            };
            if families.last().is_none_or(|family| family.name != name) {
                families.push(exposition::Family {
                    name: name.to_owned(),
                    help: sample.help.to_owned(),
                    unit: None,
                    kind,
                    series: Vec::new(),
                });
            }
            if let Some(family) = families.last_mut() {
                family.series.push(exposition::Series {
                    labels: sample.labels,
                    value: Value::Number(sample.value),
                    timestamp_ms: None,
                    exemplars: Vec::new(),
                });
            }
        }
        exposition::encode(format, families, &[])
    }
}

/// One counter per signal (the `signal` label), so hot paths never look a series up.
#[derive(Clone)]
pub struct SignalCounters([Counter; 3]);

impl SignalCounters {
    /// The counters `name` with `labels` plus `signal`.
    pub fn new(registry: &MetricsRegistry, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Self {
        SignalCounters(Signal::ALL.map(|signal| {
            let mut all = labels.to_vec();
            all.push(("signal", signal.as_str()));
            registry.counter(name, help, &all)
        }))
    }

    /// The counter of `signal`.
    pub fn get(&self, signal: Signal) -> &Counter {
        &self.0[signal as usize]
    }
}

/// What a receiver counts of the items it hands to the pipelines.
#[derive(Clone)]
pub struct ReceiverItems {
    /// `flowtel_receiver_accepted_items_total`: taken into the pipelines.
    pub accepted: SignalCounters,
    /// `flowtel_receiver_refused_items_total`: refused (full or stopping pipelines).
    pub refused: SignalCounters,
}

impl ReceiverItems {
    /// The counters of receiver `receiver` over `transport` (`grpc`, `http`, `kernel`).
    pub fn new(registry: &MetricsRegistry, receiver: &str, transport: &str) -> Self {
        let labels = [("receiver", receiver), ("transport", transport)];
        ReceiverItems {
            accepted: SignalCounters::new(
                registry,
                "flowtel_receiver_accepted_items_total",
                "Items taken into the pipelines.",
                &labels,
            ),
            refused: SignalCounters::new(
                registry,
                "flowtel_receiver_refused_items_total",
                "Items refused because the pipelines were full or stopping (the sender was told to retry).",
                &labels,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_labels_share_one_series() {
        let registry = MetricsRegistry::new();
        let a = registry.counter("x_total", "help", &[("b", "1"), ("a", "2")]);
        let b = registry.counter("x_total", "help", &[("a", "2"), ("b", "1")]);
        a.add(2);
        b.inc();
        assert_eq!(a.get(), 3);
        registry.observed_gauge("q", "queue", &[("exporter", "say \"hi\"")], || 7);
        let text = registry.render(Format::Prometheus);
        assert!(text.contains("# TYPE x_total counter\nx_total{a=\"2\",b=\"1\"} 3\n"), "{text}");
        assert!(text.contains("q{exporter=\"say \\\"hi\\\"\"} 7\n"), "{text}");
    }
}
