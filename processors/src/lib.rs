//! flowtel's processors, one folder each: config, logic, tests and a README.
//!
//! - [`batch`]: groups items into batches by size and time.
//! - [`probabilistic_sampler`]: keeps a share of the flows, both directions together.

pub mod batch;
pub mod probabilistic_sampler;
