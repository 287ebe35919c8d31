//! Network flows: TC classifiers on the watched interfaces count each
//! flow's packets and bytes in the kernel's flow table and raise an event
//! when a TCP flow ends (FIN or RST). Every `flush_interval` the table is
//! read and each active flow's traffic since its previous report becomes a
//! `network.flow` record; idle flows end; a FIN or RST reports at once.
//!
//! `attach` attaches the programs to interfaces as they come and go (told
//! by the kernel's link messages, `link_events`),
//! `read` follows the events and the table (with `table`), `convert`
//! makes the records and the `network.flow.*` metrics, `trace_context`
//! forgets the trace contexts of connections gone. A TCP flow's key holds
//! the trace context of the request its packets belong to, so each traced
//! request's packets are reported as flows of their own.

pub mod attach;
pub mod convert;
pub mod interfaces;
pub mod link_events;
pub mod read;
pub mod reply;
pub mod table;
pub mod trace_context;
