//! Privileged, real kernel: flowtel holding only the capabilities the
//! README's table names records flows, drops and TCP events; the optional
//! ones add the process at each end (`host_attributes`) and the drop's
//! function name (kallsyms). Needs root (to hand out capabilities).

#![allow(clippy::unwrap_used, missing_docs)]

use std::{path::Path, time::Duration};

use flowtel_tests::{
    Flowtel, free_port,
    netns::is_root,
    otlp_json::{Item, file_requests, items},
};

/// What flows, drops and TCP events need.
const REQUIRED: &str = "bpf,perfmon,net_admin";
/// What the process at each end and the drop's function name add.
const OPTIONAL: &str = "sys_ptrace,dac_read_search,syslog";

fn config(dir: &Path) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [lo], flush_interval: 500ms}}
processors:
  host_attributes:
exporters:
  file: {{path: "{}/logs.jsonl"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], processors: [host_attributes], exporters: [file]}}
"#,
        dir.display()
    )
}

/// A refused connection to `closed` and one that sends data to a server on
/// `open`, all on loopback; returns the client's process name.
fn traffic(closed: u16, open: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", open)).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::copy(&mut stream, &mut std::io::sink()).unwrap();
    });
    assert!(std::net::TcpStream::connect(("127.0.0.1", closed)).is_err(), "nothing listens on {closed}");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", open)).unwrap();
    std::io::Write::write_all(&mut client, &[7; 100_000]).unwrap();
    // The connection lives across a flush, so the flow is seen with its ends' process.
    std::thread::sleep(Duration::from_millis(1200));
    drop(client);
    server.join().unwrap();
}

fn attr<'a>(item: &'a Item, key: &str) -> &'a str {
    item.attributes.get(key).map_or("", String::as_str)
}

struct Seen {
    flows: Vec<Item>,
    drops: Vec<Item>,
    tcp: Vec<Item>,
}

fn run(capabilities: &str) -> Seen {
    let dir = tempfile::tempdir().unwrap();
    let mut flowtel = Flowtel::start_with_capabilities(&config(dir.path()), capabilities);
    let (closed, open) = (free_port(), free_port());
    traffic(closed, open);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(flowtel.child.stop().success(), "{}", flowtel.child.output());
    let records = items(&file_requests(&dir.path().join("logs.jsonl")), "logs");
    let on_port = |item: &Item, port: u16| {
        attr(item, "destination.port") == port.to_string() || attr(item, "source.port") == port.to_string()
    };
    let of = |event: &str, port: u16| -> Vec<Item> {
        records.iter().filter(|r| r.event_name == event && on_port(r, port)).cloned().collect()
    };
    let mut tcp = of("network.tcp.reset", closed);
    tcp.extend(of("network.tcp.connection", open));
    Seen { flows: of("network.flow", open), drops: of("network.packet.drop", closed), tcp }
}

#[test]
fn the_documented_capabilities_are_enough() {
    if !is_root() {
        eprintln!("skipped: needs root to hand flowtel capabilities");
        return;
    }
    let seen = run(REQUIRED);
    let bytes: u64 = seen.flows.iter().map(|f| attr(f, "flow.bytes").parse::<u64>().unwrap()).sum();
    assert!(bytes > 100_000, "the connection's flows, {bytes} bytes");
    let refused: Vec<&Item> = seen.drops.iter().filter(|d| attr(d, "network.drop.reason") == "NO_SOCKET").collect();
    assert!(!refused.is_empty(), "the refused SYN is a drop");
    assert!(
        refused.iter().all(|d| attr(d, "network.drop.location").starts_with("0x")),
        "without CAP_SYSLOG kallsyms hides names: {:?}",
        refused.iter().map(|d| attr(d, "network.drop.location")).collect::<Vec<_>>()
    );
    assert!(seen.tcp.iter().any(|t| t.event_name == "network.tcp.reset"), "the refusal's reset");
    assert!(seen.tcp.iter().any(|t| t.event_name == "network.tcp.connection"), "the closed connection");

    let seen = run(&format!("{REQUIRED},{OPTIONAL}"));
    assert!(
        seen.drops.iter().any(|d| attr(d, "network.drop.location") == "tcp_v4_rcv"),
        "with CAP_SYSLOG the drop names its function"
    );
    let named = seen.flows.iter().any(|f| {
        [attr(f, "source.process.executable.name"), attr(f, "destination.process.executable.name")]
            .iter()
            .any(|name| name.starts_with("least_privilege"))
    });
    assert!(named, "host_attributes names this test's process at an end of the flow");
}
