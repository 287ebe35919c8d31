//! flowtel's extensions: components that serve the service rather than a
//! pipeline, listed in `service::extensions` as in the OpenTelemetry
//! Collector.

pub mod file_storage;
