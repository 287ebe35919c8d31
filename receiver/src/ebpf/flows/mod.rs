//! Network flows: TC classifiers on the watched interfaces count each
//! flow's packets and bytes in the kernel's flow table and raise an event
//! when a TCP flow ends (FIN or RST). Every `flush_interval` the table is
//! read and each active flow's traffic since its previous report becomes a
//! `network.flow` record; idle flows end; a FIN or RST reports at once.
//!
//! `attach` attaches the programs to interfaces as they come and go,
//! `read` follows the events and the table (with `table`), `convert`
//! makes the records and the `network.flow.*` metrics, `trace_context`
//! gives each report its TCP connection's current trace context.

pub mod attach;
pub mod convert;
pub mod interfaces;
pub mod read;
pub mod reply;
pub mod table;
pub mod trace_context;
