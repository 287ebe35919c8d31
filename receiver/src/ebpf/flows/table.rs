//! Userspace bookkeeping of the kernel's flow table: what was already
//! reported, which flows ended or went idle, and which the kernel evicted.
//! Pure: the kernel's entries come in, reports go out.

use std::collections::{HashMap, HashSet};

use flowtel_ebpf_common::{FlowKey, FlowStats};

use super::reply::ReplyRule;

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// A FIN was seen.
    Fin,
    /// A RST was seen.
    Rst,
    /// No packet for `idle_timeout`.
    Idle,
}

impl EndReason {
    /// The `flow.end_reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
        }
    }
}

/// What is reported for one flow: the traffic since its previous report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowReport {
    /// The flow.
    pub key: FlowKey,
    /// Kernel monotonic time of its first packet.
    pub first_seen_ns: u64,
    /// Kernel monotonic time of its latest packet.
    pub last_seen_ns: u64,
    /// Bytes since the previous report.
    pub bytes: u64,
    /// Packets since the previous report.
    pub packets: u64,
    /// TCP flags seen over the flow's life.
    pub tcp_flags: u16,
    /// Whether the flow answers another (`None`: no rule knows).
    pub is_reply: Option<bool>,
    /// Set when this report ends the flow.
    pub end: Option<EndReason>,
    /// TCP responses this direction carried since the previous report.
    pub responses: u64,
    /// Their latencies summed, in nanoseconds.
    pub response_ns: u64,
}

/// The outcome of one flush.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flush {
    /// Reports to emit.
    pub reports: Vec<FlowReport>,
    /// Idle flows to delete from the kernel map.
    pub delete: Vec<FlowKey>,
    /// Flows the kernel evicted (LRU) since the previous flush; their traffic
    /// after their last report is lost.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tracked {
    reported_bytes: u64,
    reported_packets: u64,
    reported_responses: u64,
    reported_response_ns: u64,
    ended: bool,
    /// Decided at a report of this flow and kept while it lives, so a
    /// kernel entry re-created mid-connection keeps what its handshake said.
    is_reply: Option<bool>,
}

/// What userspace knows of each kernel flow.
#[derive(Debug)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Tracked>,
    idle_timeout_ns: u64,
    reply: ReplyRule,
}

/// Sums a per-CPU flow value.
pub fn merge_per_cpu<'a>(values: impl IntoIterator<Item = &'a FlowStats>) -> FlowStats {
    let mut total = FlowStats::default();
    for value in values.into_iter().filter(|v| v.packets > 0) {
        if total.packets == 0 || value.first_seen_ns < total.first_seen_ns {
            total.first_seen_ns = value.first_seen_ns;
            total.first_tcp_flags = value.first_tcp_flags;
        }
        total.last_seen_ns = total.last_seen_ns.max(value.last_seen_ns);
        total.bytes += value.bytes;
        total.packets += value.packets;
        total.tcp_flags |= value.tcp_flags;
        total.responses += value.responses;
        total.response_ns += value.response_ns;
    }
    total
}

impl FlowTable {
    /// An empty table ending flows after `idle_timeout_ns` without packets.
    pub fn new(idle_timeout_ns: u64) -> Self {
        FlowTable { flows: HashMap::new(), idle_timeout_ns, reply: ReplyRule::default() }
    }

    /// The table, deciding `is_reply` with `reply`.
    pub fn with_reply_rule(self, reply: ReplyRule) -> Self {
        FlowTable { reply, ..self }
    }

    fn report(&mut self, key: &FlowKey, stats: &FlowStats, end: Option<EndReason>) -> Option<FlowReport> {
        let tracked = self.flows.entry(*key).or_default();
        // A kernel entry smaller than what was reported was deleted and
        // re-created in between: all of it is new.
        let recreated = stats.packets < tracked.reported_packets;
        let since = |now: u64, reported: u64| if recreated { now } else { now - reported.min(now) };
        let (bytes, packets) =
            (since(stats.bytes, tracked.reported_bytes), since(stats.packets, tracked.reported_packets));
        let responses = since(stats.responses, tracked.reported_responses);
        let response_ns = since(stats.response_ns, tracked.reported_response_ns);
        tracked.is_reply = self.reply.is_reply(key, stats.first_tcp_flags).or(tracked.is_reply);
        tracked.reported_bytes = stats.bytes;
        tracked.reported_packets = stats.packets;
        tracked.reported_responses = stats.responses;
        tracked.reported_response_ns = stats.response_ns;
        let end = end.filter(|_| !tracked.ended);
        if end.is_some() {
            tracked.ended = true;
        }
        (packets > 0 || end.is_some()).then_some(FlowReport {
            key: *key,
            first_seen_ns: stats.first_seen_ns,
            last_seen_ns: stats.last_seen_ns,
            bytes,
            packets,
            tcp_flags: stats.tcp_flags,
            is_reply: tracked.is_reply,
            end,
            responses,
            response_ns,
        })
    }

    /// A periodic flush over every entry of the kernel map.
    pub fn flush(&mut self, kernel: &[(FlowKey, FlowStats)], now_ns: u64) -> Flush {
        let mut flush = Flush::default();
        let mut seen = HashSet::with_capacity(kernel.len());
        for (key, stats) in kernel {
            seen.insert(*key);
            let idle = now_ns.saturating_sub(stats.last_seen_ns) >= self.idle_timeout_ns;
            let ended_before = self.flows.get(key).is_some_and(|t| t.ended);
            let end = (idle && !ended_before).then_some(EndReason::Idle);
            if let Some(report) = self.report(key, stats, end) {
                flush.reports.push(report);
            }
            if idle {
                flush.delete.push(*key);
                self.flows.remove(key);
            }
        }
        let before = self.flows.len();
        self.flows.retain(|key, _| seen.contains(key));
        flush.evicted = (before - self.flows.len()) as u64;
        flush
    }

    /// A FIN or RST for `key`, with the kernel's current entry.
    pub fn end(&mut self, key: &FlowKey, stats: &FlowStats, reason: EndReason) -> Option<FlowReport> {
        self.report(key, stats, Some(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey { src_port: port, protocol: 6, ip_version: 4, ..FlowKey::default() }
    }

    fn stats(bytes: u64, packets: u64, last: u64) -> FlowStats {
        FlowStats { first_seen_ns: 1, last_seen_ns: last, bytes, packets, ..FlowStats::default() }
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn reports_deltas_and_nothing_when_idle_between() {
        let mut table = FlowTable::new(30 * SECOND);
        let first = table.flush(&[(key(1), stats(100, 2, SECOND))], 2 * SECOND);
        assert_eq!((first.reports[0].bytes, first.reports[0].packets), (100, 2));
        let second = table.flush(&[(key(1), stats(250, 5, 3 * SECOND))], 4 * SECOND);
        assert_eq!((second.reports[0].bytes, second.reports[0].packets), (150, 3));
        let quiet = table.flush(&[(key(1), stats(250, 5, 3 * SECOND))], 5 * SECOND);
        assert!(quiet.reports.is_empty());
    }

    #[test]
    fn idle_flows_end_once_and_are_deleted() {
        let mut table = FlowTable::new(10 * SECOND);
        table.flush(&[(key(1), stats(100, 1, SECOND))], 2 * SECOND);
        let flush = table.flush(&[(key(1), stats(100, 1, SECOND))], 20 * SECOND);
        assert_eq!(flush.reports.len(), 1);
        assert_eq!(flush.reports[0].end, Some(EndReason::Idle));
        assert_eq!(flush.reports[0].packets, 0);
        assert_eq!(flush.delete, vec![key(1)]);
        // Deleted by us: not an eviction.
        assert_eq!(table.flush(&[], 21 * SECOND).evicted, 0);
    }

    #[test]
    fn a_fin_reports_at_once_and_later_packets_continue_the_flow() {
        let mut table = FlowTable::new(30 * SECOND);
        let end = table.end(&key(1), &stats(500, 4, SECOND), EndReason::Fin).expect("a report");
        assert_eq!((end.bytes, end.end), (500, Some(EndReason::Fin)));
        let flush = table.flush(&[(key(1), stats(560, 5, 2 * SECOND))], 3 * SECOND);
        assert_eq!((flush.reports[0].bytes, flush.reports[0].end), (60, None));
        // The idle end after a FIN does not end it twice.
        let flush = table.flush(&[(key(1), stats(560, 5, 2 * SECOND))], 60 * SECOND);
        assert!(flush.reports.is_empty());
        assert_eq!(flush.delete, vec![key(1)]);
    }

    #[test]
    fn vanished_flows_are_counted_as_evicted() {
        let mut table = FlowTable::new(30 * SECOND);
        table.flush(&[(key(1), stats(1, 1, SECOND)), (key(2), stats(1, 1, SECOND))], SECOND);
        let flush = table.flush(&[(key(2), stats(1, 1, SECOND))], 2 * SECOND);
        assert_eq!(flush.evicted, 1);
    }

    #[test]
    fn per_cpu_values_merge() {
        let a = FlowStats {
            first_seen_ns: 5,
            last_seen_ns: 9,
            bytes: 10,
            packets: 1,
            tcp_flags: 0x02,
            first_tcp_flags: 0x02,
            ..FlowStats::default()
        };
        let b = FlowStats {
            first_seen_ns: 3,
            last_seen_ns: 7,
            bytes: 20,
            packets: 2,
            tcp_flags: 0x10,
            first_tcp_flags: 0x10,
            ..FlowStats::default()
        };
        let merged = merge_per_cpu([&a, &FlowStats::default(), &b]);
        assert_eq!(
            (merged.first_seen_ns, merged.last_seen_ns, merged.bytes, merged.packets, merged.tcp_flags),
            (3, 9, 30, 3, 0x12)
        );
        assert_eq!(merged.first_tcp_flags, 0x10, "the first packet is the earliest CPU's");
    }
}
