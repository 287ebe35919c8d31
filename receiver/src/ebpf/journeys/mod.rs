//! Packet journeys (`journeys.enabled`): a packet followed by its
//! `sk_buff` across the stack's tracepoints (`net_dev_queue`,
//! `net_dev_start_xmit`, `netif_rx`, `netif_receive_skb`) to its drop
//! (`kfree_skb`, with the reason) or its delivery (`consume_skb`), exported
//! as a trace: one span per packet, an event per hook.

pub mod attach;
pub mod convert;
