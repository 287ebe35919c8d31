use std::{collections::HashMap, net::Ipv4Addr};

use flowtel_core::attributes::find;
use opentelemetry_proto::tonic::{
    common::v1::AnyValue,
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};

use super::{
    sockets::{
        cgroup_v2_path, namespace_inode, parse_fib_trie_local, parse_if_inet6, parse_socket_table, socket_inode,
    },
    *,
};

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";

const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F91 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 20 4 0 10 -1
   1: 000080FE00000000FF4E17A2FE8D3412:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1 0000000000000000 100 0 0 10 0
";

const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.77.0.0/24 2 0 2
        +-- 10.77.0.0/31 1 0 0
           |-- 10.77.0.0
              /24 link UNICAST
           |-- 10.77.0.1
              /32 host LOCAL
        |-- 10.77.0.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.77.0.1
        /32 host LOCAL
     |-- 127.0.0.1
        /32 host LOCAL
";

#[test]
fn socket_tables_read_in_the_kernels_byte_order() {
    let rows = parse_socket_table(TCP);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].local, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(rows[0].remote.port(), 0);
    assert_eq!(rows[1].local, "127.0.0.1:50000".parse().unwrap());
    assert_eq!(rows[1].remote, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(rows[2].inode, 1003);
    let rows6 = parse_socket_table(TCP6);
    assert_eq!(rows6[0].local, "[::ffff:127.0.0.1]:8081".parse().unwrap());
    assert_eq!(rows6[1].local, "[fe80::a217:4eff:1234:8dfe]:80".parse().unwrap());
}

#[test]
fn local_addresses_come_from_fib_trie_and_if_inet6() {
    assert_eq!(parse_fib_trie_local(FIB_TRIE), [Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(127, 0, 0, 1)]);
    let inet6 = "fe80000000000000a2174efffe12348d 02 40 20 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\n";
    assert_eq!(
        parse_if_inet6(inet6),
        ["fe80::a217:4eff:fe12:348d".parse::<std::net::Ipv6Addr>().unwrap(), "::1".parse().unwrap()]
    );
    assert_eq!(namespace_inode("net:[4026531840]"), Some(4026531840));
    assert_eq!(socket_inode("socket:[1002]"), Some(1002));
    assert_eq!(socket_inode("pipe:[1002]"), None);
    assert_eq!(cgroup_v2_path("0::/system.slice/ssh.service\n"), Some("/system.slice/ssh.service"));
}

fn owner(pid: u32, netns: u64) -> Arc<SocketOwner> {
    Arc::new(SocketOwner { pid, command: format!("p{pid}"), container_id: None, netns })
}

#[test]
fn connected_then_bound_then_wildcard_sockets_are_found() {
    let mut index = SocketIndex::default();
    let owners: HashMap<u64, Arc<SocketOwner>> =
        [(1001, owner(10, 1)), (1002, owner(20, 1)), (1003, owner(30, 2)), (1004, owner(40, 1))].into();
    index.add(Transport::Tcp, 1, &parse_socket_table(TCP)[..2], &owners);
    index.add(Transport::Tcp, 2, &parse_socket_table(TCP)[2..], &owners);
    index.add(Transport::Tcp, 1, &parse_socket_table(TCP6)[..1], &owners);
    index.add_address(2, "10.77.0.1".parse().unwrap());
    let at = |local: &str, remote: &str| {
        index.owner(Transport::Tcp, local.parse().unwrap(), remote.parse().unwrap()).map(|o| o.pid)
    };
    assert_eq!(at("127.0.0.1:50000", "127.0.0.1:8080"), Some(20), "the connected client");
    assert_eq!(
        at("127.0.0.1:8080", "127.0.0.1:50000"),
        Some(10),
        "the listener (its accepted socket has no owner here)"
    );
    assert_eq!(at("10.77.0.1:53", "10.77.0.2:4000"), Some(30), "a wildcard listener in the namespace with the address");
    assert_eq!(at("10.77.0.9:53", "10.77.0.2:4000"), None, "not an address of that namespace");
    assert_eq!(at("127.0.0.1:8081", "127.0.0.1:54321"), Some(40), "an IPv4-mapped socket answers for its IPv4 address");
    assert_eq!(index.owner(Transport::Udp, "127.0.0.1:8080".parse().unwrap(), "127.0.0.1:1".parse().unwrap()), None);
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn flow(source: SocketAddr, destination: SocketAddr) -> Payload {
    let attributes = vec![
        kv("network.transport", Value::StringValue("tcp".into())),
        kv("source.address", Value::StringValue(source.ip().to_string())),
        kv("source.port", Value::IntValue(source.port().into())),
        kv("destination.address", Value::StringValue(destination.ip().to_string())),
        kv("destination.port", Value::IntValue(destination.port().into())),
    ];
    Payload::Logs(vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord { attributes, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn attributes(payload: &Payload) -> Vec<KeyValue> {
    match payload {
        Payload::Logs(r) => r[0].scope_logs[0].log_records[0].attributes.clone(),
        _ => unreachable!(),
    }
}

/// This test's own sockets, found in the real /proc.
#[test]
fn a_connection_of_this_process_is_found_in_proc() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    let (client_end, server_end) = (client.local_addr().unwrap(), listener.local_addr().unwrap());
    let index = SocketIndex::scan(Path::new("/proc"));
    let mut payload = flow(client_end, server_end);
    assert!(!enrich(&index, &mut payload), "both ends known");
    let a = attributes(&payload);
    let pid = i64::from(std::process::id());
    let netns = std::fs::read_link("/proc/self/ns/net").ok().and_then(|l| namespace_inode(&l.to_string_lossy()));
    assert_eq!(find(&a, "source.process.pid"), Some(&Value::IntValue(pid)));
    assert_eq!(find(&a, "destination.process.pid"), Some(&Value::IntValue(pid)));
    let command = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(find_text(&a, "source.process.executable.name").as_deref(), Some(command.trim_end()));
    assert_eq!(find(&a, "source.linux.netns.inode"), netns.map(|n| Value::IntValue(n as i64)).as_ref());

    // A local address whose socket is not (yet) known asks for a new read.
    let mut unknown = flow("127.0.0.1:1".parse().unwrap(), "192.0.2.1:2".parse().unwrap());
    assert!(enrich(&index, &mut unknown));
    assert_eq!(attributes(&unknown).len(), 5, "nothing added");
}
