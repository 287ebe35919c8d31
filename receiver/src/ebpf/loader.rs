//! Loads flowtel's eBPF object, attaches its TC programs to interfaces and
//! reads its maps. Every error names what it was doing and, where it is a
//! missing privilege or kernel feature, what is missing.

use std::{collections::BTreeMap, process::Command};

use aya::{
    Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{MapData, PerCpuArray, PerCpuHashMap},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions, TracePoint,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
    },
};
use flowtel_ebpf_common::{
    COUNTERS, FLOW_COUNTERS_MAP, FLOWS_MAP, FlowKey, FlowStats, GLOBAL_EVENT_TRANSPORT, GLOBAL_SAMPLING,
    PROG_RING_FILL, PROG_TC_EGRESS, PROG_TC_INGRESS, TRANSPORT_RING_BUFFER,
};

use flowtel_core::component::error_chain;

use super::{config::TcAttach, flow_table::merge_per_cpu};

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
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings { max_flows: 65_536, sampling: 1, event_transport: TRANSPORT_RING_BUFFER }
    }
}

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
            if matches!(first_try, TcAttachOptions::Netlink(_))
                && !attachment.added_clsact
                && attachment.links.is_empty()
            {
                attachment.added_clsact = tc::qdisc_add_clsact(interface).is_ok();
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
        let counters: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|e| map_error(FLOW_COUNTERS_MAP)(e.to_string()))?;
        let mut out = [0u64; COUNTERS as usize];
        for (index, slot) in out.iter_mut().enumerate() {
            let values = counters.get(&(index as u32), 0).map_err(|e| map_error(FLOW_COUNTERS_MAP)(e.to_string()))?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.detach_all();
    }
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
