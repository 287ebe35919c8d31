//! Loading and attaching the drop program (`skb:kfree_skb`, as a BTF
//! tracepoint or a classic one), and what it is set up with.

use aya::{
    Btf, Ebpf,
    maps::{HashMap, MapData},
    programs::BtfTracePoint,
};
use flowtel_core::{ComponentId, component::error_chain};
use flowtel_ebpf_common::{DropSettings, EXCLUDED_DROP_REASONS_MAP, PROG_KFREE_SKB, PROG_KFREE_SKB_BTF};

use crate::ebpf::{
    config::{DropTracepoint, DropsConfig},
    kernel::{
        info::KernelInfo,
        loader::{EbpfError, Probes, TracepointFailure, attach_tracepoint, map_error, program},
    },
};

/// The drop program's settings, or an error naming an excluded reason
/// this kernel does not know.
pub fn settings(info: &KernelInfo, config: &DropsConfig) -> Result<(DropSettings, Vec<u32>), EbpfError> {
    let value = |name: &str| info.enums.drop_reason_value(name).map(|v| v as u32);
    let mut excluded = Vec::new();
    for (index, name) in config.exclude_reasons.iter().enumerate() {
        let refused =
            |message: String| EbpfError::Setting { field: format!("drops.exclude_reasons[{index}]"), message };
        match value(name) {
            Some(reason) => excluded.push(reason),
            None if info.enums.drop_reasons.is_empty() => {
                return Err(refused("this kernel reports no drop reasons (before 5.17, or no BTF)".into()));
            }
            None => {
                let known: Vec<&str> = info.enums.drop_reasons.values().map(String::as_str).collect();
                return Err(refused(format!(
                    "`{name}` is not a drop reason of this kernel (it knows {})",
                    known.join(", ")
                )));
            }
        }
    }
    let settings = DropSettings {
        // Without the enum, no value is a normal free; u32::MAX never matches a reason.
        consumed_reason: value("CONSUMED").unwrap_or(u32::MAX - 1),
        not_dropped_reason: value("NOT_DROPPED_YET").unwrap_or(u32::MAX - 1),
        max_events_per_second: config.max_events_per_second,
        stack_trace: u32::from(config.stack_trace),
        snaplen: config.snaplen,
    };
    Ok((settings, excluded))
}

/// Attaches the drop program the config asks for and tells it which
/// reasons to skip. Returns whether it runs: a kernel that refuses it is
/// reported and the receiver goes on without drops, unless the config
/// named exactly which tracepoint to use.
pub fn attach(
    probes: &mut Probes,
    config: &DropsConfig,
    excluded_reasons: &[u32],
    id: &ComponentId,
) -> Result<bool, EbpfError> {
    match probes.attach_drops(config.tracepoint) {
        Ok(which) => {
            probes.exclude_drop_reasons(excluded_reasons)?;
            tracing::info!(receiver = %id, program = which, "Watching packet drops.");
            Ok(true)
        }
        Err(err) if config.tracepoint != DropTracepoint::Auto => Err(err),
        Err(err) => {
            tracing::warn!(receiver = %id, error = %err, "Packet drops are off: the kernel refused them.");
            Ok(false)
        }
    }
}

impl Probes {
    /// Loads and attaches the drop program: the BTF tracepoint, the classic
    /// one, or (`auto`) the first the kernel takes. Returns which.
    pub fn attach_drops(&mut self, which: DropTracepoint) -> Result<&'static str, EbpfError> {
        let (btf_program, classic_program) = (self.program_name(PROG_KFREE_SKB_BTF), self.program_name(PROG_KFREE_SKB));
        let btf_attempt = |ebpf: &mut Ebpf| -> Result<(), TracepointFailure> {
            let btf = Btf::from_sys_fs().map_err(|e| TracepointFailure::NoBtf(e.to_string()))?;
            let program: &mut BtfTracePoint = program(ebpf, btf_program)?;
            program.load("kfree_skb", &btf).map_err(|e| TracepointFailure::Refused(error_chain(&e)))?;
            program.attach().map_err(|e| TracepointFailure::Attach(format!(": {}", error_chain(&e))))?;
            Ok(())
        };
        let classic_attempt = |ebpf: &mut Ebpf| attach_tracepoint(ebpf, classic_program, "skb", "kfree_skb");
        let error = |program: &'static str| {
            move |failure: TracepointFailure| EbpfError::Program {
                program,
                on: String::new(),
                message: failure.to_string(),
            }
        };
        match which {
            DropTracepoint::Btf => btf_attempt(&mut self.ebpf).map(|()| "tp_btf/kfree_skb").map_err(error(btf_program)),
            DropTracepoint::Classic => {
                classic_attempt(&mut self.ebpf).map(|()| "tracepoint/skb/kfree_skb").map_err(error(classic_program))
            }
            DropTracepoint::Auto => match btf_attempt(&mut self.ebpf) {
                Ok(()) => Ok("tp_btf/kfree_skb"),
                Err(btf_error) => {
                    tracing::info!(error = %btf_error, "BTF tracepoint kfree_skb unavailable; using the classic one.");
                    classic_attempt(&mut self.ebpf).map(|()| "tracepoint/skb/kfree_skb").map_err(|e| {
                        EbpfError::Program {
                            program: classic_program,
                            on: String::new(),
                            message: format!("{e} (and tp_btf: {btf_error})"),
                        }
                    })
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
}
