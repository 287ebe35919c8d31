//! flowtel's connectors, one folder each: config, logic, tests and a README.
//! A connector is listed as an exporter of one pipeline and a receiver of
//! another, as in the collector.
//!
//! - [`forward`]: passes data from pipelines to others of the same signal.
//! - [`count`]: counts log records, spans, span events, metrics and data points into metrics.
//! - [`signal_to_metrics`]: sums and histograms of record, span and data point values.

pub mod count;
pub mod forward;
pub mod signal_to_metrics;
