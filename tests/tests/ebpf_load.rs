//! Privileged: loads flowtel's real eBPF object into the kernel, attaches
//! its TC classifiers to a veth in a namespace this test creates, makes
//! traffic, and reads the kernel's flow table back: its packets and bytes
//! must equal the interface's own counters. Needs root (CAP_BPF,
//! CAP_NET_ADMIN, CAP_SYS_ADMIN for the namespaces).

#![allow(clippy::unwrap_used, missing_docs)]

use flowtel_ebpf_common::{DIRECTION_EGRESS, DIRECTION_INGRESS};
use flowtel_receiver::ebpf::{ProbeSettings, Probes, TcAttach};
use flowtel_tests::netns::{VethPair, is_root};

/// Packets and bytes the interface itself counted: [tx, rx, tx bytes, rx bytes].
fn interface_counts(pair: &VethPair) -> [u64; 4] {
    ["tx_packets", "rx_packets", "tx_bytes", "rx_bytes"].map(|stat| pair.a.interface_stat(VethPair::A_IF, stat))
}

/// The flow table's sums in the same order.
fn flow_counts(probes: &Probes) -> [u64; 4] {
    let mut counts = [0; 4];
    for (key, stats) in probes.flows().expect("read the flow table") {
        let (packets, bytes) = if key.direction == DIRECTION_EGRESS { (0, 2) } else { (1, 3) };
        assert!(key.direction == DIRECTION_EGRESS || key.direction == DIRECTION_INGRESS);
        counts[packets] += stats.packets;
        counts[bytes] += stats.bytes;
    }
    counts
}

#[test]
fn tc_programs_count_every_packet_the_interface_sends_and_receives() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let pair = VethPair::create("load");
    // Only the test's own IP traffic: no IPv6 chatter, no ARP (static neighbours).
    for (ns, peer, own_if, peer_if, peer_v4) in [
        (&pair.a, &pair.b, VethPair::A_IF, VethPair::B_IF, VethPair::B_V4),
        (&pair.b, &pair.a, VethPair::B_IF, VethPair::A_IF, VethPair::A_V4),
    ] {
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        let mac = String::from_utf8_lossy(&peer.run(&["cat", &format!("/sys/class/net/{peer_if}/address")]).stdout)
            .trim()
            .to_owned();
        ns.run(&["ip", "neigh", "replace", peer_v4, "lladdr", &mac, "dev", own_if, "nud", "permanent"]);
    }

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pair.a.enter_current_thread();
                let mut probes = Probes::load(&ProbeSettings::default()).expect("load the eBPF object");
                probes
                    .attach(VethPair::A_IF, TcAttach::Auto)
                    .unwrap_or_else(|err| panic!("attach in {}: {err}", pair.a.name));
                let (flows_before, interface_before) = (flow_counts(&probes), interface_counts(&pair));

                let ping = pair.a.run(&["ping", "-c", "5", "-i", "0.2", "-W", "2", VethPair::B_V4]);
                assert!(String::from_utf8_lossy(&ping.stdout).contains("5 received"));

                let (flows_after, interface_after) = (flow_counts(&probes), interface_counts(&pair));
                let programs: Vec<u64> = flows_after.iter().zip(flows_before).map(|(a, b)| a - b).collect();
                let interface: Vec<u64> = interface_after.iter().zip(interface_before).map(|(a, b)| a - b).collect();
                assert_eq!(programs, vec![5, 5, 5 * 98, 5 * 98], "5 echo requests out and 5 replies in");
                assert_eq!(programs, interface, "the kernel's flow table vs the interface's counters");
            })
            .join()
            .expect("the attach thread panicked");
    });
}
