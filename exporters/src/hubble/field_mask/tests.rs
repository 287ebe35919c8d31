use super::*;
use crate::hubble::proto::flow::Verdict;

fn flow() -> Flow {
    Flow {
        time: Some(Timestamp { seconds: 1_700_000_000, nanos: 5 }),
        verdict: Verdict::Forwarded as i32,
        node_name: "node-1".into(),
        is_reply: Some(true),
        source: Some(Endpoint { namespace: "web".into(), pod_name: "front-1".into(), ..Endpoint::default() }),
        ip: Some(Ip { source: "10.0.0.1".into(), destination: "10.0.0.2".into(), ip_version: 1, encrypted: false }),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Tcp(Tcp {
                source_port: 1,
                destination_port: 2,
                flags: Some(TcpFlags { syn: true, ack: true, ..TcpFlags::default() }),
            })),
        }),
        ..Flow::default()
    }
}

fn mask(paths: &[&str]) -> Result<FieldMask, String> {
    FieldMask::new(&paths.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>()).map_err(|e| e.to_string())
}

/// The mask the `hubble` CLI (1.17 to 1.19) sends by default for its compact,
/// dict and table output.
const HUBBLE_CLI_DEFAULT_MASK: [&str; 19] = [
    "time",
    "source.identity",
    "source.namespace",
    "source.pod_name",
    "destination.identity",
    "destination.namespace",
    "destination.pod_name",
    "source_service",
    "destination_service",
    "l4",
    "IP",
    "ethernet",
    "l7",
    "Type",
    "node_name",
    "is_reply",
    "event_type",
    "verdict",
    "Summary",
];

#[test]
fn the_hubble_cli_default_mask_is_accepted_and_keeps_what_it_prints() {
    let masked = mask(&HUBBLE_CLI_DEFAULT_MASK).unwrap().apply(&flow());
    assert_eq!(masked.time, flow().time);
    assert_eq!(masked.is_reply, Some(true));
    assert_eq!(masked.l4, flow().l4);
    assert_eq!(masked.ip, flow().ip);
    let source = masked.source.unwrap();
    assert_eq!((source.namespace.as_str(), source.pod_name.as_str()), ("web", "front-1"));
}

#[test]
fn keeps_only_the_named_fields() {
    let masked = mask(&["verdict", "source.pod_name", "IP.destination", "l4.TCP"]).unwrap().apply(&flow());
    assert_eq!(masked.verdict, Verdict::Forwarded as i32);
    assert!(masked.node_name.is_empty());
    assert!(masked.time.is_none());
    let source = masked.source.unwrap();
    assert_eq!((source.pod_name.as_str(), source.namespace.as_str()), ("front-1", ""));
    let ip = masked.ip.unwrap();
    assert_eq!((ip.source.as_str(), ip.destination.as_str()), ("", "10.0.0.2"));
    assert_eq!(masked.l4, flow().l4);
    assert!(mask(&["l4.UDP"]).unwrap().apply(&flow()).l4.unwrap().protocol.is_none(), "not a UDP flow");
}

#[test]
fn deep_paths_keep_part_of_a_message_and_a_shorter_path_covers_a_longer_one() {
    let masked = mask(&["l4.TCP.flags.SYN", "time.seconds"]).unwrap().apply(&flow());
    let Some(Protocol::Tcp(tcp)) = masked.l4.unwrap().protocol else { panic!("TCP expected") };
    assert_eq!(tcp.source_port, 0);
    assert_eq!(tcp.flags, Some(TcpFlags { syn: true, ..TcpFlags::default() }));
    assert_eq!(masked.time, Some(Timestamp { seconds: 1_700_000_000, nanos: 0 }));
    let both = mask(&["source.pod_name", "source"]).unwrap().apply(&flow());
    assert_eq!(both.source, flow().source);
}

#[test]
fn fields_flowtel_never_fills_are_accepted_and_stay_empty() {
    for path in ["l7", "l7.http.method", "source.cluster_name", "egress_denied_by", "tunnel.vni", "extensions"] {
        let mut masked = mask(&[path]).unwrap_or_else(|err| panic!("{path}: {err}")).apply(&flow());
        // The message a path goes through is there, empty, as Hubble sends it.
        assert_eq!(masked.source.take().unwrap_or_default(), Endpoint::default(), "{path}");
        assert_eq!(masked, Flow::default(), "{path}");
    }
}

#[test]
fn an_empty_mask_keeps_everything_and_unknown_paths_are_refused() {
    assert_eq!(mask(&[]).unwrap().apply(&flow()), flow());
    for bad in ["nope", "source.nope", "IP.source.more", "time.seconds.x", "source.labels.x", "", "l4..TCP"] {
        let err = mask(&[bad]).unwrap_err();
        assert!(err.contains(&format!("'{bad}'")), "{err}");
    }
    let too_many: Vec<&str> = vec!["time"; MAX_PATHS + 1];
    assert!(mask(&too_many).unwrap_err().contains("at most"));
}
