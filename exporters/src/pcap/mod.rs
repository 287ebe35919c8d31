//! The `pcap` exporter: the packet bytes that drop records and journeys
//! carry (`network.packet.data`, from the `ebpf` receiver's
//! `drops.snaplen`) as pcap-ng files for Wireshark and tshark: one
//! interface block per interface and network namespace, a packet block per
//! record or journey with a comment saying why it was captured (the drop
//! reason and where, the journey's hooks), rotated by size like the `file`
//! exporter's files.

mod pcapng;

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::PathBuf,
    sync::{Mutex, PoisonError},
};

use async_trait::async_trait;
use flowtel_core::{
    Payload,
    attributes::{find, find_text},
    component::{ExportError, ExportOutcome, Exporter},
    config::Validate,
    export::{BuildError, RotatingFile, RotationConfig, validate_output},
    schema::{attr, event},
};
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value},
    logs::v1::LogRecord,
    trace::v1::Span,
};
use serde::Deserialize;

/// `exporters::pcap`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PcapConfig {
    /// The pcap-ng file to write; its directory must exist. An existing
    /// file gets a new section appended.
    pub path: PathBuf,
    /// Size-based rotation, as the `file` exporter's; without it the file
    /// grows without bound.
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
}

impl Validate for PcapConfig {
    fn validate(&self) -> Vec<(String, String)> {
        validate_output(&self.path, self.rotation.as_ref())
    }
}

/// The largest packet an interface block announces (the receiver copies at
/// most 256 bytes of a packet; this leaves room for bigger captures).
const SNAPLEN: u32 = 65535;

/// Where a packet was seen: interface name and network namespace inode.
type InterfaceKey = (String, i64);

/// What a section header names as the writer.
const APPLICATION: &str = concat!("flowtel ", env!("CARGO_PKG_VERSION"));

/// The file and the interfaces its current section has described.
struct Output {
    file: RotatingFile,
    interfaces: HashMap<InterfaceKey, u32>,
    /// Whether the file ends in a complete section, whose interfaces are
    /// `interfaces`; after a failed write the next one starts a new section.
    in_section: bool,
}

impl Output {
    /// Writes `packets`: into the current section, or a new one after a
    /// rotation or a failed write.
    fn write(&mut self, packets: &[Packet<'_>]) -> std::io::Result<()> {
        let mut blocks = Vec::new();
        if self.in_section {
            self.encode(packets, &mut blocks);
            if self.file.is_full_for(blocks.len()) {
                self.in_section = false;
                self.file.rotate()?;
            }
        }
        if !self.in_section {
            blocks.clear();
            self.interfaces.clear();
            pcapng::section_header(APPLICATION, &mut blocks);
            self.encode(packets, &mut blocks);
        }
        self.in_section = false;
        self.file.append(&blocks)?;
        self.in_section = true;
        Ok(())
    }

    /// The blocks of `packets` in the current section: an interface block
    /// for each interface it has not described yet, then the packet.
    fn encode(&mut self, packets: &[Packet<'_>], out: &mut Vec<u8>) {
        for packet in packets {
            let next = self.interfaces.len() as u32;
            let interface = *self.interfaces.entry(packet.interface.clone()).or_insert_with(|| {
                let (name, netns) = &packet.interface;
                let description = if *netns != 0 { format!("network namespace {netns}") } else { String::new() };
                pcapng::interface_description(name, &description, SNAPLEN, out);
                next
            });
            let original = pcapng::ip_length(packet.data).unwrap_or(packet.data.len() as u32);
            pcapng::enhanced_packet(interface, packet.time_ns, packet.data, original, &packet.comment, out);
        }
    }
}

/// A record's packet, ready for its block.
struct Packet<'a> {
    interface: InterfaceKey,
    time_ns: u64,
    data: &'a [u8],
    comment: String,
}

impl<'a> Packet<'a> {
    /// The packet a record carries, if any.
    fn of(record: &'a LogRecord) -> Option<Packet<'a>> {
        let attributes = &record.attributes;
        let Some(Value::BytesValue(data)) = find(attributes, attr::NETWORK_PACKET_DATA) else { return None };
        if data.is_empty() {
            return None;
        }
        let (name, netns) = place(attributes);
        let time_ns = if record.time_unix_nano != 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
        Some(Packet { interface: (name, netns), time_ns, data, comment: comment(record) })
    }
}

impl<'a> Packet<'a> {
    /// The packet a journey's span carries, if any: at the place of its
    /// last hook with a device, commented with its hooks in order and its end.
    fn of_journey(span: &'a Span) -> Option<Packet<'a>> {
        let attributes = &span.attributes;
        let Some(Value::BytesValue(data)) = find(attributes, attr::NETWORK_PACKET_DATA) else { return None };
        if data.is_empty() || span.name != event::PACKET_JOURNEY {
            return None;
        }
        let placed =
            span.events.iter().rev().find(|e| find_text(&e.attributes, attr::NETWORK_INTERFACE_NAME).is_some());
        let (name, netns) = placed.map_or((String::new(), 0), |e| place(&e.attributes));
        let hooks: Vec<String> = span
            .events
            .iter()
            .map(|e| match find_text(&e.attributes, attr::NETWORK_INTERFACE_NAME) {
                Some(interface) => format!("{} {interface}", e.name),
                None => e.name.clone(),
            })
            .collect();
        let mut comment = format!("journey {}", hooks.join(" → "));
        if let Some(reason) = find_text(attributes, attr::NETWORK_DROP_REASON) {
            let location = find_text(attributes, attr::NETWORK_DROP_LOCATION).unwrap_or_default();
            let _ = write!(comment, ": drop {reason} at {location}");
        }
        Some(Packet { interface: (name, netns), time_ns: span.end_time_unix_nano, data, comment })
    }
}

/// Where attributes say a packet was: interface name and network
/// namespace inode (empty and 0 when they do not say).
fn place(attributes: &[KeyValue]) -> InterfaceKey {
    let name = find_text(attributes, attr::NETWORK_INTERFACE_NAME).unwrap_or_default().into_owned();
    let netns = match find(attributes, attr::LINUX_NETNS_INODE) {
        Some(Value::IntValue(inode)) => *inode,
        _ => 0,
    };
    (name, netns)
}

/// Why the packet was captured, for Wireshark's packet comments: a drop's
/// reason and where the kernel dropped it (and the nftables rule), and the
/// trace it belongs to.
fn comment(record: &LogRecord) -> String {
    let attributes = &record.attributes;
    let mut comment = if record.event_name == event::PACKET_DROP {
        let reason = find_text(attributes, attr::NETWORK_DROP_REASON).unwrap_or_default();
        let location = find_text(attributes, attr::NETWORK_DROP_LOCATION).unwrap_or_default();
        let mut comment = format!("drop {reason} at {location}");
        // The nftables rule, when the receiver could name it.
        if let Some(table) = find_text(attributes, attr::NETWORK_NETFILTER_TABLE) {
            let family = find_text(attributes, attr::NETWORK_NETFILTER_FAMILY).unwrap_or_default();
            let chain = find_text(attributes, attr::NETWORK_NETFILTER_CHAIN).unwrap_or_default();
            let _ = write!(comment, " by nftables {family} {table} {chain}");
            match find_text(attributes, attr::NETWORK_NETFILTER_RULE_HANDLE) {
                Some(handle) => {
                    let _ = write!(comment, " handle {handle}");
                }
                None => comment.push_str(" policy"),
            }
        }
        comment
    } else {
        record.event_name.clone()
    };
    if record.trace_id.len() == 16 {
        comment.push_str(" trace_id=");
        for byte in &record.trace_id {
            let _ = write!(comment, "{byte:02x}");
        }
    }
    comment
}

/// The `pcap` exporter.
pub struct PcapExporter {
    output: Mutex<Output>,
}

impl PcapExporter {
    /// Opens (appending to) the configured file and starts a section in it.
    pub fn new(config: &PcapConfig) -> Result<Self, BuildError> {
        let file = RotatingFile::open(&config.path, config.rotation.as_ref())?;
        let mut output = Output { file, interfaces: HashMap::new(), in_section: false };
        output.write(&[]).map_err(|source| BuildError::OpenFile { path: config.path.clone(), source })?;
        Ok(PcapExporter { output: Mutex::new(output) })
    }
}

#[async_trait]
impl Exporter for PcapExporter {
    async fn export(&self, payload: &Payload) -> Result<ExportOutcome, ExportError> {
        let packets: Vec<Packet<'_>> = match payload {
            Payload::Logs(resources) => resources
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .filter_map(Packet::of)
                .collect(),
            Payload::Traces(resources) => resources
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
                .filter_map(Packet::of_journey)
                .collect(),
            _ => return Ok(ExportOutcome::default()),
        };
        if packets.is_empty() {
            return Ok(ExportOutcome::default());
        }
        let mut output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        output
            .write(&packets)
            .map_err(|err| ExportError::permanent(format!("cannot write {}: {err}", output.file.path().display())))?;
        Ok(ExportOutcome::default())
    }

    async fn shutdown(&self) {
        self.output.lock().unwrap_or_else(PoisonError::into_inner).file.sync();
    }
}

#[cfg(test)]
mod tests;
