//! A journey as a span: one per packet, an event per hook with where the
//! packet was and what changed since the hook before, ending in the drop
//! (with its reason, and an error status) or the delivery. Pure functions
//! of their inputs.

use flowtel_core::{
    attributes::find_text,
    schema::{attr, event},
};
use flowtel_ebpf_common::{
    HOOK_CONSUME_SKB, HOOK_KFREE_SKB, HOOK_NET_DEV_QUEUE, HOOK_NET_DEV_START_XMIT, HOOK_NETIF_RECEIVE_SKB,
    HOOK_NETIF_RX, HOOK_SKB_COPY_DATAGRAM_IOVEC, Hop, JOURNEY_HOPS, JourneyEvent,
};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    trace::v1::{Span, Status, span, status},
};

use crate::ebpf::{
    drops::{
        DropContext,
        convert::{cause_attributes, packet_attributes},
    },
    kernel::events::c_name,
    otlp::kv,
};

/// The tracepoint a hook is.
pub fn hook_name(hook: u8) -> &'static str {
    match hook {
        HOOK_NET_DEV_QUEUE => "net_dev_queue",
        HOOK_NET_DEV_START_XMIT => "net_dev_start_xmit",
        HOOK_NETIF_RX => "netif_rx",
        HOOK_NETIF_RECEIVE_SKB => "netif_receive_skb",
        HOOK_KFREE_SKB => "kfree_skb",
        HOOK_CONSUME_SKB => "consume_skb",
        HOOK_SKB_COPY_DATAGRAM_IOVEC => "skb_copy_datagram_iovec",
        _ => "unknown",
    }
}

/// Where a packet was at a hook: its device, that device's namespace and its length.
fn place(hop: &Hop) -> (String, u32, u32) {
    (c_name(&hop.ifname).to_owned(), hop.netns, hop.length)
}

/// What changed between two hooks, in words (`interface veth0 → veth1, …`);
/// a device or namespace no longer known (the packet left its device) is
/// no change.
fn change(before: &(String, u32, u32), after: &(String, u32, u32)) -> String {
    let mut changes = Vec::new();
    if !after.0.is_empty() && before.0 != after.0 {
        changes.push(format!("interface {} → {}", before.0, after.0));
    }
    if after.1 != 0 && before.1 != after.1 {
        changes.push(format!("netns {} → {}", before.1, after.1));
    }
    if before.2 != after.2 {
        changes.push(format!("length {} → {}", before.2, after.2));
    }
    changes.join(", ")
}

/// A span event of a hook.
fn hook_event(hook: u8, time_unix_nano: u64, place: &(String, u32, u32), changed: String) -> span::Event {
    let mut attributes = Vec::with_capacity(4);
    if !place.0.is_empty() {
        attributes.push(kv(attr::NETWORK_INTERFACE_NAME, place.0.clone()));
    }
    if place.1 != 0 {
        attributes.push(kv(attr::LINUX_NETNS_INODE, i64::from(place.1)));
    }
    attributes.push(kv(attr::NETWORK_PACKET_LENGTH, i64::from(place.2)));
    if !changed.is_empty() {
        attributes.push(kv(attr::NETWORK_PACKET_JOURNEY_CHANGE, changed));
    }
    span::Event { time_unix_nano, name: hook_name(hook).into(), attributes, dropped_attributes_count: 0 }
}

/// The span of a finished journey, with its trace and span ids.
pub fn journey_span(event: &JourneyEvent, ctx: &DropContext<'_>, trace_id: [u8; 16], span_id: [u8; 8]) -> Span {
    let to_unix = |ns: u64| ns.saturating_add(ctx.monotonic_to_unix_ns);
    let journey = &event.journey;
    let kept = (journey.count as usize).min(JOURNEY_HOPS);
    let mut events = Vec::with_capacity(kept + 1);
    let mut before: Option<(String, u32, u32)> = None;
    for hop in &journey.hops[..kept] {
        let here = place(hop);
        let changed = before.as_ref().map(|b| change(b, &here)).unwrap_or_default();
        events.push(hook_event(hop.hook, to_unix(hop.time_ns), &here, changed));
        before = Some(here);
    }
    let end = &event.end;
    let delivered = event.delivered != 0;
    let here = (c_name(&end.ifname).to_owned(), end.netns, end.length);
    let changed = before.as_ref().map(|b| change(b, &here)).unwrap_or_default();
    let end_hook = if delivered { event.end_hook } else { HOOK_KFREE_SKB };
    let mut end_event = hook_event(end_hook, to_unix(end.time_ns), &here, changed);

    let mut attributes: Vec<KeyValue> = Vec::with_capacity(12);
    packet_attributes(end, &mut attributes);
    let status = if delivered {
        attributes.push(kv(attr::NETWORK_PACKET_JOURNEY_OUTCOME, "delivered"));
        None
    } else {
        let mut cause = Vec::with_capacity(2);
        cause_attributes(end, ctx, &mut cause);
        end_event.attributes.extend(cause.iter().cloned());
        let reason = find_text(&cause, attr::NETWORK_DROP_REASON).unwrap_or_default().into_owned();
        attributes.extend(cause);
        attributes.push(kv(attr::NETWORK_PACKET_JOURNEY_OUTCOME, "dropped"));
        Some(Status { message: reason, code: status::StatusCode::Error as i32 })
    };
    attributes.push(kv(attr::NETWORK_PACKET_JOURNEY_HOOKS, i64::from(journey.count) + 1));
    if let Some(data) = end.packet.get(..end.captured as usize).filter(|data| !data.is_empty()) {
        attributes.push(kv(attr::NETWORK_PACKET_DATA, data.to_vec()));
    }
    events.push(end_event);
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        name: event::PACKET_JOURNEY.into(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: to_unix(journey.first_ns),
        end_time_unix_nano: to_unix(end.time_ns),
        attributes,
        dropped_events_count: (journey.count as usize).saturating_sub(kept) as u32,
        events,
        status,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
