//! flowtel's pipeline core.
//!
//! Everything the components share lives here: the data that flows between
//! them ([`payload`]), the contracts they implement ([`component`]), the
//! collector-style configuration ([`config`]), the settings shared by the
//! network exporters ([`export`]), how receivers hand data to pipelines
//! ([`intake`]), the wiring of receivers, processor chains and exporter
//! queues ([`topology`]), the storage persistent queues use ([`storage`])
//! and flowtel's own metrics and logs ([`self_telemetry`]). The core knows no concrete component.

pub mod attributes;
pub mod component;
pub mod condition;
pub mod config;
pub mod export;
pub mod exposition;
pub mod histogram;
pub mod intake;
pub mod item_metrics;
pub mod kube_client;
pub mod linux;
pub mod memory;
pub mod payload;
pub mod receipt;
pub mod schema;
pub mod self_telemetry;
pub mod storage;
pub mod time;
pub mod topology;

pub use component::{ComponentId, ComponentKind, PipelineId};
pub use payload::{Payload, Signal};
