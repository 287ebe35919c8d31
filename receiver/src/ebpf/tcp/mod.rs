//! TCP: programs on the TCP and socket tracepoints report retransmits,
//! resets and closed connections (with handshake time, RTT, bytes and the
//! local process), and keep RTT and handshake histograms in the kernel.
//!
//! `attach` loads and attaches the programs, `read` turns their events,
//! counters and histograms into OTLP with `convert`. TCP events share one
//! event stream with the drop program's (see `tracepoint_events`).

pub mod attach;
pub mod convert;
pub mod read;

pub use convert::{TcpContext, TcpFormats, tcp_record};
