//! Loads flowtel's eBPF object and holds its programs and maps. Every error names what it was doing and, where it is a
//! missing privilege or kernel feature, what is missing.

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, ProgramArray},
    programs::{SchedClassifier, TracePoint, tc::SchedClassifierLinkId},
};
use flowtel_ebpf_common::{
    DROP_COUNTS_MAP, DROP_STACKS_MAP, DropSettings, EVENT_COUNTERS, EVENT_COUNTERS_MAP, FILTER_LINK_LAYER,
    FILTER_NETWORK_LAYER, FLOWS_MAP, GLOBAL_DROPS, GLOBAL_JOURNEYS, GLOBAL_LAYOUT, GLOBAL_RESPONSE_LATENCY,
    GLOBAL_SAMPLING, GLOBAL_TCP, GLOBAL_TRACE_CONTEXT, JOURNEYS_FOLLOWED, JOURNEYS_MAP, JourneySettings, KernelLayout,
    PACKET_FILTERS_MAP, PROG_KFREE_SKB, PROG_KFREE_SKB_BTF, PROG_RING_FILL, PROG_SOCK_SET_STATE, PROG_TC_EGRESS,
    PROG_TC_INGRESS, PROG_TC_TRACE_CONTEXT, PROG_TCP_PROBE, PROG_TCP_RECEIVE_RESET, PROG_TCP_RETRANSMIT,
    PROG_TCP_SEND_RESET, PacketFilter, RESPONSE_LATENCY_MAP, ServerKey, TCP_EXCHANGES_MAP, TCP_HISTOGRAMS_MAP,
    TRACE_CONTEXT_PROGRAM_MAP, TRACE_CONTEXTS_MAP, TcpSettings, histogram,
};

use flowtel_core::component::error_chain;

use super::events::Transport;
use crate::ebpf::{filter::CompiledFilter, flows::attach::TcVariant};

/// One server's response latency histogram slots (see `histogram`).
type LatencySlots = [u64; histogram::SLOTS as usize];

/// The eBPF object built from `ebpf/probes`, sending events through ring buffers.
pub static PROBES_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtel-probes-ring"));

/// The same programs built to send events through perf event arrays: it
/// creates no ring buffer, so it loads on kernels that have none.
pub static PROBES_OBJECT_PERF: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtel-probes-perf"));

/// Errors of the eBPF loader, each naming what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The object could not be loaded.
    #[error("cannot load flowtel's eBPF object{hint}: {message}")]
    Load {
        /// What failed, with its causes.
        message: String,
        /// What is likely missing.
        hint: &'static str,
    },
    /// A program could not be loaded, attached or detached.
    #[error("eBPF program {program}{on}: {message}")]
    Program {
        /// Program name.
        program: &'static str,
        /// ` on <interface>` where relevant.
        on: String,
        /// What failed.
        message: String,
    },
    /// The process lacks capabilities the programs need.
    #[error("flowtel lacks {}; run it as root or grant these capabilities", .0.join(", "))]
    MissingCapabilities(Vec<&'static str>),
    /// The drop and TCP programs need tracefs, which cannot be used.
    #[error(
        "{0}; the drop and TCP programs read their tracepoints' layouts there (or set drops.enabled and tcp.enabled to false)"
    )]
    Tracefs(#[from] super::tracefs::TracefsError),
    /// A setting this kernel or machine cannot honour.
    #[error("{field}: {message}")]
    Setting {
        /// The setting's path (`drops.exclude_reasons[0]`).
        field: String,
        /// Why.
        message: String,
    },
    /// A map is missing, has the wrong type, or could not be read or written.
    #[error("eBPF map {map}: {message}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        message: String,
    },
}

pub(in crate::ebpf) fn map_error(map: &'static str) -> impl Fn(String) -> EbpfError {
    move |message| EbpfError::Map { map, message }
}

/// What the programs are set up with before attaching.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// The kernel flow table's size.
    pub max_flows: u32,
    /// Count one packet in this many (1: every packet).
    pub sampling: u32,
    /// How events reach userspace: the object built for it is loaded.
    pub event_transport: Transport,
    /// Field offsets of this kernel.
    pub layout: KernelLayout,
    /// The drop program's settings.
    pub drops: DropSettings,
    /// The TCP programs' settings.
    pub tcp: TcpSettings,
    /// Connections whose trace context is kept; 0: `traceparent` headers are not read.
    pub trace_context_connections: u32,
    /// Server ends whose response latency has a histogram of its own; 0:
    /// responses are not timed.
    pub response_latency_servers: u32,
    /// The packet filter; with one, the `_filtered` variant of each program runs.
    pub filter: Option<CompiledFilter>,
    /// Packet journeys.
    pub journeys: JourneySettings,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            max_flows: 65_536,
            sampling: 1,
            event_transport: Transport::RingBuffer,
            layout: KernelLayout::unknown(),
            drops: DropSettings::default(),
            tcp: TcpSettings::default(),
            trace_context_connections: 0,
            response_latency_servers: 0,
            filter: None,
            journeys: JourneySettings::default(),
        }
    }
}

/// How one interface is attached.
pub(in crate::ebpf) struct Attachment {
    pub(in crate::ebpf) links: Vec<(&'static str, SchedClassifierLinkId)>,
    /// We added its clsact qdisc, so we remove it again.
    pub(in crate::ebpf) added_clsact: bool,
    /// How the programs were attached.
    pub(in crate::ebpf) variant: TcVariant,
}

/// flowtel's loaded eBPF object: its programs and maps.
///
/// Loading is here; each program family attaches its programs and reads
/// its maps in its own folder (`flows/attach.rs`, `drops/attach.rs`, …).
pub struct Probes {
    pub(in crate::ebpf) ebpf: Ebpf,
    /// The interfaces the TC programs are attached to.
    pub(in crate::ebpf) attached: BTreeMap<String, Attachment>,
    /// Whether the programs' `_filtered` variants run.
    filtered: bool,
    /// How the loaded object sends events.
    transport: Transport,
}

impl Probes {
    /// Loads the object and the two TC programs, and writes the settings.
    pub fn load(settings: &ProbeSettings) -> Result<Self, EbpfError> {
        if settings.filter.is_some() && !has_bpf_loop() {
            return Err(EbpfError::Setting {
                field: "filter".into(),
                message: "the kernel runs the filter with bpf_loop, which this kernel lacks (Linux 5.17+)".into(),
            });
        }
        let trace_context = u32::from(settings.trace_context_connections > 0);
        let response_latency = u32::from(settings.response_latency_servers > 0);
        let ebpf = EbpfLoader::new()
            // One more for the servers past the bound, counted together.
            .map_max_entries(RESPONSE_LATENCY_MAP, settings.response_latency_servers + 1)
            .map_max_entries(TCP_EXCHANGES_MAP, settings.max_flows)
            .override_global(GLOBAL_RESPONSE_LATENCY, &response_latency, true)
            .map_max_entries(FLOWS_MAP, settings.max_flows)
            .map_max_entries(TRACE_CONTEXTS_MAP, settings.trace_context_connections.max(1))
            .override_global(GLOBAL_TRACE_CONTEXT, &trace_context, true)
            .override_global(GLOBAL_SAMPLING, &settings.sampling, true)
            .override_global(GLOBAL_LAYOUT, &settings.layout, true)
            .override_global(GLOBAL_DROPS, &settings.drops, true)
            .override_global(GLOBAL_TCP, &settings.tcp, true)
            .override_global(GLOBAL_JOURNEYS, &settings.journeys, true)
            // Preallocated: room for followed packets only when journeys are on.
            .map_max_entries(JOURNEYS_MAP, if settings.journeys.enabled != 0 { JOURNEYS_FOLLOWED } else { 1 })
            .load(match settings.event_transport {
                Transport::RingBuffer => PROBES_OBJECT,
                Transport::PerfArray => PROBES_OBJECT_PERF,
            })
            .map_err(|source| {
                let message = error_chain(&source);
                let hint = if message.contains("Operation not permitted") {
                    " (needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
                } else {
                    ""
                };
                EbpfError::Load { message, hint }
            })?;
        let mut probes = Probes {
            ebpf,
            attached: BTreeMap::new(),
            filtered: settings.filter.is_some(),
            transport: settings.event_transport,
        };
        if let Some(filter) = &settings.filter {
            probes.set_filter(filter)?;
        }
        if response_latency != 0 {
            probes.add_overflow_server()?;
        }
        for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
            let name = probes.program_name(name);
            let program = classifier(&mut probes.ebpf, name)?;
            program.load().map_err(|e| EbpfError::Program {
                program: name,
                on: String::new(),
                message: format!("the kernel refused it: {}", refusal(&e)),
            })?;
        }
        Ok(probes)
    }

    /// The response latency entry of the servers past `max_servers`.
    fn add_overflow_server(&mut self) -> Result<(), EbpfError> {
        let fail = map_error(RESPONSE_LATENCY_MAP);
        let map = self.ebpf.map_mut(RESPONSE_LATENCY_MAP).ok_or_else(|| fail("missing".into()))?;
        let mut servers: PerCpuHashMap<&mut MapData, ServerKey, LatencySlots> =
            PerCpuHashMap::try_from(map).map_err(|e| fail(e.to_string()))?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| fail(format!("{what}: {e}")))?;
        let zeros =
            PerCpuValues::try_from(vec![[0u64; histogram::SLOTS as usize]; cpus]).map_err(|e| fail(e.to_string()))?;
        servers.insert(ServerKey::default(), zeros, 0).map_err(|e| fail(e.to_string()))
    }

    /// Every server's response latency histogram slots, summed over CPUs
    /// (the all-zero key: the servers past `max_servers`).
    pub fn response_latency(&self) -> Result<Vec<(ServerKey, Vec<u64>)>, EbpfError> {
        let fail = map_error(RESPONSE_LATENCY_MAP);
        let map = self.ebpf.map(RESPONSE_LATENCY_MAP).ok_or_else(|| fail("missing".into()))?;
        let servers: PerCpuHashMap<&MapData, ServerKey, LatencySlots> =
            PerCpuHashMap::try_from(map).map_err(|e| fail(e.to_string()))?;
        let mut out = Vec::new();
        for entry in servers.iter() {
            let Ok((server, values)) = entry else { continue };
            let mut total = vec![0u64; histogram::SLOTS as usize];
            for value in values.iter() {
                for (sum, slot) in total.iter_mut().zip(value) {
                    *sum += slot;
                }
            }
            out.push((server, total));
        }
        Ok(out)
    }

    /// Writes the filter's programs where the `_filtered` variants read them.
    fn set_filter(&mut self, filter: &CompiledFilter) -> Result<(), EbpfError> {
        let fail = map_error(PACKET_FILTERS_MAP);
        let map = self.ebpf.map_mut(PACKET_FILTERS_MAP).ok_or_else(|| fail("missing".into()))?;
        let mut programs: Array<&mut MapData, PacketFilter> = Array::try_from(map).map_err(|e| fail(e.to_string()))?;
        programs.set(FILTER_LINK_LAYER, filter.link_layer, 0).map_err(|e| fail(e.to_string()))?;
        if let Ok(network) = &filter.network_layer {
            programs.set(FILTER_NETWORK_LAYER, network, 0).map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    /// The program to load for `plain`: itself, or with a filter its
    /// `_filtered` variant (same attach point, filter first).
    pub(in crate::ebpf) fn program_name(&self, plain: &'static str) -> &'static str {
        if !self.filtered {
            return plain;
        }
        match plain {
            PROG_TC_INGRESS => "flowtel_tc_ingress_filtered",
            PROG_TC_EGRESS => "flowtel_tc_egress_filtered",
            PROG_KFREE_SKB_BTF => "flowtel_kfree_skb_btf_filtered",
            PROG_KFREE_SKB => "flowtel_kfree_skb_filtered",
            PROG_TCP_RETRANSMIT => "flowtel_tcp_retransmit_filtered",
            PROG_TCP_SEND_RESET => "flowtel_tcp_send_reset_filtered",
            PROG_TCP_RECEIVE_RESET => "flowtel_tcp_receive_reset_filtered",
            PROG_TCP_PROBE => "flowtel_tcp_probe_filtered",
            PROG_SOCK_SET_STATE => "flowtel_sock_set_state_filtered",
            "flowtel_journey_net_dev_queue" => "flowtel_journey_net_dev_queue_filtered",
            "flowtel_journey_net_dev_start_xmit" => "flowtel_journey_net_dev_start_xmit_filtered",
            "flowtel_journey_netif_rx" => "flowtel_journey_netif_rx_filtered",
            "flowtel_journey_netif_receive_skb" => "flowtel_journey_netif_receive_skb_filtered",
            other => other,
        }
    }

    /// Loads the `traceparent` reader and hands it to the TC programs. A
    /// kernel without `bpf_loop` (before 5.17) refuses it: the error says so.
    pub fn enable_trace_context(&mut self) -> Result<(), EbpfError> {
        let error = |message: String| EbpfError::Program { program: PROG_TC_TRACE_CONTEXT, on: String::new(), message };
        if !has_bpf_loop() {
            return Err(error("it needs bpf_loop, which this kernel lacks (Linux 5.17+)".into()));
        }
        let program = classifier(&mut self.ebpf, PROG_TC_TRACE_CONTEXT)?;
        program
            .load()
            .map_err(|e| error(format!("the kernel refused it (it needs bpf_loop, Linux 5.17+): {}", refusal(&e))))?;
        let fd = program.fd().map_err(|e| error(e.to_string()))?.try_clone().map_err(|e| error(e.to_string()))?;
        let map = self
            .ebpf
            .map_mut(TRACE_CONTEXT_PROGRAM_MAP)
            .ok_or_else(|| map_error(TRACE_CONTEXT_PROGRAM_MAP)("missing".into()))?;
        let mut slots: ProgramArray<&mut MapData> =
            ProgramArray::try_from(map).map_err(|e| map_error(TRACE_CONTEXT_PROGRAM_MAP)(e.to_string()))?;
        slots.set(0, &fd, 0).map_err(|e| map_error(TRACE_CONTEXT_PROGRAM_MAP)(e.to_string()))
    }

    /// How the loaded object sends events.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The underlying object, for readers that take maps out of it.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Benchmark only: attaches the program that writes one event to the
    /// flow event ring buffer per `getpid(2)` (tracepoint
    /// `syscalls:sys_enter_getpid`).
    pub fn attach_ring_fill(&mut self) -> Result<(), EbpfError> {
        let error = |message: String| EbpfError::Program { program: PROG_RING_FILL, on: String::new(), message };
        let program: &mut TracePoint = self
            .ebpf
            .program_mut(PROG_RING_FILL)
            .ok_or_else(|| error("missing from the object".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| error(e.to_string()))?;
        program.load().map_err(|e| error(format!("the kernel refused it: {}", refusal(&e))))?;
        program.attach("syscalls", "sys_enter_getpid").map_err(|e| error(format!("cannot attach: {e}")))?;
        Ok(())
    }

    /// Takes the drop and TCP counter maps out of the object, for the task that reads them.
    pub fn take_kernel_maps(&mut self) -> Result<KernelMaps, EbpfError> {
        let mut take = |name: &'static str| self.ebpf.take_map(name).ok_or_else(|| map_error(name)("missing".into()));
        Ok(KernelMaps {
            drop_counts: take(DROP_COUNTS_MAP)?,
            drop_stacks: take(DROP_STACKS_MAP)?,
            counters: take(EVENT_COUNTERS_MAP)?,
            histograms: take(TCP_HISTOGRAMS_MAP)?,
        })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// Why a tracepoint program does not run.
#[derive(Debug, thiserror::Error)]
pub enum TracepointFailure {
    /// The object has no program of that name.
    #[error("missing from the object")]
    Missing,
    /// The program is of another type.
    #[error("{0}")]
    WrongType(aya::programs::ProgramError),
    /// A BTF tracepoint needs the kernel's BTF.
    #[error("no kernel BTF: {0}")]
    NoBtf(String),
    /// The verifier or the kernel refused to load it (with the causes).
    #[error("the kernel refused it: {0}")]
    Refused(String),
    /// It loaded but could not be attached (where to, and the causes).
    #[error("cannot attach{0}")]
    Attach(String),
}

/// Whether TC programs may call `bpf_loop` (5.17+), which the filter and
/// the trace context reader need. A probe that fails says yes: loading
/// then gives the kernel's own reason.
fn has_bpf_loop() -> bool {
    use aya::{programs::ProgramType, sys::BpfHelper};
    aya::sys::is_helper_supported(ProgramType::SchedClassifier, BpfHelper::BPF_FUNC_loop).unwrap_or(true)
}

/// Lines of the verifier's log kept in an error: its verdict is at the end,
/// and the whole log of a large program runs to megabytes.
const VERIFIER_LOG_LINES: usize = 12;

/// Why the kernel refused to load a program, with the end of the
/// verifier's log (where it says why) rather than all of it.
pub(in crate::ebpf) fn refusal(error: &aya::programs::ProgramError) -> String {
    let message = error_chain(error);
    let Some((before, log)) = message.split_once("Verifier output:") else { return message };
    let lines: Vec<&str> = log.lines().map(str::trim_end).filter(|line| !line.is_empty()).collect();
    let kept = &lines[lines.len().saturating_sub(VERIFIER_LOG_LINES)..];
    let skipped = if kept.len() < lines.len() { "… " } else { "" };
    format!("{before}Verifier output (end): {skipped}{}", kept.join(" | "))
}

/// A program of the object as its type.
pub(in crate::ebpf) fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, TracepointFailure>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name).ok_or(TracepointFailure::Missing)?.try_into().map_err(TracepointFailure::WrongType)
}

/// Loads a classic tracepoint program and attaches it to `category:name`.
pub(in crate::ebpf) fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program_name: &str,
    category: &str,
    name: &str,
) -> Result<(), TracepointFailure> {
    let program: &mut TracePoint = program(ebpf, program_name)?;
    program.load().map_err(|e| TracepointFailure::Refused(refusal(&e)))?;
    program
        .attach(category, name)
        .map_err(|e| TracepointFailure::Attach(format!(" to {category}:{name}: {}", error_chain(&e))))?;
    Ok(())
}

/// The drop and TCP programs' counting maps.
pub struct KernelMaps {
    pub(in crate::ebpf) drop_counts: Map,
    pub(in crate::ebpf) drop_stacks: Map,
    pub(in crate::ebpf) counters: Map,
    pub(in crate::ebpf) histograms: Map,
}

impl KernelMaps {
    /// The event counters summed over CPUs, indexed by `EventCounter`.
    pub fn counters(&self) -> Result<[u64; EVENT_COUNTERS as usize], EbpfError> {
        sum_per_cpu_slots::<{ EVENT_COUNTERS as usize }>(&self.counters, EVENT_COUNTERS_MAP)
    }
}

/// The slots of a per-CPU `u64` array, summed over CPUs.
pub(in crate::ebpf) fn sum_per_cpu_slots<const N: usize>(map: &Map, name: &'static str) -> Result<[u64; N], EbpfError> {
    let fail = map_error(name);
    let slots: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).map_err(|e| fail(e.to_string()))?;
    let mut out = [0u64; N];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = slots.get(&(index as u32), 0).map_err(|e| fail(e.to_string()))?.iter().sum();
    }
    Ok(out)
}

pub(in crate::ebpf) fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, EbpfError> {
    ebpf.program_mut(name)
        .ok_or_else(|| EbpfError::Program {
            program: name,
            on: String::new(),
            message: "missing from the object".into(),
        })?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| EbpfError::Program {
            program: name,
            on: String::new(),
            message: e.to_string(),
        })
}
