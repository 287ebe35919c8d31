//! Reading the TCP programs' output: each event into a
//! `network.tcp.retransmit`, `network.tcp.reset` or `network.tcp.connection`
//! record, and their counters and histograms into metrics.

use aya::maps::{MapData, PerCpuArray};
use flowtel_ebpf_common::{
    EVENT_COUNTERS, EventCounter, HISTOGRAMS, Histogram, TCP_HISTOGRAMS_MAP, TcpEvent, histogram,
};
use opentelemetry_proto::tonic::{logs::v1::LogRecord, metrics::v1::Metric};

use super::convert::{TcpContext, TcpFormats, TcpTotals, tcp_record};
use crate::ebpf::kernel::{
    btf::KernelEnums,
    cgroups::Cgroups,
    loader::{EbpfError, KernelMaps, map_error},
};

/// Turns the TCP programs' events, counters and histograms into OTLP.
pub struct TcpReader {
    formats: TcpFormats,
    enums: KernelEnums,
    /// Names the cgroup (and container) of a connection's process.
    cgroups: Option<Cgroups>,
}

impl TcpReader {
    /// A reader of records laid out as `formats` says.
    pub fn new(formats: TcpFormats, enums: KernelEnums) -> Self {
        TcpReader { formats, enums, cgroups: Cgroups::discover() }
    }

    /// The record of one event; `None` when its tracepoint record cannot be
    /// read. `clock` is `clock::clock_now()`.
    pub fn record(&mut self, tcp: &TcpEvent, clock: (u64, u64)) -> Option<LogRecord> {
        let ctx = TcpContext {
            formats: &self.formats,
            enums: &self.enums,
            monotonic_to_unix_ns: clock.0,
            now_unix_ns: clock.1,
        };
        tcp_record(tcp, &ctx, self.cgroups.as_mut())
    }

    /// The retransmit and reset sums and the RTT and handshake histograms.
    pub fn metrics(
        &self,
        maps: &KernelMaps,
        counters: &[u64; EVENT_COUNTERS as usize],
        start_unix_ns: u64,
        now_unix_ns: u64,
    ) -> Result<Vec<Metric>, EbpfError> {
        let mut histograms = maps.histograms()?;
        let mut take = |which: Histogram| std::mem::take(&mut histograms[which as usize]);
        let totals = TcpTotals {
            retransmits: counters[EventCounter::Retransmits as usize],
            resets_sent: counters[EventCounter::ResetsSent as usize],
            resets_received: counters[EventCounter::ResetsReceived as usize],
            rtt: take(Histogram::Rtt),
            handshake_client: take(Histogram::HandshakeClient),
            handshake_server: take(Histogram::HandshakeServer),
        };
        Ok(totals.metrics(start_unix_ns, now_unix_ns))
    }
}

impl KernelMaps {
    /// The histograms' slots summed over CPUs, indexed by `Histogram`.
    fn histograms(&self) -> Result<Vec<Vec<u64>>, EbpfError> {
        let fail = map_error(TCP_HISTOGRAMS_MAP);
        let slots: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(&self.histograms).map_err(|e| fail(e.to_string()))?;
        (0..HISTOGRAMS)
            .map(|which| {
                (0..histogram::SLOTS)
                    .map(|slot| {
                        let index = which * histogram::SLOTS + slot;
                        slots.get(&index, 0).map(|values| values.iter().sum()).map_err(|e| fail(e.to_string()))
                    })
                    .collect()
            })
            .collect()
    }
}
