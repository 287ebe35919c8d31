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

/// Asserts that nothing of a stopped flowtel's is left in the kernel: no
/// program or link named `flowtel_…`, and, for each `(namespace,
/// interface)` given, no clsact qdisc or TC filter on it. `what` starts
/// each failure's message.
pub fn assert_nothing_left(what: &str, interfaces: &[(&Netns, &str)]) {
    // The kernel frees a program once its last reference is gone, after a
    // grace period: a stopped flowtel's may show for a moment after it exited.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5) * crate::time_scale();
    for kind in ["prog", "link"] {
        loop {
            let output = Command::new("bpftool").args([kind, "show"]).output().expect("bpftool (cargo xtask setup)");
            let shown = String::from_utf8_lossy(&output.stdout).into_owned();
            if !shown.contains("flowtel_") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {kind}s left behind:\n{shown}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    for (ns, interface) in interfaces {
        let qdiscs = String::from_utf8_lossy(&ns.run(&["tc", "qdisc", "show", "dev", interface]).stdout).into_owned();
        assert!(!qdiscs.contains("clsact"), "{what}: qdisc left behind: {qdiscs}");
        for direction in ["ingress", "egress"] {
            let filters = ns.run(&["tc", "filter", "show", "dev", interface, direction]).stdout;
            let filters = String::from_utf8_lossy(&filters);
            assert!(filters.trim().is_empty(), "{what}: {direction} filters left behind: {filters}");
        }
    }
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

    /// Starts the system's python3 inside the namespace running `code`,
    /// with stdout and stderr captured.
    pub fn python(&self, code: &str) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", code])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Starts one of the tests' Python scripts (tests/python/`name`) with the
    /// test virtualenv's python inside the namespace, output captured.
    pub fn script(&self, name: &str, args: &[&str]) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(crate::python())
            .arg(crate::script(name))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The body of `GET http://127.0.0.1:{port}{path}` from inside the
    /// namespace (a flowtel started there serves its own metrics so).
    pub fn http_get(&self, port: u16, path: &str) -> String {
        let code = format!(
            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}{path}').read().decode())"
        );
        String::from_utf8_lossy(&self.run(&["python3", "-c", &code]).stdout).into_owned()
    }

    /// The inode of the namespace (what `linux.netns.inode` reports).
    pub fn inode(&self) -> u64 {
        let link = String::from_utf8_lossy(&self.run(&["readlink", "/proc/self/ns/net"]).stdout).trim().to_owned();
        link.trim_start_matches("net:[").trim_end_matches(']').parse().unwrap()
    }

    /// Moves the calling thread into the namespace (for loading programs
    /// and attaching them to its interfaces). Use a dedicated thread.
    pub fn enter_current_thread(&self) {
        let file = File::open(format!("/var/run/netns/{}", self.name)).expect("open netns");
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {}: {}", self.name, std::io::Error::last_os_error());
    }

    /// The input chain of the table of the tests' own, `flowtel_test`
    /// (`nft add` leaves one already there as it is).
    fn nft_input_chain(&self) {
        self.run(&["nft", "add", "table", "inet", "flowtel_test"]);
        self.run(&["nft", "add", "chain", "inet", "flowtel_test", "input", "{ type filter hook input priority 0; }"]);
    }

    /// nftables in this namespace drops every UDP datagram to `port` on
    /// input (the kernel's `NETFILTER_DROP`), in the table `flowtel_test`.
    pub fn drop_udp_to_port(&self, port: u16) {
        self.nft_input_chain();
        self.run(&["nft", "add", "rule", "inet", "flowtel_test", "input", "udp", "dport", &port.to_string(), "drop"]);
    }

    /// nftables in this namespace loses one in `share` of the TCP packets
    /// that arrive from `port` (on input: a loss the sender's TCP must find
    /// and repair, where a local output drop is only a failed send), in a
    /// table of its own, `flowtel_test`.
    pub fn lose_tcp_from_port(&self, port: &str, share: u32) {
        self.nft_input_chain();
        let share = share.to_string();
        self.run(&[
            "nft",
            "add",
            "rule",
            "inet",
            "flowtel_test",
            "input",
            "tcp",
            "sport",
            port,
            "numgen",
            "random",
            "mod",
            &share,
            "==",
            "0",
            "drop",
        ]);
    }

    /// Removes what [`Netns::lose_tcp_from_port`] added.
    pub fn stop_losing(&self) {
        self.run(&["nft", "delete", "table", "inet", "flowtel_test"]);
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

/// Waits for a python child; its stdout, trimmed. Panics with its stderr when it failed.
pub fn finish(child: std::process::Child) -> String {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
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

    /// A pair whose only traffic is the test's: static neighbours (no
    /// ARP), and IPv6 off unless asked for.
    pub fn quiet(label: &str, ipv6: bool) -> VethPair {
        let pair = VethPair::create(label);
        for (ns, peer_ns, peer_if, peer_v4) in
            [(&pair.a, &pair.b, Self::B_IF, Self::B_V4), (&pair.b, &pair.a, Self::A_IF, Self::A_V4)]
        {
            let mac =
                String::from_utf8_lossy(&peer_ns.run(&["cat", &format!("/sys/class/net/{peer_if}/address")]).stdout)
                    .trim()
                    .to_owned();
            let own_if = if peer_if == Self::B_IF { Self::A_IF } else { Self::B_IF };
            ns.run(&["ip", "neigh", "replace", peer_v4, "lladdr", &mac, "dev", own_if, "nud", "permanent"]);
            if ipv6 {
                let peer_v6 = if peer_if == Self::B_IF { "fd77::2" } else { "fd77::1" };
                ns.run(&["ip", "-6", "neigh", "replace", peer_v6, "lladdr", &mac, "dev", own_if, "nud", "permanent"]);
            } else {
                ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            }
        }
        // Let link-up chatter (IPv6 router solicitations, MLD reports) pass.
        std::thread::sleep(std::time::Duration::from_millis(if ipv6 { 3000 } else { 300 }));
        pair
    }

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

/// Two namespaces joined through a userspace relay between TUN devices
/// (tests/python/delay_line.py) that delays, and drops a share of, what
/// `a` sends to `b`; what `b` sends arrives at once. It stands in for netem,
/// which not every kernel has.
pub struct DelayLine {
    /// The sending side (`dl0`, 10.78.0.1/24).
    pub a: Netns,
    /// The receiving side (`dl1`, 10.78.0.2/24).
    pub b: Netns,
    _relay: crate::process::Child,
    _dir: tempfile::TempDir,
}

impl DelayLine {
    /// Interface name in `a`.
    pub const A_IF: &'static str = "dl0";
    /// Interface name in `b`.
    pub const B_IF: &'static str = "dl1";
    /// IPv4 address of `a`.
    pub const A_V4: &'static str = "10.78.0.1";
    /// IPv4 address of `b`.
    pub const B_V4: &'static str = "10.78.0.2";

    /// Creates both namespaces and the relay: `delay` from a to b, and a
    /// `loss` fraction (0–1) of a's packets dropped.
    pub fn create(label: &str, delay: std::time::Duration, loss: f64) -> DelayLine {
        let a = Netns::create(&format!("{label}a"));
        let b = Netns::create(&format!("{label}b"));
        let dir = tempfile::tempdir().unwrap();
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let tun = |side: &str| format!("ftdl{}{unique}{side}", std::process::id() % 100_000);
        let (tun_a, tun_b) = (tun("a"), tun("b"));
        let mut command = Command::new(crate::python());
        command.arg(crate::script("delay_line.py")).args([&tun_a, &tun_b]);
        command.arg(delay.as_secs_f64().to_string()).arg(loss.to_string());
        let mut relay = crate::process::Child::spawn("delay line", &mut command, &dir.path().join("relay.log"));
        crate::wait_for(std::time::Duration::from_secs(10), "the delay line", || {
            relay.assert_running();
            relay.output().contains("ready").then_some(())
        });
        for (ns, tun, name, own, peer) in
            [(&a, &tun_a, Self::A_IF, Self::A_V4, Self::B_V4), (&b, &tun_b, Self::B_IF, Self::B_V4, Self::A_V4)]
        {
            ip(&["link", "set", tun, "netns", &ns.name]);
            ns.run(&["ip", "link", "set", tun, "name", name]);
            ns.run(&["ip", "addr", "add", own, "peer", peer, "dev", name]);
            ns.run(&["ip", "link", "set", name, "up"]);
        }
        DelayLine { a, b, _relay: relay, _dir: dir }
    }
}
