//! Drop events and counts as OTLP: `network.packet.drop` log records and
//! the `network.packet.drops` metric. Pure functions of their inputs.

use std::collections::BTreeMap;

use flowtel_core::schema::{attr, event, metric};
use flowtel_ebpf_common::{DropCount, DropCountKey, DropEvent};
use opentelemetry_proto::tonic::{common::v1::KeyValue, logs::v1::LogRecord, metrics::v1::Metric};

use crate::ebpf::{
    kernel::{btf::KernelEnums, events::c_name, kallsyms::Kallsyms},
    otlp::{address, cumulative_sum, int_point, kv, network_type, traced, transport},
};

/// The kernel's name of a drop reason value. Kernels before 5.17 report no
/// reason (the program passes `u32::MAX`): those are `NOT_SPECIFIED`.
pub fn reason_name(enums: &KernelEnums, reason: u32) -> String {
    if let Some(name) = enums.drop_reasons.get(&u64::from(reason)) {
        return name.clone();
    }
    if reason == u32::MAX && enums.drop_reasons.is_empty() {
        return "NOT_SPECIFIED".into();
    }
    // A subsystem's own reason (the high 16 bits name the subsystem).
    format!("UNKNOWN_{reason:#x}")
}

/// Function name prefixes of the kernel's tracing path into a BPF program.
const TRACING_FRAMES: [&str; 5] =
    ["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "perf_trace_", "trace_event_raw_event_"];

/// What turning a drop event into a record needs.
pub struct DropContext<'a> {
    /// Drop reason names.
    pub enums: &'a KernelEnums,
    /// Kernel symbols for the location and the stack.
    pub kallsyms: &'a Kallsyms,
    /// Add to a kernel monotonic time to get Unix time.
    pub monotonic_to_unix_ns: u64,
    /// Unix time now.
    pub now_unix_ns: u64,
}

/// The packet's addresses, protocol and ports (or ICMP type and code),
/// where the kernel had set its headers.
pub fn packet_attributes(event: &DropEvent, attributes: &mut Vec<KeyValue>) {
    if event.ip_version == 0 {
        return;
    }
    attributes.push(kv(attr::NETWORK_TYPE, network_type(event.ip_version)));
    attributes.push(kv(attr::NETWORK_TRANSPORT, transport(event.protocol)));
    attributes.push(kv(attr::SOURCE_ADDRESS, address(event.ip_version, &event.src_addr).to_string()));
    attributes.push(kv(attr::DESTINATION_ADDRESS, address(event.ip_version, &event.dst_addr).to_string()));
    if event.has_ports != 0 {
        use flowtel_ebpf_common::ipproto::{ICMP, ICMPV6};
        if matches!(event.protocol, ICMP | ICMPV6) {
            attributes.push(kv(attr::NETWORK_ICMP_TYPE, i64::from(event.src_port)));
            attributes.push(kv(attr::NETWORK_ICMP_CODE, i64::from(event.dst_port)));
        } else {
            attributes.push(kv(attr::SOURCE_PORT, i64::from(event.src_port)));
            attributes.push(kv(attr::DESTINATION_PORT, i64::from(event.dst_port)));
        }
    }
}

/// The drop's reason and the function that dropped it.
pub fn cause_attributes(event: &DropEvent, ctx: &DropContext<'_>, attributes: &mut Vec<KeyValue>) {
    attributes.push(kv(attr::NETWORK_DROP_REASON, reason_name(ctx.enums, event.reason)));
    match ctx.kallsyms.resolve(event.location) {
        Some((function, _)) => attributes.push(kv(attr::NETWORK_DROP_LOCATION, function)),
        None => attributes.push(kv(attr::NETWORK_DROP_LOCATION, format!("{:#x}", event.location))),
    }
}

/// A `network.packet.drop` log record; `stack` holds the kernel stack's
/// addresses, innermost first, when one was taken.
pub fn drop_record(event: &DropEvent, stack: Option<&[u64]>, ctx: &DropContext<'_>) -> LogRecord {
    let mut attributes = Vec::with_capacity(14);
    packet_attributes(event, &mut attributes);
    cause_attributes(event, ctx, &mut attributes);
    let interface = c_name(&event.ifname);
    if !interface.is_empty() {
        attributes.push(kv(attr::NETWORK_INTERFACE_NAME, interface));
    }
    if event.netns != 0 {
        attributes.push(kv(attr::LINUX_NETNS_INODE, i64::from(event.netns)));
    }
    attributes.push(kv(attr::NETWORK_PACKET_LENGTH, i64::from(event.length)));
    attributes.push(kv(attr::SAMPLING_ADJUSTED_COUNT, i64::from(event.sampling_rate.max(1))));
    if let Some(data) = event.packet.get(..event.captured as usize).filter(|data| !data.is_empty()) {
        attributes.push(kv(attr::NETWORK_PACKET_DATA, data.to_vec()));
    }
    if let Some(stack) = stack {
        // The innermost frames are the tracing machinery that ran flowtel's program.
        let frames: Vec<String> = stack
            .iter()
            .take_while(|&&ip| ip != 0)
            .map(|&ip| ctx.kallsyms.describe(ip))
            .skip_while(|frame| TRACING_FRAMES.iter().any(|prefix| frame.starts_with(prefix)))
            .collect();
        attributes.push(kv(attr::NETWORK_DROP_STACK, frames));
    }
    LogRecord {
        time_unix_nano: event.time_ns.saturating_add(ctx.monotonic_to_unix_ns),
        observed_time_unix_nano: ctx.now_unix_ns,
        event_name: event::PACKET_DROP.into(),
        severity_number: opentelemetry_proto::tonic::logs::v1::SeverityNumber::Warn as i32,
        severity_text: "WARN".into(),
        attributes,
        ..traced(&event.trace)
    }
}

/// The attributes of a `network.packet.drops` point, both on the drop
/// records it counts (how exemplars find their point).
pub const DROP_SERIES: [&str; 2] = [attr::NETWORK_DROP_REASON, attr::NETWORK_INTERFACE_NAME];

/// The kernel's drop counters, summed over CPUs and grouped by reason name
/// and interface name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DropTotals {
    /// `(reason, interface)` → packets dropped.
    pub dropped: BTreeMap<(String, String), u64>,
    /// Drop events the rate limit held back.
    pub rate_limited: u64,
}

impl DropTotals {
    /// Sums the per-CPU values of every counter entry.
    pub fn sum<'a>(
        enums: &KernelEnums,
        entries: impl IntoIterator<Item = (DropCountKey, &'a [DropCount])>,
    ) -> DropTotals {
        let mut totals = DropTotals::default();
        for (key, per_cpu) in entries {
            let name = per_cpu.iter().map(|c| c_name(&c.ifname)).find(|n| !n.is_empty()).unwrap_or_default();
            let packets: u64 = per_cpu.iter().map(|c| c.packets).sum();
            *totals.dropped.entry((reason_name(enums, key.reason), name)).or_default() += packets;
            totals.rate_limited += per_cpu.iter().map(|c| c.rate_limited).sum::<u64>();
        }
        totals
    }

    /// `network.packet.drops`, cumulative since `start_unix_ns`.
    pub fn metric(&self, start_unix_ns: u64, now_unix_ns: u64) -> Metric {
        let points = self
            .dropped
            .iter()
            .map(|((reason, interface), packets)| {
                let [reason_key, interface_key] = DROP_SERIES;
                let mut attributes = vec![kv(reason_key, reason.clone())];
                if !interface.is_empty() {
                    attributes.push(kv(interface_key, interface.clone()));
                }
                int_point(attributes, *packets, start_unix_ns, now_unix_ns)
            })
            .collect();
        cumulative_sum(metric::PACKET_DROPS, "Packets the kernel dropped, by reason.", points)
    }
}

#[cfg(test)]
mod tests;
