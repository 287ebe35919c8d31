//! Network namespaces and veth pairs that a test creates and removes.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether this process may create namespaces and load eBPF programs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> Output {
    let output = Command::new("ip").args(args).output().expect("`ip` (iproute2) is needed");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    output
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl Netns {
    /// Creates a fresh namespace with loopback up and IPv6 autoconfiguration
    /// off, so the only traffic in it is the test's.
    pub fn create(label: &str) -> Netns {
        let name = format!("ft-{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        netns.run(&["ip", "link", "set", "lo", "up"]);
        netns.run(&["sysctl", "-qw", "net.ipv6.conf.all.accept_ra=0"]);
        netns.run(&["sysctl", "-qw", "net.ipv6.conf.default.accept_ra=0"]);
        netns
    }

    /// Runs a command inside the namespace and returns its output (not checked).
    pub fn exec(&self, command: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(command).output().expect("ip netns exec")
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn run(&self, command: &[&str]) -> Output {
        let output = self.exec(command);
        assert!(
            output.status.success(),
            "in {}: {}: {}",
            self.name,
            command.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Moves the calling thread into the namespace (for loading programs
    /// and attaching them to its interfaces). Use a dedicated thread.
    pub fn enter_current_thread(&self) {
        let file = File::open(format!("/var/run/netns/{}", self.name)).expect("open netns");
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {}: {}", self.name, std::io::Error::last_os_error());
    }

    /// A counter of an interface in this namespace, from /sys/class/net.
    pub fn interface_stat(&self, interface: &str, stat: &str) -> u64 {
        let output = self.run(&["cat", &format!("/sys/class/net/{interface}/statistics/{stat}")]);
        String::from_utf8_lossy(&output.stdout).trim().parse().expect("a number")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Two namespaces joined by a veth pair `veth0` (in `a`, 10.77.0.1/24 and
/// fd77::1/64) ↔ `veth1` (in `b`, 10.77.0.2/24 and fd77::2/64).
pub struct VethPair {
    /// The first namespace.
    pub a: Netns,
    /// The second namespace.
    pub b: Netns,
}

impl VethPair {
    /// Interface name in `a`.
    pub const A_IF: &'static str = "veth0";
    /// Interface name in `b`.
    pub const B_IF: &'static str = "veth1";
    /// IPv4 address of `a`.
    pub const A_V4: &'static str = "10.77.0.1";
    /// IPv4 address of `b`.
    pub const B_V4: &'static str = "10.77.0.2";

    /// Creates both namespaces and the link, up and addressed.
    pub fn create(label: &str) -> VethPair {
        let a = Netns::create(&format!("{label}a"));
        let b = Netns::create(&format!("{label}b"));
        ip(&[
            "link",
            "add",
            Self::A_IF,
            "netns",
            &a.name,
            "type",
            "veth",
            "peer",
            "name",
            Self::B_IF,
            "netns",
            &b.name,
        ]);
        for (ns, interface, v4, v6) in
            [(&a, Self::A_IF, Self::A_V4, "fd77::1"), (&b, Self::B_IF, Self::B_V4, "fd77::2")]
        {
            ns.run(&["ip", "addr", "add", &format!("{v4}/24"), "dev", interface]);
            ns.run(&["ip", "-6", "addr", "add", &format!("{v6}/64"), "dev", interface, "nodad"]);
            ns.run(&["ip", "link", "set", interface, "up"]);
        }
        VethPair { a, b }
    }
}
