//! Loading and attaching the journey programs.

use aya::{Btf, programs::BtfTracePoint};
use flowtel_core::component::error_chain;
use flowtel_ebpf_common::{JOURNEY_DELIVERY_PROGRAMS, JOURNEY_HOOK_PROGRAMS};

use crate::ebpf::kernel::loader::{EbpfError, Probes, TracepointFailure, program};

impl Probes {
    /// Loads and attaches the journey programs: every hook, and the ends at
    /// a delivery (the end at `kfree_skb` is the drop program's).
    pub fn attach_journeys(&mut self) -> Result<(), EbpfError> {
        let btf = Btf::from_sys_fs().map_err(|e| EbpfError::Program {
            program: JOURNEY_DELIVERY_PROGRAMS[0].0,
            on: String::new(),
            message: TracepointFailure::NoBtf(e.to_string()).to_string(),
        })?;
        let hooks = JOURNEY_HOOK_PROGRAMS.map(|(name, tracepoint)| (self.program_name(name), tracepoint));
        for (name, tracepoint) in hooks.into_iter().chain(JOURNEY_DELIVERY_PROGRAMS) {
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
