//! Loads flowtel's eBPF object, attaches its TC programs to interfaces and
//! reads its maps. Every error names what it was doing and, where it is a
//! missing privilege or kernel feature, what is missing.

use std::{collections::BTreeMap, process::Command};

use aya::{
    Btf, Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap, StackTraceMap},
    programs::{
        BtfTracePoint, LinkOrder, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, TracePoint,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
};
use flowtel_ebpf_common::{
    COUNTERS, DROP_COUNTS_MAP, DROP_STACKS_MAP, DropCount, DropCountKey, DropSettings, EVENT_COUNTERS,
    EVENT_COUNTERS_MAP, EXCLUDED_DROP_REASONS_MAP, FLOW_COUNTERS_MAP, FLOWS_MAP, FlowKey, FlowStats, GLOBAL_DROPS,
    GLOBAL_EVENT_TRANSPORT, GLOBAL_LAYOUT, GLOBAL_SAMPLING, GLOBAL_TCP, HISTOGRAMS, KernelLayout, PROG_KFREE_SKB,
    PROG_KFREE_SKB_BTF, PROG_RING_FILL, PROG_SOCK_SET_STATE, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TCP_PROBE,
    PROG_TCP_RECEIVE_RESET, PROG_TCP_RETRANSMIT, PROG_TCP_SEND_RESET, TCP_HISTOGRAMS_MAP, TRANSPORT_RING_BUFFER,
    TcpSettings, histogram,
};

use flowtel_core::component::error_chain;

use super::{
    config::{DropTracepoint, TcAttach},
    flow_table::merge_per_cpu,
};

/// The eBPF object built from `ebpf/probes`.
pub static PROBES_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtel-probes"));

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
    /// A map is missing, has the wrong type, or could not be read or written.
    #[error("eBPF map {map}: {message}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        message: String,
    },
}

fn map_error(map: &'static str) -> impl Fn(String) -> EbpfError {
    move |message| EbpfError::Map { map, message }
}

/// What the programs are set up with before attaching.
#[derive(Clone, Copy, Debug)]
pub struct ProbeSettings {
    /// The kernel flow table's size.
    pub max_flows: u32,
    /// Count one packet in this many (1: every packet).
    pub sampling: u32,
    /// `TRANSPORT_RING_BUFFER` or `TRANSPORT_PERF_ARRAY`.
    pub event_transport: u32,
    /// Field offsets of this kernel.
    pub layout: KernelLayout,
    /// The drop program's settings.
    pub drops: DropSettings,
    /// The TCP programs' settings.
    pub tcp: TcpSettings,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            max_flows: 65_536,
            sampling: 1,
            event_transport: TRANSPORT_RING_BUFFER,
            layout: KernelLayout::unknown(),
            drops: DropSettings::default(),
            tcp: TcpSettings::default(),
        }
    }
}

/// The TCP tracepoints: program, category, name.
pub const TCP_TRACEPOINTS: [(&str, &str, &str); 5] = [
    (PROG_TCP_RETRANSMIT, "tcp", "tcp_retransmit_skb"),
    (PROG_TCP_SEND_RESET, "tcp", "tcp_send_reset"),
    (PROG_TCP_RECEIVE_RESET, "tcp", "tcp_receive_reset"),
    (PROG_TCP_PROBE, "tcp", "tcp_probe"),
    (PROG_SOCK_SET_STATE, "sock", "inet_sock_set_state"),
];

/// How one interface is attached.
struct Attachment {
    links: Vec<(&'static str, SchedClassifierLinkId)>,
    /// We added its clsact qdisc, so we remove it again.
    added_clsact: bool,
}

/// flowtel's loaded eBPF programs and their maps.
pub struct Probes {
    ebpf: Ebpf,
    attached: BTreeMap<String, Attachment>,
}

impl Probes {
    /// Loads the object and the two TC programs, and writes the settings.
    pub fn load(settings: &ProbeSettings) -> Result<Self, EbpfError> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(FLOWS_MAP, settings.max_flows)
            .override_global(GLOBAL_SAMPLING, &settings.sampling, true)
            .override_global(GLOBAL_EVENT_TRANSPORT, &settings.event_transport, true)
            .override_global(GLOBAL_LAYOUT, &settings.layout, true)
            .override_global(GLOBAL_DROPS, &settings.drops, true)
            .override_global(GLOBAL_TCP, &settings.tcp, true)
            .load(PROBES_OBJECT)
            .map_err(|source| {
                let message = error_chain(&source);
                let hint = if message.contains("Operation not permitted") {
                    " (needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
                } else {
                    ""
                };
                EbpfError::Load { message, hint }
            })?;
        for name in [PROG_TC_INGRESS, PROG_TC_EGRESS] {
            let program = classifier(&mut ebpf, name)?;
            program.load().map_err(|e| EbpfError::Program {
                program: name,
                on: String::new(),
                message: format!("the kernel refused it: {e}"),
            })?;
        }
        Ok(Probes { ebpf, attached: BTreeMap::new() })
    }

    /// The underlying object, for readers that take maps out of it.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Interfaces the programs are attached to.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.keys().map(String::as_str)
    }

    /// Attaches both programs to `interface` (in flowtel's network namespace).
    pub fn attach(&mut self, interface: &str, mode: TcAttach) -> Result<(), EbpfError> {
        if self.attached.contains_key(interface) {
            return Ok(());
        }
        let mut attachment = Attachment { links: Vec::new(), added_clsact: false };
        let result = self.attach_both(interface, mode, &mut attachment);
        if result.is_err() {
            self.release(interface, attachment);
        } else {
            self.attached.insert(interface.to_owned(), attachment);
        }
        result
    }

    fn attach_both(&mut self, interface: &str, mode: TcAttach, attachment: &mut Attachment) -> Result<(), EbpfError> {
        for (name, attach_type) in [(PROG_TC_INGRESS, TcAttachType::Ingress), (PROG_TC_EGRESS, TcAttachType::Egress)] {
            let tcx = || TcAttachOptions::TcxOrder(LinkOrder::first());
            let netlink = || TcAttachOptions::Netlink(NlOptions { priority: 1, ..NlOptions::default() });
            let first_try = match mode {
                TcAttach::Auto | TcAttach::Tcx => tcx(),
                TcAttach::Netlink => netlink(),
            };
            if matches!(first_try, TcAttachOptions::Netlink(_)) {
                if !attachment.added_clsact && attachment.links.is_empty() {
                    attachment.added_clsact = tc::qdisc_add_clsact(interface).is_ok();
                }
                remove_leftover(interface, attach_type, name);
            }
            let program = classifier(&mut self.ebpf, name)?;
            let link = match program.attach_with_options(interface, attach_type, first_try) {
                Ok(link) => link,
                Err(tcx_error) if mode == TcAttach::Auto => {
                    // Before 6.6 there is no TCX: fall back to a clsact qdisc.
                    tracing::debug!(interface, error = %tcx_error, "TCX attach failed; using a clsact qdisc.");
                    if attachment.links.is_empty() {
                        attachment.added_clsact = tc::qdisc_add_clsact(interface).is_ok();
                    }
                    remove_leftover(interface, attach_type, name);
                    let program = classifier(&mut self.ebpf, name)?;
                    program.attach_with_options(interface, attach_type, netlink())
                }
                .map_err(|e| attach_error(name, interface, &e))?,
                Err(e) => return Err(attach_error(name, interface, &e)),
            };
            attachment.links.push((name, link));
        }
        Ok(())
    }

    /// Detaches from `interface` and removes the qdisc flowtel added there.
    pub fn detach(&mut self, interface: &str) {
        if let Some(attachment) = self.attached.remove(interface) {
            self.release(interface, attachment);
        }
    }

    fn release(&mut self, interface: &str, attachment: Attachment) {
        for (name, link) in attachment.links {
            if let Ok(program) = classifier(&mut self.ebpf, name)
                && let Err(err) = program.detach(link)
            {
                // A removed interface takes its links with it.
                tracing::debug!(interface, program = name, error = %err, "Detach failed.");
            }
        }
        if attachment.added_clsact {
            remove_clsact(interface);
        }
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) {
        let interfaces: Vec<String> = self.attached.keys().cloned().collect();
        for interface in interfaces {
            self.detach(&interface);
        }
    }

    /// Runs the ingress classifier once on a crafted packet (an Ethernet
    /// frame) with `BPF_PROG_TEST_RUN`; returns its verdict.
    pub fn test_run_ingress(&mut self, frame: &[u8]) -> Result<u32, EbpfError> {
        let program = classifier(&mut self.ebpf, PROG_TC_INGRESS)?;
        let options = TestRunOptions { data_in: Some(frame), ..TestRunOptions::default() };
        program.test_run(options).map(|result| result.return_value).map_err(|e| EbpfError::Program {
            program: PROG_TC_INGRESS,
            on: String::new(),
            message: format!("test run failed: {e:?}"),
        })
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
        program.load().map_err(|e| error(format!("the kernel refused it: {e}")))?;
        program.attach("syscalls", "sys_enter_getpid").map_err(|e| error(format!("cannot attach: {e}")))?;
        Ok(())
    }

    /// Loads and attaches the drop program: the BTF tracepoint, the classic
    /// one, or (`auto`) the first the kernel takes. Returns which.
    pub fn attach_drops(&mut self, which: DropTracepoint) -> Result<&'static str, EbpfError> {
        let btf_attempt = |ebpf: &mut Ebpf| -> Result<(), String> {
            let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
            let program: &mut BtfTracePoint = program(ebpf, PROG_KFREE_SKB_BTF)?;
            program.load("kfree_skb", &btf).map_err(|e| format!("the kernel refused it: {}", error_chain(&e)))?;
            program.attach().map_err(|e| format!("cannot attach: {}", error_chain(&e)))?;
            Ok(())
        };
        let classic_attempt = |ebpf: &mut Ebpf| attach_tracepoint(ebpf, PROG_KFREE_SKB, "skb", "kfree_skb");
        let error =
            |program: &'static str| move |message: String| EbpfError::Program { program, on: String::new(), message };
        match which {
            DropTracepoint::Btf => {
                btf_attempt(&mut self.ebpf).map(|()| "tp_btf/kfree_skb").map_err(error(PROG_KFREE_SKB_BTF))
            }
            DropTracepoint::Classic => {
                classic_attempt(&mut self.ebpf).map(|()| "tracepoint/skb/kfree_skb").map_err(error(PROG_KFREE_SKB))
            }
            DropTracepoint::Auto => match btf_attempt(&mut self.ebpf) {
                Ok(()) => Ok("tp_btf/kfree_skb"),
                Err(btf_error) => {
                    tracing::info!(error = %btf_error, "BTF tracepoint kfree_skb unavailable; using the classic one.");
                    classic_attempt(&mut self.ebpf)
                        .map(|()| "tracepoint/skb/kfree_skb")
                        .map_err(|e| error(PROG_KFREE_SKB)(format!("{e} (and tp_btf: {btf_error})")))
                }
            },
        }
    }

    /// Drop reasons the drop program skips.
    pub fn exclude_drop_reasons(&mut self, reasons: &[u32]) -> Result<(), EbpfError> {
        let fail = map_error(EXCLUDED_DROP_REASONS_MAP);
        let map = self.ebpf.map_mut(EXCLUDED_DROP_REASONS_MAP).ok_or_else(|| fail("missing".into()))?;
        let mut excluded: HashMap<&mut MapData, u32, u8> = HashMap::try_from(map).map_err(|e| fail(e.to_string()))?;
        for reason in reasons {
            excluded.insert(reason, 1, 0).map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }

    /// Loads and attaches the TCP programs; returns the tracepoints that
    /// could not be attached, with why (the others run).
    pub fn attach_tcp(&mut self) -> Vec<(&'static str, String)> {
        TCP_TRACEPOINTS
            .iter()
            .filter_map(|&(name, category, tracepoint)| {
                attach_tracepoint(&mut self.ebpf, name, category, tracepoint).err().map(|e| (tracepoint, e))
            })
            .collect()
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

    /// Every flow in the kernel's table, per-CPU values summed.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowStats)>, EbpfError> {
        let map = self.ebpf.map(FLOWS_MAP).ok_or_else(|| map_error(FLOWS_MAP)("missing".into()))?;
        let flows: PerCpuHashMap<&MapData, FlowKey, FlowStats> =
            PerCpuHashMap::try_from(map).map_err(|e| map_error(FLOWS_MAP)(e.to_string()))?;
        let mut out = Vec::new();
        for entry in flows.iter() {
            match entry {
                Ok((key, values)) => out.push((key, merge_per_cpu(values.iter()))),
                // An entry deleted while iterating: skip it.
                Err(err) => tracing::debug!(error = %err, "Flow map entry vanished while reading."),
            }
        }
        Ok(out)
    }

    /// One flow's current stats, if the kernel still has it.
    pub fn flow(&self, key: &FlowKey) -> Option<FlowStats> {
        let map = self.ebpf.map(FLOWS_MAP)?;
        let flows: PerCpuHashMap<&MapData, FlowKey, FlowStats> = PerCpuHashMap::try_from(map).ok()?;
        flows.get(key, 0).ok().map(|values| merge_per_cpu(values.iter()))
    }

    /// Deletes flows from the kernel's table.
    pub fn delete_flows(&mut self, keys: &[FlowKey]) {
        let Some(map) = self.ebpf.map_mut(FLOWS_MAP) else { return };
        let Ok(mut flows) = PerCpuHashMap::<&mut MapData, FlowKey, FlowStats>::try_from(map) else { return };
        for key in keys {
            let _ = flows.remove(key);
        }
    }

    /// The loss and health counters, summed over CPUs, indexed by `Counter`.
    pub fn counters(&self) -> Result<[u64; COUNTERS as usize], EbpfError> {
        let map = self.ebpf.map(FLOW_COUNTERS_MAP).ok_or_else(|| map_error(FLOW_COUNTERS_MAP)("missing".into()))?;
        sum_per_cpu_slots::<{ COUNTERS as usize }>(map, FLOW_COUNTERS_MAP)
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// A program of the object as its type.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, String>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name).ok_or_else(|| "missing from the object".to_owned())?.try_into().map_err(|e| format!("{e}"))
}

/// Loads a classic tracepoint program and attaches it to `category:name`.
fn attach_tracepoint(ebpf: &mut Ebpf, program_name: &str, category: &str, name: &str) -> Result<(), String> {
    let program: &mut TracePoint = program(ebpf, program_name)?;
    program.load().map_err(|e| format!("the kernel refused it: {}", error_chain(&e)))?;
    program.attach(category, name).map_err(|e| format!("cannot attach to {category}:{name}: {}", error_chain(&e)))?;
    Ok(())
}

/// The drop and TCP programs' counting maps.
pub struct KernelMaps {
    drop_counts: Map,
    drop_stacks: Map,
    counters: Map,
    histograms: Map,
}

impl KernelMaps {
    /// Every per-reason drop counter with its per-CPU values.
    pub fn drop_counts(&self) -> Result<Vec<(DropCountKey, Vec<DropCount>)>, EbpfError> {
        let fail = map_error(DROP_COUNTS_MAP);
        let counts: PerCpuHashMap<&MapData, DropCountKey, DropCount> =
            PerCpuHashMap::try_from(&self.drop_counts).map_err(|e| fail(e.to_string()))?;
        Ok(counts.iter().filter_map(Result::ok).map(|(key, values)| (key, values.iter().copied().collect())).collect())
    }

    /// The addresses of a kernel stack, innermost first.
    pub fn stack(&self, id: i64) -> Option<Vec<u64>> {
        let stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(&self.drop_stacks).ok()?;
        let stack = stacks.get(&u32::try_from(id).ok()?, 0).ok()?;
        Some(stack.frames().iter().map(|frame| frame.ip).collect())
    }

    /// The event counters summed over CPUs, indexed by `EventCounter`.
    pub fn counters(&self) -> Result<[u64; EVENT_COUNTERS as usize], EbpfError> {
        sum_per_cpu_slots::<{ EVENT_COUNTERS as usize }>(&self.counters, EVENT_COUNTERS_MAP)
    }

    /// The histograms' slots summed over CPUs, indexed by `Histogram`.
    pub fn histograms(&self) -> Result<Vec<Vec<u64>>, EbpfError> {
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

/// The slots of a per-CPU `u64` array, summed over CPUs.
fn sum_per_cpu_slots<const N: usize>(map: &Map, name: &'static str) -> Result<[u64; N], EbpfError> {
    let fail = map_error(name);
    let slots: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map).map_err(|e| fail(e.to_string()))?;
    let mut out = [0u64; N];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = slots.get(&(index as u32), 0).map_err(|e| fail(e.to_string()))?.iter().sum();
    }
    Ok(out)
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut SchedClassifier, EbpfError> {
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

fn attach_error(program: &'static str, interface: &str, err: &aya::programs::ProgramError) -> EbpfError {
    EbpfError::Program { program, on: format!(" on {interface}"), message: format!("cannot attach: {err}") }
}

/// Removes a clsact qdisc (and the filters on it) with iproute2's `tc`.
/// Removes a flowtel classifier (found by its name) that a flowtel which
/// did not stop cleanly (`kill -9`, a crash) left in `interface`'s clsact
/// qdisc: unlike TCX links, netlink filters outlive the process that added
/// them, and a restart would otherwise run two of each.
fn remove_leftover(interface: &str, attach_type: TcAttachType, name: &str) {
    match tc::qdisc_detach_program(interface, attach_type, name) {
        Ok(()) => tracing::warn!(
            interface,
            program = name,
            "Removed a flowtel program left attached by a flowtel that did not stop cleanly."
        ),
        // None there (the usual case), or no qdisc yet.
        Err(err) => tracing::debug!(interface, program = name, error = %err, "No leftover program to remove."),
    }
}

fn remove_clsact(interface: &str) {
    match Command::new("tc").args(["qdisc", "del", "dev", interface, "clsact"]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => tracing::debug!(
            interface,
            stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            "Could not remove the clsact qdisc (the interface may be gone)."
        ),
        Err(err) => {
            tracing::warn!(interface, error = %err, "Cannot run `tc` to remove the clsact qdisc flowtel added.")
        }
    }
}
