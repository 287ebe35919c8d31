//! Privileged, real kernel: packet journeys. Datagrams from one namespace
//! of a veth pair to the other dropped by an nftables rule the test makes,
//! and a request delivered to a server: each is a span whose events are
//! the hooks it passed, in order, ending in `kfree_skb` with
//! `NETFILTER_DROP` or in its copy to the server's reader. Over the journey budget, what is not exported is
//! counted: exported and counted add up to what was sent. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use flowtel_tests::{
    Flowtel, kernel_at_least, metric_value,
    netns::{VethPair, finish, is_root},
    otlp_json::{Item, file_requests, items},
    time_scale, wireshark,
};
use serde_json::Value;

const DROPPED_PORT: u16 = 7000;
const DELIVERED_PORT: u16 = 7001;
/// The budget test's: journey programs see every namespace, so the two
/// tests (which may run at once) filter on ports of their own.
const OVER_BUDGET_PORT: u16 = 7002;

/// A config following the datagrams `filter` matches, `max_per_second`
/// journeys a second at most.
fn config(dir: &std::path::Path, filter: &str, max_per_second: u32) -> String {
    format!(
        r#"
receivers:
  ebpf:
    interfaces: ["{interface}"]
    flush_interval: 1s
    filter: "{filter}"
    journeys: {{enabled: true, max_per_second: {max_per_second}}}
    drops: {{snaplen: 64}}
exporters:
  file/traces: {{path: "{dir}/traces.jsonl"}}
  pcap: {{path: "{dir}/journeys.pcapng"}}
  debug: {{verbosity: normal}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    traces: {{receivers: [ebpf], exporters: [file/traces, pcap, debug]}}
"#,
        interface = VethPair::A_IF,
        dir = dir.display()
    )
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

/// An OTLP/JSON attribute of a span event, as text.
fn event_attr(event: &Value, key: &str) -> String {
    let value =
        event["attributes"].as_array().and_then(|a| a.iter().find(|kv| kv["key"] == key)).map(|kv| &kv["value"]);
    match value {
        Some(value) => value
            .get("stringValue")
            .or_else(|| value.get("intValue"))
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// Sends `count` datagrams from the first namespace to `port` of the second.
fn send(pair: &VethPair, port: u16, count: usize) {
    finish(pair.a.python(&format!(
        "import socket\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range({count}): u.sendto(b'x'*100,('{b}',{port}))\nprint(0)\n",
        b = VethPair::B_V4
    )));
}

/// Runs flowtel in the first namespace while `send` makes traffic; the
/// journeys (spans) it exported and its own metrics at the end.
/// What one flowtel run exported: its journeys (spans), its own metrics at
/// the end, its output, and what `tshark` read of its pcap-ng file
/// (`source.address|destination.port|comment` per packet).
struct Run {
    spans: Vec<Item>,
    metrics: String,
    output: String,
    packets: Vec<String>,
}

fn run(pair: &VethPair, filter: &str, max_per_second: u32, traffic: impl FnOnce()) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start_in_netns(&config(dir.path(), filter, max_per_second), &pair.a.name);
    traffic();
    std::thread::sleep(Duration::from_millis(2000) * time_scale());
    let metrics = pair.a.http_get(flowtel.metrics_port, "/metrics");
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let spans = items(&file_requests(&dir.path().join("traces.jsonl")), "traces");
    let pcap = dir.path().join("journeys.pcapng");
    let fields = ["-e", "ip.src", "-e", "udp.dstport", "-e", "frame.comment"];
    let mut args = vec!["-r", pcap.to_str().unwrap(), "-T", "fields", "-E", "separator=|"];
    args.extend(fields);
    let packets = wireshark("tshark", &args).lines().map(str::to_owned).collect();
    Run {
        spans: spans.into_iter().filter(|s| s.name == "network.packet.journey").collect(),
        metrics,
        output: flowtel.child.output(),
        packets,
    }
}

#[test]
fn dropped_and_delivered_packets_are_traces_of_their_hooks() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    let pair = VethPair::quiet("jrn", false);
    pair.b.drop_udp_to_port(DROPPED_PORT);
    let filter = format!("udp port {DROPPED_PORT} or tcp port {DELIVERED_PORT}");
    let Run { spans, output, packets, .. } = run(&pair, &filter, 100, || {
        let server = pair.b.python(&format!(
            "import socket\ns=socket.socket();s.bind(('{b}',{DELIVERED_PORT}));s.listen()\n\
             print('ready',flush=True)\nc,_=s.accept()\nprint(c.recv(100))\n",
            b = VethPair::B_V4
        ));
        std::thread::sleep(Duration::from_millis(300) * time_scale());
        send(&pair, DROPPED_PORT, 3);
        finish(pair.a.python(&format!(
            "import socket\ns=socket.create_connection(('{b}',{DELIVERED_PORT}))\ns.sendall(b'hello')\nprint(0)\n",
            b = VethPair::B_V4
        )));
        finish(server);
    });
    assert!(output.contains("Following packet journeys"), "{output}");
    let (a_netns, b_netns) = (pair.a.inode().to_string(), pair.b.inode().to_string());

    let dropped: Vec<&Item> = spans.iter().filter(|s| attr(s, "destination.port") == "7000").collect();
    assert_eq!(dropped.len(), 3, "{spans:#?}\n{output}");
    for span in &dropped {
        let events = span.raw["events"].as_array().unwrap();
        let hooks: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
        // Sent from the first namespace's veth, taken in on the second's, dropped there.
        let queued = hooks.iter().position(|h| *h == "net_dev_queue").expect("net_dev_queue");
        let received = hooks.iter().position(|h| *h == "netif_receive_skb").expect("netif_receive_skb");
        assert!(queued < received, "{hooks:?}");
        assert_eq!(hooks.last(), Some(&"kfree_skb"), "{hooks:?}");
        assert_eq!(
            (event_attr(&events[queued], "network.interface.name"), event_attr(&events[queued], "linux.netns.inode")),
            (VethPair::A_IF.to_owned(), a_netns.clone())
        );
        assert_eq!(
            (
                event_attr(&events[received], "network.interface.name"),
                event_attr(&events[received], "linux.netns.inode")
            ),
            (VethPair::B_IF.to_owned(), b_netns.clone())
        );
        // Where it crossed the veth pair, the event says what changed.
        let crossed = events.iter().find(|e| !event_attr(e, "network.packet.journey.change").is_empty());
        let change = crossed.map(|e| event_attr(e, "network.packet.journey.change")).unwrap_or_default();
        assert!(change.starts_with("interface veth0 → veth1, netns "), "{events:#?}");
        let times: Vec<u64> = events.iter().map(|e| e["timeUnixNano"].as_str().unwrap().parse().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        let reason = if kernel_at_least(5, 17) { "NETFILTER_DROP" } else { "NOT_SPECIFIED" };
        assert_eq!(event_attr(events.last().unwrap(), "network.drop.reason"), reason);
        assert_eq!(
            (attr(span, "network.packet.journey.outcome"), attr(span, "source.address")),
            ("dropped", VethPair::A_V4)
        );
        assert_eq!(span.raw["status"]["code"], 2, "an error status: {:#}", span.raw);
    }

    // The request's data segment, copied to the server's reader: delivered.
    // (The connection's other segments end when the kernel frees them,
    // which for a segment a reader took can come later, on another CPU.)
    let copied: Vec<&Item> = spans
        .iter()
        .filter(|s| attr(s, "destination.port") == "7001" && attr(s, "network.packet.journey.outcome") == "delivered")
        .filter(|s| s.raw["events"].as_array().unwrap().last().unwrap()["name"] == "skb_copy_datagram_iovec")
        .collect();
    assert_eq!(copied.len(), 1, "{spans:#?}\n{output}");
    let hooks: Vec<&str> =
        copied[0].raw["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(hooks.first(), Some(&"net_dev_queue"), "{hooks:?}");
    assert!(hooks.contains(&"netif_receive_skb"), "{hooks:?}");
    // The pcap exporter wrote each dropped datagram, commented with its hooks.
    let dropped_packets: Vec<&String> = packets.iter().filter(|p| p.contains("|7000|")).collect();
    assert_eq!(dropped_packets.len(), 3, "{packets:#?}");
    for packet in dropped_packets {
        assert!(packet.starts_with(&format!("{}|7000|journey net_dev_queue veth0 → ", VethPair::A_V4)), "{packet}");
        assert!(
            packet.ends_with("kfree_skb veth1: drop NETFILTER_DROP at nft_do_chain") || !kernel_at_least(5, 17),
            "{packet}"
        );
    }
    // The debug exporter prints each journey as a sequence of hooks.
    assert!(output.contains("net_dev_queue") && output.contains("kfree_skb"), "{output}");
}

#[test]
fn journeys_over_the_budget_are_counted() {
    assert!(is_root(), "this privileged test needs root: run `cargo xtask test` as root");
    const SENT: usize = 40;
    let pair = VethPair::quiet("jrb", false);
    pair.b.drop_udp_to_port(OVER_BUDGET_PORT);
    let filter = format!("udp port {OVER_BUDGET_PORT}");
    let Run { spans, metrics, output, .. } = run(&pair, &filter, 3, || send(&pair, OVER_BUDGET_PORT, SENT));
    let exported = spans.iter().filter(|s| attr(s, "destination.port") == "7002").count();
    let over_budget = metric_value(&metrics, "flowtel_ebpf_journeys_over_budget_total", &[]) as usize;
    assert!(exported < SENT && over_budget > 0, "{exported} exported, {over_budget} over budget\n{output}");
    assert_eq!(exported + over_budget, SENT, "no journey lost silently\n{metrics}");
}
