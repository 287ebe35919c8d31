//! flowtel's exporters, one folder each: config, logic, tests and a README.
//!
//! - [`otlp_grpc`] (alias `otlp`): OTLP over gRPC.
//! - [`otlp_http`] (alias `otlphttp`): OTLP over HTTP, protobuf or JSON.
//! - [`debug`]: prints what passes, at three levels of detail.
//! - [`file`]: OTLP/JSON lines in a file, rotated by size.
//! - [`load_balancing`] (alias `loadbalancing`): spreads data over several
//!   OTLP backends by a routing key, with consistent hashing.
//! - [`hubble`]: serves the Hubble API (Observer, Peer) from flow and drop records.
//! - [`prometheus`]: serves metrics for Prometheus to scrape (text or OpenMetrics with exemplars).
//! - [`pcap`]: the packets records carry, as pcap-ng files for Wireshark.

pub mod debug;
pub mod file;
pub mod hubble;
pub mod load_balancing;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod pcap;
pub mod prometheus;
