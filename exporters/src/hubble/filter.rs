//! Hubble's `FlowFilter`s, combined as Hubble combines them: inside one
//! filter every field that is set must match (AND) and a field matches when
//! any of its entries does (OR); a flow passes when the whitelist is empty
//! or any whitelist filter matches, and no blacklist filter matches.
//!
//! Filters are checked once, when a request arrives: a bad IP, CIDR, port,
//! label selector or node pattern is an `INVALID_ARGUMENT` naming it. Every
//! check runs in time linear in the flow's fields, and a request's filters
//! are bounded in number, entries and pattern size, so no request can make
//! matching slow, whatever it sends.

use std::net::IpAddr;

use ipnet::IpNet;

use super::proto::flow::{
    Endpoint, EventTypeFilter, Flow, FlowFilter, IpVersion, TcpFlags, TrafficDirection, Verdict, Workload,
    layer4::Protocol,
};

/// Filters a request may hold in its whitelist and blacklist together.
pub const MAX_FILTERS: usize = 64;
/// Entries a request's filters may hold in all their fields together.
pub const MAX_ENTRIES: usize = 1024;
/// Bytes of one node-name pattern or label selector.
pub const MAX_PATTERN_BYTES: usize = 256;
/// Compiled size of a request's node-name patterns, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A `GetFlows` filter flowtel refuses, saying where and why.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// More filters than [`MAX_FILTERS`].
    #[error("{0} filters; at most {MAX_FILTERS} are allowed")]
    TooManyFilters(usize),
    /// More entries in all filters together than [`MAX_ENTRIES`].
    #[error("the filters hold {0} entries; at most {MAX_ENTRIES} are allowed")]
    TooManyEntries(usize),
    /// One filter's entry.
    #[error("{list}[{index}].{field}: {why}")]
    Entry {
        /// `whitelist` or `blacklist`.
        list: &'static str,
        /// The filter's index in it.
        index: usize,
        /// The filter's field (`source_ip`, …).
        field: &'static str,
        /// What is wrong with the entry.
        why: EntryError,
    },
}

/// What is wrong with a filter entry.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// An IP entry with a `/` that is not a CIDR.
    #[error("`{0}` is not a CIDR")]
    NotCidr(String),
    /// An IP entry that is not an address.
    #[error("`{0}` is not an IP address")]
    NotIp(String),
    /// A port entry that is not a port number.
    #[error("`{0}` is not a port")]
    NotPort(String),
    /// A protocol Hubble does not filter on.
    #[error("`{0}` is not a protocol Hubble filters on")]
    NotProtocol(String),
    /// A pattern or selector longer than [`MAX_PATTERN_BYTES`].
    #[error("a {what} is {bytes} bytes, at most {MAX_PATTERN_BYTES} are allowed")]
    TooLong {
        /// `pattern` or `label selector`.
        what: &'static str,
        /// Its length.
        bytes: usize,
    },
    /// A label selector that does not parse.
    #[error("label selector `{selector}`: {why}")]
    Selector {
        /// The selector.
        selector: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The node name patterns do not compile within the size limit.
    #[error("{0}")]
    NodePatterns(regex::Error),
}

/// An entry error of filter field `field`.
type FieldResult<T> = Result<T, (&'static str, EntryError)>;

/// An IP filter entry: one address or a CIDR.
#[derive(Clone, Debug)]
enum IpMatch {
    Exact(IpAddr),
    Net(IpNet),
}

impl IpMatch {
    fn parse(text: &str) -> Result<Self, EntryError> {
        if text.contains('/') {
            text.parse().map(IpMatch::Net).map_err(|_| EntryError::NotCidr(text.to_owned()))
        } else {
            text.parse().map(IpMatch::Exact).map_err(|_| EntryError::NotIp(text.to_owned()))
        }
    }

    fn matches(&self, address: &str) -> bool {
        let Ok(address) = address.parse::<IpAddr>() else { return false };
        match self {
            IpMatch::Exact(ip) => *ip == address,
            IpMatch::Net(net) => net.contains(&address),
        }
    }
}

/// `namespace/name-prefix`, `namespace/` or `name-prefix` (any namespace).
#[derive(Clone, Debug)]
struct NameMatch {
    namespace: Option<String>,
    prefix: String,
}

impl NameMatch {
    fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((namespace, prefix)) => NameMatch { namespace: Some(namespace.to_owned()), prefix: prefix.to_owned() },
            None => NameMatch { namespace: None, prefix: text.to_owned() },
        }
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        if let Some(wanted) = &self.namespace
            && wanted != namespace
        {
            return false;
        }
        if self.prefix.is_empty() {
            self.namespace.is_some() || !name.is_empty()
        } else {
            name.starts_with(&self.prefix)
        }
    }
}

/// One requirement of a Kubernetes label selector.
#[derive(Clone, Debug)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A label selector (`app=web,tier!=db,env in (prod,staging),!legacy`), all
/// requirements ANDed. Labels compare without their source prefix (`k8s:`).
#[derive(Clone, Debug)]
struct Selector(Vec<Requirement>);

impl Selector {
    fn parse(text: &str) -> Result<Self, EntryError> {
        if text.len() > MAX_PATTERN_BYTES {
            return Err(EntryError::TooLong { what: "label selector", bytes: text.len() });
        }
        let bad = |why: &'static str| EntryError::Selector { selector: text.to_owned(), why };
        let mut requirements = Vec::new();
        // Split on commas outside parentheses.
        let (mut depth, mut start) = (0i32, 0);
        let mut parts = Vec::new();
        for (index, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..index]);
                    start = index + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let key = |k: &str| -> Result<String, EntryError> {
            let k = k.trim();
            let k = k.strip_prefix("k8s:").unwrap_or(k);
            if k.is_empty() || k.contains(char::is_whitespace) {
                Err(bad("empty or spaced key"))
            } else {
                Ok(k.to_owned())
            }
        };
        let set = |values: &str| -> Result<Vec<String>, EntryError> {
            let inner = values
                .trim()
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| bad("expected (a,b)"))?;
            Ok(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
        };
        for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(key(k)?, set(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(key(k)?, set(v)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(key(k)?)
            } else {
                Requirement::Exists(key(part)?)
            };
            requirements.push(requirement);
        }
        if requirements.is_empty() {
            return Err(bad("empty"));
        }
        Ok(Selector(requirements))
    }

    fn matches(&self, labels: &[String]) -> bool {
        let value = |key: &str| {
            labels.iter().find_map(|label| {
                let label = label.split_once(':').map_or(label.as_str(), |(_, rest)| rest);
                let (k, v) = label.split_once('=').unwrap_or((label, ""));
                (k == key).then_some(v)
            })
        };
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => value(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => value(k) != Some(v.as_str()),
            Requirement::In(k, vs) => value(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !value(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => value(k).is_some(),
            Requirement::NotExists(k) => value(k).is_none(),
        })
    }
}

/// One checked `FlowFilter`.
#[derive(Clone, Debug)]
pub struct Filter {
    raw: FlowFilter,
    source_ip: Vec<IpMatch>,
    destination_ip: Vec<IpMatch>,
    source_pod: Vec<NameMatch>,
    destination_pod: Vec<NameMatch>,
    source_service: Vec<NameMatch>,
    destination_service: Vec<NameMatch>,
    source_label: Vec<Selector>,
    destination_label: Vec<Selector>,
    source_port: Vec<u16>,
    destination_port: Vec<u16>,
    protocol: Vec<String>,
    node_name: Option<NodePatterns>,
}

fn ports(field: &'static str, entries: &[String]) -> FieldResult<Vec<u16>> {
    entries.iter().map(|p| p.trim().parse().map_err(|_| (field, EntryError::NotPort(p.clone())))).collect()
}

fn ips(field: &'static str, entries: &[String]) -> FieldResult<Vec<IpMatch>> {
    entries.iter().map(|e| IpMatch::parse(e.trim()).map_err(|why| (field, why))).collect()
}

fn selectors(field: &'static str, entries: &[String]) -> FieldResult<Vec<Selector>> {
    entries.iter().map(|e| Selector::parse(e).map_err(|why| (field, why))).collect()
}

impl Filter {
    /// Checks a filter's entries; the error names the field and the entry.
    fn new(raw: FlowFilter) -> FieldResult<Self> {
        let names = |entries: &[String]| entries.iter().map(|e| NameMatch::parse(e)).collect();
        let protocol = raw.protocol.iter().map(|p| p.trim().to_ascii_lowercase()).collect::<Vec<_>>();
        for p in &protocol {
            if !matches!(p.as_str(), "tcp" | "udp" | "icmp" | "icmpv4" | "icmpv6" | "sctp" | "http" | "dns" | "kafka") {
                return Err(("protocol", EntryError::NotProtocol(p.clone())));
            }
        }
        Ok(Filter {
            source_ip: ips("source_ip", &raw.source_ip)?,
            destination_ip: ips("destination_ip", &raw.destination_ip)?,
            source_pod: names(&raw.source_pod),
            destination_pod: names(&raw.destination_pod),
            source_service: names(&raw.source_service),
            destination_service: names(&raw.destination_service),
            source_label: selectors("source_label", &raw.source_label)?,
            destination_label: selectors("destination_label", &raw.destination_label)?,
            source_port: ports("source_port", &raw.source_port)?,
            destination_port: ports("destination_port", &raw.destination_port)?,
            protocol,
            node_name: NodePatterns::new(&raw.node_name).map_err(|why| ("node_name", why))?,
            raw,
        })
    }

    /// Whether every field that is set matches the flow.
    pub fn matches(&self, flow: &Flow) -> bool {
        let raw = &self.raw;
        let ip = flow.ip.as_ref();
        let (source_ip, destination_ip) = ip.map_or(("", ""), |ip| (ip.source.as_str(), ip.destination.as_str()));
        let default = Endpoint::default();
        let source = flow.source.as_ref().unwrap_or(&default);
        let destination = flow.destination.as_ref().unwrap_or(&default);
        let (source_port, destination_port, flags) = ports_and_flags(flow);
        let any = |set: bool, matched: &dyn Fn() -> bool| !set || matched();
        any(!self.source_ip.is_empty(), &|| self.source_ip.iter().any(|m| m.matches(source_ip)))
            && any(!self.destination_ip.is_empty(), &|| self.destination_ip.iter().any(|m| m.matches(destination_ip)))
            && any(!self.source_pod.is_empty(), &|| {
                self.source_pod.iter().any(|m| m.matches(&source.namespace, &source.pod_name))
            })
            && any(!self.destination_pod.is_empty(), &|| {
                self.destination_pod.iter().any(|m| m.matches(&destination.namespace, &destination.pod_name))
            })
            && any(!self.source_service.is_empty(), &|| {
                flow.source_service.as_ref().is_some_and(|s| self.source_service.iter().any(|m| m.matches(&s.namespace, &s.name)))
            })
            && any(!self.destination_service.is_empty(), &|| {
                flow.destination_service
                    .as_ref()
                    .is_some_and(|s| self.destination_service.iter().any(|m| m.matches(&s.namespace, &s.name)))
            })
            && any(!self.source_label.is_empty(), &|| self.source_label.iter().any(|s| s.matches(&source.labels)))
            && any(!self.destination_label.is_empty(), &|| {
                self.destination_label.iter().any(|s| s.matches(&destination.labels))
            })
            && any(!raw.source_workload.is_empty(), &|| workload_matches(&raw.source_workload, source))
            && any(!raw.destination_workload.is_empty(), &|| workload_matches(&raw.destination_workload, destination))
            && any(!self.source_port.is_empty(), &|| source_port.is_some_and(|p| self.source_port.contains(&p)))
            && any(!self.destination_port.is_empty(), &|| {
                destination_port.is_some_and(|p| self.destination_port.contains(&p))
            })
            && any(!self.protocol.is_empty(), &|| self.protocol.iter().any(|p| protocol_matches(p, flow)))
            && any(!raw.verdict.is_empty(), &|| raw.verdict.contains(&flow.verdict))
            && any(!raw.drop_reason_desc.is_empty(), &|| {
                flow.verdict == Verdict::Dropped as i32 && raw.drop_reason_desc.contains(&flow.drop_reason_desc)
            })
            && any(!raw.event_type.is_empty(), &|| raw.event_type.iter().any(|e| event_type_matches(e, flow)))
            // As Cilium: a dropped packet that says nothing is no reply.
            && any(!raw.reply.is_empty(), &|| {
                let dropped = flow.verdict == Verdict::Dropped as i32;
                flow.is_reply.or(dropped.then_some(false)).is_some_and(|reply| raw.reply.contains(&reply))
            })
            && any(!raw.source_identity.is_empty(), &|| raw.source_identity.contains(&source.identity))
            && any(!raw.destination_identity.is_empty(), &|| raw.destination_identity.contains(&destination.identity))
            && any(!raw.tcp_flags.is_empty(), &|| flags.is_some_and(|f| raw.tcp_flags.iter().any(|w| flags_contain(f, w))))
            && self.node_name.as_ref().is_none_or(|patterns| patterns.matches(&flow.node_name))
            && any(!raw.ip_version.is_empty(), &|| {
                ip.is_some_and(|ip| raw.ip_version.contains(&ip.ip_version) && ip.ip_version != IpVersion::IpNotUsed as i32)
            })
            && any(!raw.traffic_direction.is_empty(), &|| {
                flow.traffic_direction != TrafficDirection::Unknown as i32
                    && raw.traffic_direction.contains(&flow.traffic_direction)
            })
            && any(!raw.trace_id.is_empty(), &|| {
                let id = flow.trace_context.as_ref().and_then(|t| t.parent.as_ref()).map(|p| p.trace_id.as_str());
                id.is_some_and(|id| raw.trace_id.iter().any(|t| t == id))
            })
            && any(!raw.uuid.is_empty(), &|| raw.uuid.contains(&flow.uuid))
            // flowtel knows no FQDNs, L7 or DNS: filters on them match nothing.
            && raw.source_fqdn.is_empty()
            && raw.destination_fqdn.is_empty()
            && raw.http_status_code.is_empty()
            && raw.http_method.is_empty()
            && raw.http_path.is_empty()
            && raw.dns_query.is_empty()
    }
}

fn ports_and_flags(flow: &Flow) -> (Option<u16>, Option<u16>, Option<&TcpFlags>) {
    match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
        Some(Protocol::Tcp(tcp)) => {
            (Some(tcp.source_port as u16), Some(tcp.destination_port as u16), tcp.flags.as_ref())
        }
        Some(Protocol::Udp(udp)) => (Some(udp.source_port as u16), Some(udp.destination_port as u16), None),
        Some(Protocol::Sctp(sctp)) => (Some(sctp.source_port as u16), Some(sctp.destination_port as u16), None),
        _ => (None, None, None),
    }
}

fn protocol_matches(protocol: &str, flow: &Flow) -> bool {
    matches!(
        (protocol, flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref())),
        ("tcp", Some(Protocol::Tcp(_)))
            | ("udp", Some(Protocol::Udp(_)))
            | ("sctp", Some(Protocol::Sctp(_)))
            | ("icmp", Some(Protocol::IcmPv4(_) | Protocol::IcmPv6(_)))
            | ("icmpv4", Some(Protocol::IcmPv4(_)))
            | ("icmpv6", Some(Protocol::IcmPv6(_)))
    )
}

/// Every flag set in `wanted` is set in `flags`.
fn flags_contain(flags: &TcpFlags, wanted: &TcpFlags) -> bool {
    let bits = |f: &TcpFlags| [f.fin, f.syn, f.rst, f.psh, f.ack, f.urg, f.ece, f.cwr, f.ns];
    bits(wanted).iter().zip(bits(flags)).all(|(want, have)| !want || have)
}

fn event_type_matches(filter: &EventTypeFilter, flow: &Flow) -> bool {
    flow.event_type
        .as_ref()
        .is_some_and(|e| e.r#type == filter.r#type && (!filter.match_sub_type || e.sub_type == filter.sub_type))
}

fn workload_matches(wanted: &[Workload], endpoint: &Endpoint) -> bool {
    wanted.iter().any(|w| {
        endpoint
            .workloads
            .iter()
            .any(|have| (w.name.is_empty() || w.name == have.name) && (w.kind.is_empty() || w.kind == have.kind))
    })
}

/// The node names of one filter: `node`, `cluster/node` or `cluster/`
/// patterns, as Hubble writes them. `*` matches within one name component
/// (no `.` or `/`), `**` across components (no `/`); every other character
/// matches itself. Compiled into one regular expression, so matching takes
/// time linear in the node name whatever a client sends. flowtel's nodes are
/// in the cluster `default` unless they name one.
#[derive(Clone, Debug)]
struct NodePatterns(regex::Regex);

impl NodePatterns {
    fn new(patterns: &[String]) -> Result<Option<Self>, EntryError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut alternatives = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if pattern.len() > MAX_PATTERN_BYTES {
                return Err(EntryError::TooLong { what: "pattern", bytes: pattern.len() });
            }
            let (cluster, name) = match pattern.split_once('/') {
                Some((cluster, name)) => {
                    (glob_regex(cluster), if name.is_empty() { "[^/]*".to_owned() } else { glob_regex(name) })
                }
                // No cluster: the node in any cluster, or without one.
                None => ("[^/]*".to_owned(), glob_regex(pattern)),
            };
            alternatives.push(format!("(?:{cluster}/{name})"));
        }
        let regex = regex::RegexBuilder::new(&format!(r"\A(?:{})\z", alternatives.join("|")))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(EntryError::NodePatterns)?;
        Ok(Some(NodePatterns(regex)))
    }

    fn matches(&self, node: &str) -> bool {
        if node.contains('/') { self.0.is_match(node) } else { self.0.is_match(&format!("default/{node}")) }
    }
}

/// A node-name glob as a regular expression over one side of `cluster/node`.
fn glob_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() * 2);
    let mut rest = glob;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("**") {
            out.push_str("[^/]*");
            rest = after;
        } else if let Some(after) = rest.strip_prefix('*') {
            out.push_str("[^./]*");
            rest = after;
        } else {
            let literal_end = rest.find('*').unwrap_or(rest.len());
            out.push_str(&regex::escape(&rest[..literal_end]));
            rest = &rest[literal_end..];
        }
    }
    out
}

/// How many entries a filter holds, in all its fields.
fn entry_count(filter: &FlowFilter) -> usize {
    let strings = [
        &filter.source_ip,
        &filter.destination_ip,
        &filter.source_pod,
        &filter.destination_pod,
        &filter.source_fqdn,
        &filter.destination_fqdn,
        &filter.source_service,
        &filter.destination_service,
        &filter.source_label,
        &filter.destination_label,
        &filter.source_port,
        &filter.destination_port,
        &filter.protocol,
        &filter.http_status_code,
        &filter.http_method,
        &filter.http_path,
        &filter.dns_query,
        &filter.node_name,
        &filter.trace_id,
        &filter.uuid,
    ];
    strings.iter().map(|list| list.len()).sum::<usize>()
        + filter.verdict.len()
        + filter.event_type.len()
        + filter.reply.len()
        + filter.source_identity.len()
        + filter.destination_identity.len()
        + filter.tcp_flags.len()
        + filter.ip_version.len()
        + filter.source_workload.len()
        + filter.destination_workload.len()
        + filter.traffic_direction.len()
        + filter.drop_reason_desc.len()
}

/// The checked whitelist and blacklist of a request.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    whitelist: Vec<Filter>,
    blacklist: Vec<Filter>,
}

impl Filters {
    /// Checks both lists; the error names the list, the filter's index and the field.
    pub fn new(whitelist: Vec<FlowFilter>, blacklist: Vec<FlowFilter>) -> Result<Self, FilterError> {
        let filters = whitelist.len() + blacklist.len();
        if filters > MAX_FILTERS {
            return Err(FilterError::TooManyFilters(filters));
        }
        let entries: usize = whitelist.iter().chain(&blacklist).map(entry_count).sum();
        if entries > MAX_ENTRIES {
            return Err(FilterError::TooManyEntries(entries));
        }
        let check = |list: &'static str, filters: Vec<FlowFilter>| -> Result<Vec<Filter>, FilterError> {
            filters
                .into_iter()
                .enumerate()
                .map(|(index, filter)| {
                    Filter::new(filter).map_err(|(field, why)| FilterError::Entry { list, index, field, why })
                })
                .collect()
        };
        Ok(Filters { whitelist: check("whitelist", whitelist)?, blacklist: check("blacklist", blacklist)? })
    }

    /// Whether a flow passes: whitelisted (or no whitelist) and not blacklisted.
    pub fn allow(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }
}

#[cfg(test)]
mod tests;
