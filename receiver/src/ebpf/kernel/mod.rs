//! What every kernel program family shares: loading the eBPF object and
//! reading its event streams, the kernel's clock, and what flowtel learns
//! about the running kernel (capabilities, BTF, tracefs, kallsyms, cgroups).

pub mod btf;
pub mod capabilities;
pub mod cgroups;
pub mod clock;
pub mod events;
pub mod info;
pub mod kallsyms;
pub mod loader;
pub mod netlink;
pub mod tracefs;
