//! What flowtel learns about the running kernel before loading its
//! programs: struct offsets and enum names from BTF, tracepoint record
//! layouts from tracefs. What is missing disables only what needs it, and
//! is reported once.

use std::path::Path;

use flowtel_ebpf_common::KernelLayout;

use super::{
    btf::{self, KernelEnums},
    tracefs,
};
use crate::ebpf::tcp::TcpFormats;

/// What flowtel learned about the running kernel.
#[derive(Clone, Debug, Default)]
pub struct KernelInfo {
    /// Offsets for the programs.
    pub layout: KernelLayout,
    /// Enum names.
    pub enums: KernelEnums,
    /// TCP tracepoint record layouts.
    pub tcp_formats: TcpFormats,
    /// What could not be learned, in words.
    pub gaps: Vec<String>,
}

impl KernelInfo {
    /// Reads BTF from `btf_path` and formats from tracefs at `tracefs_root`
    /// (either may be missing: the gaps say what that costs).
    pub fn discover(btf_path: &Path, tracefs_root: Option<&Path>) -> Self {
        let mut info = KernelInfo::default();
        match btf::load(btf_path) {
            Ok(btf) => {
                let (layout, missing) = btf::struct_layout(&btf);
                info.layout = layout;
                info.gaps.extend(missing);
                info.enums = KernelEnums::read(&btf);
            }
            Err(err) => {
                info.layout = KernelLayout::unknown();
                info.gaps.push(format!("{err}: drops carry no addresses, TCP connections are not followed"));
            }
        }
        let Some(root) = tracefs_root else {
            info.gaps.push("tracefs is not available: no tracepoint layouts".into());
            return info;
        };
        let mut format = |category: &str, name: &str| match tracefs::format(root, category, name) {
            Ok(format) => format,
            Err(err) => {
                info.gaps.push(err.to_string());
                tracefs::Format::default()
            }
        };
        let kfree_skb = format("skb", "kfree_skb");
        let formats = TcpFormats {
            retransmit: format("tcp", "tcp_retransmit_skb"),
            send_reset: format("tcp", "tcp_send_reset"),
            receive_reset: format("tcp", "tcp_receive_reset"),
            set_state: format("sock", "inet_sock_set_state"),
        };
        let probe = format("tcp", "tcp_probe");
        let layout = &mut info.layout;
        let at = |format: &tracefs::Format, name: &str, size| {
            format.offset_of(name, size).unwrap_or(flowtel_ebpf_common::UNKNOWN)
        };
        layout.kfree_skb_skbaddr = at(&kfree_skb, "skbaddr", 8);
        layout.kfree_skb_location = at(&kfree_skb, "location", 8);
        layout.kfree_skb_reason = at(&kfree_skb, "reason", 4);
        layout.set_state_skaddr = at(&formats.set_state, "skaddr", 8);
        layout.set_state_oldstate = at(&formats.set_state, "oldstate", 4);
        layout.set_state_newstate = at(&formats.set_state, "newstate", 4);
        layout.set_state_protocol = at(&formats.set_state, "protocol", 2);
        layout.tcp_probe_srtt = at(&probe, "srtt", 4);
        layout.tcp_probe_skaddr = at(&probe, "skaddr", 8);
        layout.retransmit_skaddr = at(&formats.retransmit, "skaddr", 8);
        layout.retransmit_skbaddr = at(&formats.retransmit, "skbaddr", 8);
        layout.send_reset_skaddr = at(&formats.send_reset, "skaddr", 8);
        layout.send_reset_skbaddr = at(&formats.send_reset, "skbaddr", 8);
        layout.receive_reset_skaddr = at(&formats.receive_reset, "skaddr", 8);
        info.tcp_formats = formats;
        info
    }
}
