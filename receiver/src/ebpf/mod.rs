//! flowtel's eBPF programs, embedded in the binary, and their loader.
//!
//! The object is built from `ebpf/probes` by this crate's build script.
//! [`TcTrafficCounter`] attaches the TC classifiers to one interface and reads
//! back what they counted.

use aya::{
    Ebpf, include_bytes_aligned,
    maps::PerCpuArray,
    programs::{SchedClassifier, TcAttachType, tc},
};
use flowtel_ebpf_common::{DIRECTION_EGRESS, DIRECTION_INGRESS, PROG_TC_EGRESS, PROG_TC_INGRESS, TRAFFIC_COUNTERS_MAP};

/// The eBPF object built from `ebpf/probes`.
pub static PROBES_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowtel-probes"));

/// Errors of the eBPF loader, each naming what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The object could not be loaded.
    #[error("cannot load flowtel's eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program is missing from the object or could not be loaded or attached.
    #[error("eBPF program {program}: {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// What failed.
        source: aya::programs::ProgramError,
    },
    /// A map is missing or has the wrong type.
    #[error("eBPF map {map}: {message}")]
    Map {
        /// Map name.
        map: &'static str,
        /// What failed.
        message: String,
    },
}

/// Packets and bytes per direction on one interface, counted in the kernel.
pub struct TcTrafficCounter {
    ebpf: Ebpf,
}

/// Totals read back from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficTotals {
    /// Received by the interface.
    pub ingress: flowtel_ebpf_common::TrafficCounter,
    /// Sent by the interface.
    pub egress: flowtel_ebpf_common::TrafficCounter,
}

impl TcTrafficCounter {
    /// Loads the programs and attaches them to `interface` (in the calling
    /// thread's network namespace) on ingress and egress. They are detached
    /// when the value is dropped.
    pub fn attach(interface: &str) -> Result<Self, EbpfError> {
        let mut ebpf = Ebpf::load(PROBES_OBJECT)?;
        // A clsact qdisc may already exist; TCX (kernel 6.6+) does not need one.
        let _ = tc::qdisc_add_clsact(interface);
        for (name, attach_type) in [(PROG_TC_INGRESS, TcAttachType::Ingress), (PROG_TC_EGRESS, TcAttachType::Egress)] {
            let program_error = |source| EbpfError::Program { program: name, source };
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(EbpfError::Map { map: name, message: "program missing from the object".into() })?
                .try_into()
                .map_err(program_error)?;
            program.load().map_err(program_error)?;
            program.attach(interface, attach_type).map_err(program_error)?;
        }
        Ok(TcTrafficCounter { ebpf })
    }

    /// Sums the per-CPU counters.
    pub fn totals(&self) -> Result<TrafficTotals, EbpfError> {
        let map_error = |message: String| EbpfError::Map { map: TRAFFIC_COUNTERS_MAP, message };
        let map = self.ebpf.map(TRAFFIC_COUNTERS_MAP).ok_or_else(|| map_error("missing from the object".into()))?;
        let counters: PerCpuArray<_, flowtel_ebpf_common::TrafficCounter> =
            PerCpuArray::try_from(map).map_err(|err| map_error(err.to_string()))?;
        let sum = |direction: u32| -> Result<flowtel_ebpf_common::TrafficCounter, EbpfError> {
            let mut total = flowtel_ebpf_common::TrafficCounter::default();
            for per_cpu in counters.get(&direction, 0).map_err(|err| map_error(err.to_string()))?.iter() {
                total.merge(per_cpu);
            }
            Ok(total)
        };
        Ok(TrafficTotals { ingress: sum(DIRECTION_INGRESS.into())?, egress: sum(DIRECTION_EGRESS.into())? })
    }
}
