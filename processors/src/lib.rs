//! flowtel's processors, one folder each: config, logic, tests and a README.
//!
//! - [`batch`]: groups items into batches by size and time.

pub mod batch;
