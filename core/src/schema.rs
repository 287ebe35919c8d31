//! flowtel's record schema, defined once: the event names of its log
//! records, their attribute keys, and its metrics' names and units.
//! Every component writes and reads records through these names, so a
//! rename here is a rename everywhere (`cargo xtask check` refuses the keys
//! spelled as string literals anywhere else but tests).
//!
//! Keys follow the OpenTelemetry semantic conventions where one exists
//! (said on each); the rest are flowtel's own, under the namespaces the
//! conventions use (`network.*`, `process.*`, `k8s.*`).

/// `event_name` of each kind of kernel record.
pub mod event {
    /// A flow's packets and bytes since its last report (`network.flow`).
    pub const FLOW: &str = "network.flow";
    /// A packet the kernel dropped, with its reason.
    pub const PACKET_DROP: &str = "network.packet.drop";
    /// The span of a packet's journey across the stack's hooks.
    pub const PACKET_JOURNEY: &str = "network.packet.journey";
    /// A TCP segment retransmitted.
    pub const TCP_RETRANSMIT: &str = "network.tcp.retransmit";
    /// A TCP reset sent or received.
    pub const TCP_RESET: &str = "network.tcp.reset";
    /// A TCP connection that closed, with its handshake, RTT and process.
    pub const TCP_CONNECTION: &str = "network.tcp.connection";
}

/// Attribute keys of records, data points and resources.
pub mod attr {
    // The 5-tuple and where a packet was seen.

    /// `ipv4` or `ipv6` (semantic conventions: `network.type`).
    pub const NETWORK_TYPE: &str = "network.type";
    /// `tcp`, `udp`, `icmp`, … (semantic conventions: `network.transport`).
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    /// The interface a packet was seen on (semantic conventions: `network.interface.name`).
    pub const NETWORK_INTERFACE_NAME: &str = "network.interface.name";
    /// `transmit` or `receive` (semantic conventions: `network.io.direction`).
    pub const NETWORK_IO_DIRECTION: &str = "network.io.direction";
    /// The sending end's address (semantic conventions: `source.address`).
    pub const SOURCE_ADDRESS: &str = "source.address";
    /// The sending end's port (semantic conventions: `source.port`).
    pub const SOURCE_PORT: &str = "source.port";
    /// The receiving end's address (semantic conventions: `destination.address`).
    pub const DESTINATION_ADDRESS: &str = "destination.address";
    /// The receiving end's port (semantic conventions: `destination.port`).
    pub const DESTINATION_PORT: &str = "destination.port";
    /// An ICMP message's type.
    pub const NETWORK_ICMP_TYPE: &str = "network.icmp.type";
    /// An ICMP message's code.
    pub const NETWORK_ICMP_CODE: &str = "network.icmp.code";
    /// The inode of the network namespace the event happened in.
    pub const LINUX_NETNS_INODE: &str = "linux.netns.inode";
    /// A packet's length in bytes.
    pub const NETWORK_PACKET_LENGTH: &str = "network.packet.length";
    /// A packet's first bytes from its IP header (bytes; `drops.snaplen`).
    pub const NETWORK_PACKET_DATA: &str = "network.packet.data";

    // Packet journeys (`journeys.enabled`).

    /// `dropped` or `delivered`: how a journey ended.
    pub const NETWORK_PACKET_JOURNEY_OUTCOME: &str = "network.packet.journey.outcome";
    /// Hooks the packet passed, its end included.
    pub const NETWORK_PACKET_JOURNEY_HOOKS: &str = "network.packet.journey.hooks";
    /// On a hook's event: what changed since the hook before
    /// (`interface veth0 → veth1, netns … → …, length 228 → 214`).
    pub const NETWORK_PACKET_JOURNEY_CHANGE: &str = "network.packet.journey.change";

    // The nftables rule that dropped a packet (`allow_system_changes`).

    /// The table's family: `inet`, `ip`, `ip6`, `bridge`, `netdev`, `arp`.
    pub const NETWORK_NETFILTER_FAMILY: &str = "network.netfilter.family";
    /// The table.
    pub const NETWORK_NETFILTER_TABLE: &str = "network.netfilter.table";
    /// The chain.
    pub const NETWORK_NETFILTER_CHAIN: &str = "network.netfilter.chain";
    /// The rule's handle (`nft -a list ruleset` shows it); absent when the
    /// chain's policy dropped the packet.
    pub const NETWORK_NETFILTER_RULE_HANDLE: &str = "network.netfilter.rule.handle";
    /// `drop` (a rule) or `policy drop` (the chain's policy).
    pub const NETWORK_NETFILTER_VERDICT: &str = "network.netfilter.verdict";

    // A NATed connection, from conntrack (`conntrack.enabled`).

    /// The original direction's source address (as the first packet was sent).
    pub const NETWORK_CONNTRACK_ORIGINAL_SOURCE_ADDRESS: &str = "network.conntrack.original.source.address";
    /// The original direction's source port (as the first packet was sent).
    pub const NETWORK_CONNTRACK_ORIGINAL_SOURCE_PORT: &str = "network.conntrack.original.source.port";
    /// The original direction's destination address (as the first packet was sent).
    pub const NETWORK_CONNTRACK_ORIGINAL_DESTINATION_ADDRESS: &str = "network.conntrack.original.destination.address";
    /// The original direction's destination port (as the first packet was sent).
    pub const NETWORK_CONNTRACK_ORIGINAL_DESTINATION_PORT: &str = "network.conntrack.original.destination.port";
    /// The reply direction's source address (as the replies are sent, after NAT).
    pub const NETWORK_CONNTRACK_REPLY_SOURCE_ADDRESS: &str = "network.conntrack.reply.source.address";
    /// The reply direction's source port (as the replies are sent, after NAT).
    pub const NETWORK_CONNTRACK_REPLY_SOURCE_PORT: &str = "network.conntrack.reply.source.port";
    /// The reply direction's destination address (as the replies are sent, after NAT).
    pub const NETWORK_CONNTRACK_REPLY_DESTINATION_ADDRESS: &str = "network.conntrack.reply.destination.address";
    /// The reply direction's destination port (as the replies are sent, after NAT).
    pub const NETWORK_CONNTRACK_REPLY_DESTINATION_PORT: &str = "network.conntrack.reply.destination.port";
    /// `original` or `reply`: which way the record's packets went.
    pub const NETWORK_CONNTRACK_DIRECTION: &str = "network.conntrack.direction";
    /// `snat`, `dnat` or `snat+dnat`.
    pub const NETWORK_CONNTRACK_NAT: &str = "network.conntrack.nat";

    // Flows.

    /// Bytes in the report.
    pub const FLOW_BYTES: &str = "flow.bytes";
    /// Packets in the report.
    pub const FLOW_PACKETS: &str = "flow.packets";
    /// When the flow was first seen (RFC 3339).
    pub const FLOW_START: &str = "flow.start";
    /// Why the flow ended: `fin`, `rst`, `idle`, `evicted`.
    pub const FLOW_END_REASON: &str = "flow.end_reason";
    /// The kernel counted one packet in this many.
    pub const FLOW_SAMPLING_RATE: &str = "flow.sampling_rate";
    /// `true` when the flow answers another (the server's side of a
    /// connection, an echo reply), `false` when it asks; absent when unknown
    /// (Hubble's `is_reply`).
    pub const FLOW_IS_REPLY: &str = "flow.is_reply";
    /// The TCP flags seen on the flow (`SYN|ACK`).
    pub const NETWORK_TCP_FLAGS: &str = "network.tcp.flags";

    // Drops.

    /// The kernel's drop reason (`NO_SOCKET`, from `enum skb_drop_reason`).
    pub const NETWORK_DROP_REASON: &str = "network.drop.reason";
    /// The kernel function that dropped the packet.
    pub const NETWORK_DROP_LOCATION: &str = "network.drop.location";
    /// The kernel stack of the drop, innermost first.
    pub const NETWORK_DROP_STACK: &str = "network.drop.stack";

    // TCP.

    /// A socket's TCP state (`ESTABLISHED`).
    pub const NETWORK_TCP_STATE: &str = "network.tcp.state";
    /// `client` or `server`: the connection's end the record describes.
    pub const NETWORK_TCP_SIDE: &str = "network.tcp.side";
    /// Segments one retransmit carried.
    pub const NETWORK_TCP_RETRANSMIT_SEGMENTS: &str = "network.tcp.retransmit.segments";
    /// The error of a failed retransmit.
    pub const NETWORK_TCP_RETRANSMIT_ERROR: &str = "network.tcp.retransmit.error";
    /// Why a reset was sent (`enum sk_rst_reason`).
    pub const NETWORK_TCP_RESET_REASON: &str = "network.tcp.reset.reason";
    /// Seconds from the first SYN to the handshake's end.
    pub const NETWORK_TCP_HANDSHAKE_DURATION: &str = "network.tcp.handshake.duration";
    /// The smoothed round-trip time, in seconds.
    pub const NETWORK_TCP_SRTT: &str = "network.tcp.srtt";
    /// TCP responses a flow record's direction carried: a server's first
    /// data segment after its client's data.
    pub const NETWORK_TCP_RESPONSES: &str = "network.tcp.responses";
    /// Their mean latency in seconds, from the client's last data segment
    /// to the server's first (packet timing alone, so TLS too).
    pub const NETWORK_TCP_RESPONSE_DURATION: &str = "network.tcp.response.duration";
    /// Seconds the connection lived.
    pub const NETWORK_TCP_CONNECTION_DURATION: &str = "network.tcp.connection.duration";
    /// Bytes the peer acknowledged.
    pub const NETWORK_TCP_BYTES_ACKED: &str = "network.tcp.bytes_acked";
    /// Bytes received.
    pub const NETWORK_TCP_BYTES_RECEIVED: &str = "network.tcp.bytes_received";

    // The local process and container of an end.

    /// A process id (semantic conventions: `process.pid`).
    pub const PROCESS_PID: &str = "process.pid";
    /// A process's executable (semantic conventions: `process.executable.name`).
    pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
    /// A process's cgroup path (semantic conventions: `process.linux.cgroup`).
    pub const PROCESS_LINUX_CGROUP: &str = "process.linux.cgroup";
    /// A container's id (semantic conventions: `container.id`).
    pub const CONTAINER_ID: &str = "container.id";
    /// A container image's name (semantic conventions: `container.image.name`).
    pub const CONTAINER_IMAGE_NAME: &str = "container.image.name";
    /// A container image's tag (semantic conventions: `container.image.tag`).
    pub const CONTAINER_IMAGE_TAG: &str = "container.image.tag";
    /// The local process at the flow's source end.
    pub const SOURCE_PROCESS_PID: &str = "source.process.pid";
    /// The local executable at the flow's source end.
    pub const SOURCE_PROCESS_EXECUTABLE_NAME: &str = "source.process.executable.name";
    /// The container at the flow's source end.
    pub const SOURCE_CONTAINER_ID: &str = "source.container.id";
    /// The network namespace at the flow's source end.
    pub const SOURCE_LINUX_NETNS_INODE: &str = "source.linux.netns.inode";
    /// The local process at the flow's destination end.
    pub const DESTINATION_PROCESS_PID: &str = "destination.process.pid";
    /// The local executable at the flow's destination end.
    pub const DESTINATION_PROCESS_EXECUTABLE_NAME: &str = "destination.process.executable.name";
    /// The container at the flow's destination end.
    pub const DESTINATION_CONTAINER_ID: &str = "destination.container.id";
    /// The network namespace at the flow's destination end.
    pub const DESTINATION_LINUX_NETNS_INODE: &str = "destination.linux.netns.inode";

    // A span's connection (semantic conventions; the older `net.*` names
    // are what many instrumentations still send).

    /// The client end's address (semantic conventions: `client.address`).
    pub const CLIENT_ADDRESS: &str = "client.address";
    /// The client end's port (semantic conventions: `client.port`).
    pub const CLIENT_PORT: &str = "client.port";
    /// The server end's address or name (semantic conventions: `server.address`).
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The server end's port (semantic conventions: `server.port`).
    pub const SERVER_PORT: &str = "server.port";
    /// The peer's address on the wire (semantic conventions: `network.peer.address`).
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    /// The peer's port on the wire (semantic conventions: `network.peer.port`).
    pub const NETWORK_PEER_PORT: &str = "network.peer.port";
    /// The local address on the wire (semantic conventions: `network.local.address`).
    pub const NETWORK_LOCAL_ADDRESS: &str = "network.local.address";
    /// The local port on the wire (semantic conventions: `network.local.port`).
    pub const NETWORK_LOCAL_PORT: &str = "network.local.port";
    /// The peer's IP, before `network.peer.address` (deprecated convention: `net.peer.ip`).
    pub const NET_PEER_IP: &str = "net.peer.ip";
    /// The peer's port, before `network.peer.port` (deprecated convention: `net.peer.port`).
    pub const NET_PEER_PORT: &str = "net.peer.port";
    /// The peer socket's address (deprecated convention: `net.sock.peer.addr`).
    pub const NET_SOCK_PEER_ADDR: &str = "net.sock.peer.addr";
    /// The peer socket's port (deprecated convention: `net.sock.peer.port`).
    pub const NET_SOCK_PEER_PORT: &str = "net.sock.peer.port";
    /// The local socket's address (deprecated convention: `net.sock.host.addr`).
    pub const NET_SOCK_HOST_ADDR: &str = "net.sock.host.addr";
    /// The local socket's port (deprecated convention: `net.sock.host.port`).
    pub const NET_SOCK_HOST_PORT: &str = "net.sock.host.port";
    /// The local IP (deprecated convention: `net.host.ip`).
    pub const NET_HOST_IP: &str = "net.host.ip";
    /// The local port (deprecated convention: `net.host.port`).
    pub const NET_HOST_PORT: &str = "net.host.port";

    // Resources.

    /// The service (semantic conventions: `service.name`).
    pub const SERVICE_NAME: &str = "service.name";
    /// The service's namespace (semantic conventions: `service.namespace`).
    pub const SERVICE_NAMESPACE: &str = "service.namespace";
    /// The service's version (semantic conventions: `service.version`).
    pub const SERVICE_VERSION: &str = "service.version";
    /// The service instance (semantic conventions: `service.instance.id`).
    pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    /// The host (semantic conventions: `host.name`).
    pub const HOST_NAME: &str = "host.name";

    // Sampling.

    /// Items each kept item stands for (semantic conventions: `sampling.adjusted_count`).
    pub const SAMPLING_ADJUSTED_COUNT: &str = "sampling.adjusted_count";
    /// A sender's request to keep (> 0) or drop (0) an item, as the collector reads it.
    pub const SAMPLING_PRIORITY: &str = "sampling.priority";

    // Kubernetes (semantic conventions: `k8s.*`).

    /// A pod's name.
    pub const K8S_POD_NAME: &str = "k8s.pod.name";
    /// A pod's uid.
    pub const K8S_POD_UID: &str = "k8s.pod.uid";
    /// A pod's IP address.
    pub const K8S_POD_IP: &str = "k8s.pod.ip";
    /// A pod's host name.
    pub const K8S_POD_HOSTNAME: &str = "k8s.pod.hostname";
    /// When a pod started.
    pub const K8S_POD_START_TIME: &str = "k8s.pod.start_time";
    /// A namespace's name.
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    /// A node's name.
    pub const K8S_NODE_NAME: &str = "k8s.node.name";
    /// A node's uid.
    pub const K8S_NODE_UID: &str = "k8s.node.uid";
    /// The kind of a pod's owner (flowtel's: `Deployment`, `DaemonSet`, …).
    pub const K8S_OWNER_KIND: &str = "k8s.owner.kind";
    /// The name of a pod's owner (flowtel's).
    pub const K8S_OWNER_NAME: &str = "k8s.owner.name";
    /// A Deployment's name.
    pub const K8S_DEPLOYMENT_NAME: &str = "k8s.deployment.name";
    /// A Deployment's uid.
    pub const K8S_DEPLOYMENT_UID: &str = "k8s.deployment.uid";
    /// A ReplicaSet's name.
    pub const K8S_REPLICASET_NAME: &str = "k8s.replicaset.name";
    /// A ReplicaSet's uid.
    pub const K8S_REPLICASET_UID: &str = "k8s.replicaset.uid";
    /// A DaemonSet's name.
    pub const K8S_DAEMONSET_NAME: &str = "k8s.daemonset.name";
    /// A DaemonSet's uid.
    pub const K8S_DAEMONSET_UID: &str = "k8s.daemonset.uid";
    /// A StatefulSet's name.
    pub const K8S_STATEFULSET_NAME: &str = "k8s.statefulset.name";
    /// A StatefulSet's uid.
    pub const K8S_STATEFULSET_UID: &str = "k8s.statefulset.uid";
    /// A Job's name.
    pub const K8S_JOB_NAME: &str = "k8s.job.name";
    /// A Job's uid.
    pub const K8S_JOB_UID: &str = "k8s.job.uid";
    /// A CronJob's name.
    pub const K8S_CRONJOB_NAME: &str = "k8s.cronjob.name";
    /// A Service's name (flowtel's: the service whose selector matches the pod).
    pub const K8S_SERVICE_NAME: &str = "k8s.service.name";
    /// The cluster's uid.
    pub const K8S_CLUSTER_UID: &str = "k8s.cluster.uid";
    /// A container's name in its pod.
    pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";

    /// The prefix of a pod's labels (`k8s.pod.labels.app`), as the
    /// collector's `k8sattributes` names them by default.
    pub const K8S_POD_LABELS_PREFIX: &str = "k8s.pod.labels.";

    /// The key of a `k8s.*` attribute for one end of a flow:
    /// `k8s.src.pod.name` for the source of `k8s.pod.name`, `k8s.dst.…` for
    /// the destination; a custom name without the `k8s.` prefix gets the
    /// whole prefix (`team` → `k8s.src.team`).
    pub fn k8s_of_end(end: super::End, k8s_key: &str) -> String {
        let rest = k8s_key.strip_prefix("k8s.").unwrap_or(k8s_key);
        format!("k8s.{}.{rest}", end.k8s_prefix())
    }
}

/// One end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Where the packets come from.
    Source,
    /// Where they go.
    Destination,
}

impl End {
    /// `src` or `dst`, as in `k8s.src.pod.name`.
    pub fn k8s_prefix(self) -> &'static str {
        match self {
            End::Source => "src",
            End::Destination => "dst",
        }
    }
}

/// A metric's name and unit (UCUM, as the semantic conventions write units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricName {
    /// The name.
    pub name: &'static str,
    /// The unit.
    pub unit: &'static str,
}

/// flowtel's kernel metrics.
pub mod metric {
    use super::MetricName;

    /// Bytes seen by the flow programs (Sum).
    pub const FLOW_BYTES: MetricName = MetricName { name: "network.flow.bytes", unit: "By" };
    /// Packets seen by the flow programs (Sum).
    pub const FLOW_PACKETS: MetricName = MetricName { name: "network.flow.packets", unit: "{packet}" };
    /// Flows in the kernel's flow table (Gauge).
    pub const FLOWS_ACTIVE: MetricName = MetricName { name: "network.flows.active", unit: "{flow}" };
    /// Packets the kernel dropped, by reason (Sum).
    pub const PACKET_DROPS: MetricName = MetricName { name: "network.packet.drops", unit: "{packet}" };
    /// TCP segments retransmitted (Sum).
    pub const TCP_RETRANSMITS: MetricName = MetricName { name: "network.tcp.retransmits", unit: "{segment}" };
    /// TCP resets sent and received (Sum).
    pub const TCP_RESETS: MetricName = MetricName { name: "network.tcp.resets", unit: "{segment}" };
    /// Smoothed round-trip times (Histogram, seconds).
    pub const TCP_RTT: MetricName = MetricName { name: "network.tcp.rtt", unit: "s" };
    /// TCP handshake durations (Histogram, seconds).
    pub const TCP_HANDSHAKE_DURATION: MetricName = MetricName { name: "network.tcp.handshake.duration", unit: "s" };
    /// TCP request/response latency by server end (Histogram, seconds).
    pub const TCP_RESPONSE_DURATION: MetricName = MetricName { name: "network.tcp.response.duration", unit: "s" };
}
