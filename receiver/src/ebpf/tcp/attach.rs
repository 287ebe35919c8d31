//! Loading and attaching the TCP programs (retransmits, resets, RTT
//! samples, socket states), and what they are set up with.

use flowtel_core::ComponentId;
use flowtel_ebpf_common::{
    PROG_SOCK_SET_STATE, PROG_TCP_PROBE, PROG_TCP_RECEIVE_RESET, PROG_TCP_RETRANSMIT, PROG_TCP_SEND_RESET, TcpSettings,
};

use crate::ebpf::{
    config::TcpConfig,
    kernel::{
        info::KernelInfo,
        loader::{Probes, TracepointFailure, attach_tracepoint},
    },
};

/// The TCP tracepoints: program, category, name.
pub const TCP_TRACEPOINTS: [(&str, &str, &str); 5] = [
    (PROG_TCP_RETRANSMIT, "tcp", "tcp_retransmit_skb"),
    (PROG_TCP_SEND_RESET, "tcp", "tcp_send_reset"),
    (PROG_TCP_RECEIVE_RESET, "tcp", "tcp_receive_reset"),
    (PROG_TCP_PROBE, "tcp", "tcp_probe"),
    (PROG_SOCK_SET_STATE, "sock", "inet_sock_set_state"),
];

/// The TCP programs' settings; `None` when the states are not known
/// (then connections are not followed).
pub fn settings(info: &KernelInfo, config: &TcpConfig) -> Option<TcpSettings> {
    let state = |name| info.enums.tcp_state(name).map(|v| v as u32);
    Some(TcpSettings {
        established: state("ESTABLISHED")?,
        syn_sent: state("SYN_SENT")?,
        syn_recv: state("SYN_RECV")?,
        close: state("CLOSE")?,
        listen: state("LISTEN")?,
        protocol_tcp: info.enums.ipproto_tcp? as u32,
        max_events_per_second: config.max_events_per_second,
    })
}

/// Attaches every TCP program the kernel takes; returns whether any runs.
/// One the kernel refuses is reported and left off; the others run.
pub fn attach(probes: &mut Probes, id: &ComponentId) -> bool {
    let failed: Vec<(&str, TracepointFailure)> = TCP_TRACEPOINTS
        .iter()
        .filter_map(|&(name, category, tracepoint)| {
            let name = probes.program_name(name);
            attach_tracepoint(&mut probes.ebpf, name, category, tracepoint).err().map(|e| (tracepoint, e))
        })
        .collect();
    for (tracepoint, why) in &failed {
        tracing::warn!(receiver = %id, tracepoint, error = %why, "A TCP tracepoint is off; the others run.");
    }
    let running = failed.len() < TCP_TRACEPOINTS.len();
    if running {
        tracing::info!(receiver = %id, "Watching TCP retransmits, resets, RTT and connections.");
    }
    running
}
