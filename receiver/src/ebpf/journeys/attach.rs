//! Loading and attaching the journey programs.

use aya::{Btf, programs::BtfTracePoint};
use flowtel_core::component::error_chain;
use flowtel_ebpf_common::{JOURNEY_HOOK_PROGRAMS, PROG_JOURNEY_CONSUME_SKB};

use crate::ebpf::kernel::loader::{EbpfError, Probes, TracepointFailure, program};

impl Probes {
    /// Loads and attaches the journey programs: every hook, and the end at
    /// `consume_skb` (the end at `kfree_skb` is the drop program's).
    pub fn attach_journeys(&mut self) -> Result<(), EbpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Program {
            program: PROG_JOURNEY_CONSUME_SKB,
            on: String::new(),
            message: TracepointFailure::NoBtf(e.to_string()).to_string(),
        })?;
        let hooks = JOURNEY_HOOK_PROGRAMS.map(|(name, tracepoint)| (self.program_name(name), tracepoint));
        for (name, tracepoint) in hooks.into_iter().chain([(PROG_JOURNEY_CONSUME_SKB, "consume_skb")]) {
            let attached = (|| {
                let program: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
                program.load(tracepoint, &btf).map_err(|e| TracepointFailure::Refused(error_chain(&e)))?;
                program.attach().map_err(|e| TracepointFailure::Attach(format!(": {}", error_chain(&e))))?;
                Ok::<(), TracepointFailure>(())
            })();
            attached.map_err(|failure| EbpfError::Program {
                program: name,
                on: String::new(),
                message: failure.to_string(),
            })?;
        }
        Ok(())
    }
}
