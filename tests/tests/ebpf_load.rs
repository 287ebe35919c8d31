//! Privileged: loads flowtel's real eBPF object into the kernel, attaches
//! its TC classifiers to a veth in a namespace this test creates, makes
//! traffic, and checks the kernel-side counts against the interface's own
//! counters. Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for netns).

#![allow(clippy::unwrap_used, missing_docs)]

use flowtel_receiver::ebpf::{ProbeSettings, Probes, TcAttach};
use flowtel_tests::netns::{VethPair, is_root};

/// Packets and bytes the interface itself counted, per direction.
fn interface_counts(pair: &VethPair) -> [u64; 4] {
    ["tx_packets", "rx_packets", "tx_bytes", "rx_bytes"].map(|stat| pair.a.interface_stat(VethPair::A_IF, stat))
}

#[test]
fn tc_programs_count_every_packet_the_interface_sends_and_receives() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let pair = VethPair::create("load");
    // Only the test's own traffic: no IPv6 multicast listener or router chatter.
    for ns in [&pair.a, &pair.b] {
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }

    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pair.a.enter_current_thread();
                let mut probes = Probes::load(&ProbeSettings::default()).expect("load the eBPF object");
                probes
                    .attach(VethPair::A_IF, TcAttach::Auto)
                    .unwrap_or_else(|err| panic!("attach in {}: {err}", pair.a.name));
                let before = probes.traffic_totals().expect("read the counters");
                let interface_before = interface_counts(&pair);

                let ping = pair.a.run(&["ping", "-c", "5", "-i", "0.2", "-W", "2", VethPair::B_V4]);
                assert!(String::from_utf8_lossy(&ping.stdout).contains("5 received"));

                let after = probes.traffic_totals().expect("read the counters");
                let interface_after = interface_counts(&pair);
                let programs = [
                    after.egress.packets - before.egress.packets,
                    after.ingress.packets - before.ingress.packets,
                    after.egress.bytes - before.egress.bytes,
                    after.ingress.bytes - before.ingress.bytes,
                ];
                let interface: Vec<u64> = interface_after.iter().zip(interface_before).map(|(a, b)| a - b).collect();
                // 5 echo requests out and 5 replies in (plus ARP when the neighbour was new).
                assert!(programs[0] >= 5 && programs[1] >= 5, "{programs:?}");
                assert_eq!(
                    programs.to_vec(),
                    interface,
                    "kernel programs [tx, rx, tx bytes, rx bytes] vs the interface's counters"
                );
            })
            .join()
            .expect("the attach thread panicked");
    });
}
