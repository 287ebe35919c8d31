//! flowtel's receivers, one folder each.
//!
//! - [`otlp`]: OTLP over gRPC and HTTP (protobuf and JSON), for logs, metrics
//!   and traces from applications and from other flowtel agents.
//! - [`ebpf`]: flowtel's eBPF programs, loaded into the kernel.

pub mod ebpf;
pub mod otlp;
