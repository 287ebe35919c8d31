//! flowtel's processors, one folder each: config, logic, tests and a README.
//!
//! - [`batch`]: groups items into batches by size and time.
//! - [`filter`]: drops records, data points and spans matching conditions.
//! - [`host_attributes`]: the local process, container and network namespace at each end of a flow.
//! - [`k8s_attributes`]: Kubernetes metadata for both ends of a flow and for OTLP resources.
//! - [`log_dedup`]: identical records become one with a count; flow mode counts a flow once across interfaces.
//! - [`memory_limiter`]: refuses data (receivers push back) above a memory limit.
//! - [`probabilistic_sampler`]: keeps a share of the flows, both directions together.
//! - [`trace_correlation`]: kernel records and spans joined by connection and time.

pub mod batch;
pub mod filter;
pub mod host_attributes;
pub mod k8s_attributes;
pub mod log_dedup;
pub mod memory_limiter;
pub mod probabilistic_sampler;
pub mod trace_correlation;
