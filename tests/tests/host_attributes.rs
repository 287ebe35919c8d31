//! Privileged, real kernel: a TCP connection between processes in two
//! network namespaces; the flow records of it name, for each end, the
//! process, its command and its namespace, read from /proc. Needs root.

#![allow(clippy::unwrap_used, missing_docs)]

use std::{path::Path, time::Duration};

use flowtel_tests::{
    Flowtel,
    netns::{VethPair, is_root},
    otlp_json::{Item, file_requests, items},
    wait_for,
};

fn config(file: &Path) -> String {
    format!(
        r#"
receivers:
  ebpf: {{interfaces: [{}], flush_interval: 500ms, drops: {{enabled: false}}, tcp: {{enabled: false}}}}
processors:
  host_attributes: {{refresh_interval: 1s}}
exporters:
  file: {{path: "{}"}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:${{METRICS_PORT}}"}}}}
  pipelines:
    logs: {{receivers: [ebpf], processors: [host_attributes], exporters: [file]}}
"#,
        VethPair::A_IF,
        file.display()
    )
}

fn flows_to(file: &Path, port: &str) -> Vec<Item> {
    items(&file_requests(file), "logs")
        .into_iter()
        .filter(|r| {
            r.event_name == "network.flow" && r.attributes.get("destination.port").map(String::as_str) == Some(port)
        })
        .collect()
}

#[test]
fn each_end_of_a_flow_names_its_process_and_namespace() {
    if !is_root() {
        eprintln!("skipped: needs root to load eBPF programs and create namespaces");
        return;
    }
    let pair = VethPair::quiet("hat", false);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flows.jsonl");
    let _flowtel = Flowtel::start_in_netns(&config(&file), &pair.a.name);
    let server = pair.b.python(
        "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('10.77.0.2',7100))\ns.listen()\nc,_=s.accept()\n\
         for i in range(40):\n  c.recv(100); c.send(b'y'*10)\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    // The client sends a little every 100 ms for 4 s, so the flow is
    // reported while both sockets exist.
    let client = pair.a.python(
        "import socket,time\nc=socket.create_connection(('10.77.0.2',7100))\n\
         for i in range(40):\n  c.send(b'x'*10); c.recv(100); time.sleep(0.1)\n",
    );
    let (client_pid, server_pid) = (client.id().to_string(), server.id().to_string());
    let described = wait_for(Duration::from_secs(20), "a flow record with both ends' processes", || {
        flows_to(&file, "7100").into_iter().find(|r| {
            r.attributes.contains_key("source.process.pid") && r.attributes.contains_key("destination.process.pid")
        })
    });
    let get = |key: &str| described.attributes.get(key).cloned().unwrap_or_default();
    assert_eq!(get("source.process.pid"), client_pid);
    assert_eq!(get("destination.process.pid"), server_pid);
    assert_eq!(get("source.process.executable.name"), "python3");
    assert_eq!(get("destination.process.executable.name"), "python3");
    assert_eq!(get("source.linux.netns.inode"), pair.a.inode().to_string());
    assert_eq!(get("destination.linux.netns.inode"), pair.b.inode().to_string());
    flowtel_tests::netns::finish(client);
    flowtel_tests::netns::finish(server);
}
