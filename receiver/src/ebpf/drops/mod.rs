//! Packet drops: the `skb:kfree_skb` program reports each drop the kernel
//! makes with its reason, where, and (optionally) the kernel stack, and
//! counts drops per reason in the kernel.
//!
//! `attach` loads and attaches the program, `read` turns its events and
//! counters into OTLP with `convert`. Drop events share one event stream
//! with the TCP programs' (see `tracepoint_events`).

pub mod attach;
pub mod convert;
pub mod read;

pub use convert::{DropContext, drop_record};
