//! The Linux capabilities the kernel programs need, checked before they are
//! loaded, so a missing one is named instead of surfacing as a bare
//! "Operation not permitted" from the kernel.

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process (`CapEff` in `/proc/self/status`).
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|line| line.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The capabilities missing from `effective` for the programs flowtel will
/// load, each with what it is needed for. `CAP_SYS_ADMIN` stands in for
/// `CAP_BPF` and `CAP_PERFMON`, as on kernels before 5.8.
pub fn missing(effective: u64, tracepoints: bool) -> Vec<&'static str> {
    let has = |bit: u32| effective & (1 << bit) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !admin {
        missing.push("CAP_BPF (to load the eBPF programs and maps)");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN (to attach the flow programs to interfaces)");
    }
    if tracepoints && !has(CAP_PERFMON) && !admin {
        missing.push("CAP_PERFMON (to attach the drop and TCP programs to tracepoints)");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_capability_is_named_with_its_use() {
        let all = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN);
        assert!(missing(all, true).is_empty());
        assert!(
            missing((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN), true).is_empty(),
            "SYS_ADMIN covers BPF and PERFMON"
        );
        let found = missing(1 << CAP_BPF, true);
        assert_eq!(found.len(), 2);
        assert!(found[0].starts_with("CAP_NET_ADMIN") && found[1].starts_with("CAP_PERFMON"), "{found:?}");
        assert_eq!(
            missing((1 << CAP_BPF) | (1 << CAP_NET_ADMIN), false),
            Vec::<&str>::new(),
            "no tracepoints, no PERFMON"
        );
        assert!(effective().is_some(), "this process has a capability set");
    }
}
