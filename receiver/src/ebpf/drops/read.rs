//! Reading the drop program's output: each drop event into a
//! `network.packet.drop` record, and its per-reason counters into the
//! `network.packet.drops` metric.

use aya::maps::{MapData, PerCpuHashMap, StackTraceMap};
use flowtel_ebpf_common::{DROP_COUNTS_MAP, DropCount, DropCountKey, DropEvent, JourneyEvent};
use opentelemetry_proto::tonic::{logs::v1::LogRecord, metrics::v1::Metric, trace::v1::Span};

use super::convert::{DropContext, DropTotals, drop_record};
use crate::ebpf::{
    journeys::convert::journey_span,
    kernel::{
        btf::KernelEnums,
        kallsyms::Kallsyms,
        loader::{EbpfError, KernelMaps, map_error},
    },
    netfilter::{self, NetfilterTrace},
};

/// Turns the drop program's events and counters into OTLP.
pub struct DropReader {
    enums: KernelEnums,
    kallsyms: Kallsyms,
    /// Drop records carry the kernel stack.
    stack_trace: bool,
    /// Names the nftables rule of drops by nftables (`allow_system_changes`).
    netfilter: Option<NetfilterTrace>,
    /// Keys the trace and span ids of journeys (random per run).
    journey_ids: std::hash::RandomState,
}

impl DropReader {
    /// A reader naming reasons with `enums`.
    pub fn new(enums: KernelEnums, stack_trace: bool, netfilter: Option<NetfilterTrace>) -> Self {
        DropReader {
            enums,
            kallsyms: Kallsyms::load(),
            stack_trace,
            netfilter,
            journey_ids: std::hash::RandomState::new(),
        }
    }

    /// The record of one drop; `clock` is `clock::clock_now()`.
    pub fn record(&self, drop: &DropEvent, maps: &KernelMaps, clock: (u64, u64)) -> LogRecord {
        let stack = (self.stack_trace && drop.stack_id >= 0).then(|| maps.stack(drop.stack_id)).flatten();
        let ctx = DropContext {
            enums: &self.enums,
            kallsyms: &self.kallsyms,
            monotonic_to_unix_ns: clock.0,
            now_unix_ns: clock.1,
        };
        let mut record = drop_record(drop, stack.as_deref(), &ctx);
        if let Some(verdict) = self.netfilter.as_ref().and_then(|trace| trace.verdict(drop)) {
            record.attributes.extend(netfilter::attributes(&verdict));
        }
        record
    }

    /// The span of a finished journey; its trace and span ids come from its
    /// tracking id (the `sk_buff`'s address and its first hook's time).
    pub fn journey(&self, journey: &JourneyEvent, clock: (u64, u64)) -> Span {
        use std::hash::BuildHasher as _;
        let id = |part: u8| self.journey_ids.hash_one((journey.skb, journey.journey.first_ns, part)).to_be_bytes();
        let (high, low) = (id(0), id(1));
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&high);
        trace_id[8..].copy_from_slice(&low);
        let ctx = DropContext {
            enums: &self.enums,
            kallsyms: &self.kallsyms,
            monotonic_to_unix_ns: clock.0,
            now_unix_ns: clock.1,
        };
        journey_span(journey, &ctx, trace_id, id(2))
    }

    /// The `network.packet.drops` metric, and how many drops were counted
    /// without a record (`max_events_per_second`).
    pub fn metric(&self, maps: &KernelMaps, start_unix_ns: u64, now_unix_ns: u64) -> Result<(Metric, u64), EbpfError> {
        let entries = maps.drop_counts()?;
        let totals = DropTotals::sum(&self.enums, entries.iter().map(|(key, values)| (*key, values.as_slice())));
        Ok((totals.metric(start_unix_ns, now_unix_ns), totals.rate_limited))
    }
}

impl KernelMaps {
    /// Every per-reason drop counter with its per-CPU values.
    fn drop_counts(&self) -> Result<Vec<(DropCountKey, Vec<DropCount>)>, EbpfError> {
        let fail = map_error(DROP_COUNTS_MAP);
        let counts: PerCpuHashMap<&MapData, DropCountKey, DropCount> =
            PerCpuHashMap::try_from(&self.drop_counts).map_err(|e| fail(e.to_string()))?;
        Ok(counts.iter().filter_map(Result::ok).map(|(key, values)| (key, values.iter().copied().collect())).collect())
    }

    /// The addresses of a kernel stack, innermost first.
    fn stack(&self, id: i64) -> Option<Vec<u64>> {
        let stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(&self.drop_stacks).ok()?;
        let stack = stacks.get(&u32::try_from(id).ok()?, 0).ok()?;
        Some(stack.frames().iter().map(|frame| frame.ip).collect())
    }
}
