//! Which local process owns a socket, from /proc: every network namespace's
//! socket tables (`/proc/<pid>/net/{tcp,tcp6,udp,udp6}`, read through one
//! process inside it), its local addresses (`fib_trie`, `if_inet6`), and
//! the socket inodes behind each process's file descriptors.

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::Arc,
};

use flowtel_core::linux::container_id;

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
}

impl Transport {
    /// From `network.transport`.
    pub fn parse(name: &str) -> Option<Transport> {
        match name {
            "tcp" => Some(Transport::Tcp),
            "udp" => Some(Transport::Udp),
            _ => None,
        }
    }
}

/// The process that owns a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    /// Its pid (the first process found holding the socket).
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub command: String,
    /// The container id in its cgroup path, if it runs in one.
    pub container_id: Option<String>,
    /// The inode of its network namespace.
    pub netns: u64,
}

/// One row of a socket table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketRow {
    /// The local end.
    pub local: SocketAddr,
    /// The remote end (port 0: not connected).
    pub remote: SocketAddr,
    /// The socket's inode.
    pub inode: u64,
}

/// Sockets by their ends, each with its owner.
#[derive(Debug, Default)]
pub struct SocketIndex {
    connected: HashMap<(Transport, SocketAddr, SocketAddr), Arc<SocketOwner>>,
    bound: HashMap<(Transport, SocketAddr), Arc<SocketOwner>>,
    wildcard: HashMap<(Transport, u64, u16), Arc<SocketOwner>>,
    namespaces_of: HashMap<IpAddr, Vec<u64>>,
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

impl SocketIndex {
    /// Adds a namespace's socket table rows whose inodes have an owner.
    pub fn add(
        &mut self,
        transport: Transport,
        netns: u64,
        rows: &[SocketRow],
        owners: &HashMap<u64, Arc<SocketOwner>>,
    ) {
        for row in rows {
            let Some(owner) = owners.get(&row.inode) else { continue };
            let local = canonical(row.local);
            if row.remote.port() != 0 {
                self.connected.insert((transport, local, canonical(row.remote)), owner.clone());
            } else if local.ip().is_unspecified() {
                self.wildcard.insert((transport, netns, local.port()), owner.clone());
            } else {
                self.bound.insert((transport, local), owner.clone());
            }
        }
    }

    /// Records that `address` is local to namespace `netns`.
    pub fn add_address(&mut self, netns: u64, address: IpAddr) {
        let namespaces = self.namespaces_of.entry(address.to_canonical()).or_default();
        if !namespaces.contains(&netns) {
            namespaces.push(netns);
        }
    }

    /// The owner of the socket at `local` talking to `remote`: a connected
    /// socket first, then one bound to the address, then a wildcard one in
    /// a namespace that has the address.
    pub fn owner(&self, transport: Transport, local: SocketAddr, remote: SocketAddr) -> Option<&SocketOwner> {
        let (local, remote) = (canonical(local), canonical(remote));
        if let Some(owner) = self.connected.get(&(transport, local, remote)) {
            return Some(owner);
        }
        if let Some(owner) = self.bound.get(&(transport, local)) {
            return Some(owner);
        }
        self.namespaces_of
            .get(&local.ip())?
            .iter()
            .find_map(|netns| self.wildcard.get(&(transport, *netns, local.port())))
            .map(Arc::as_ref)
    }

    /// Whether `address` belongs to one of the host's namespaces.
    pub fn is_local(&self, address: IpAddr) -> bool {
        self.namespaces_of.contains_key(&address.to_canonical())
    }

    /// How many sockets are indexed.
    pub fn len(&self) -> usize {
        self.connected.len() + self.bound.len() + self.wildcard.len()
    }

    /// Whether no socket is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads every process and namespace under `proc` (`/proc`).
    pub fn scan(proc: &Path) -> SocketIndex {
        let mut index = SocketIndex::default();
        let mut owners: HashMap<u64, Arc<SocketOwner>> = HashMap::new();
        // One process per namespace, whose /proc/<pid>/net shows the namespace.
        let mut namespaces: HashMap<u64, u32> = HashMap::new();
        let Ok(entries) = fs::read_dir(proc) else { return index };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let dir = entry.path();
            let Some(netns) =
                fs::read_link(dir.join("ns/net")).ok().and_then(|l| namespace_inode(&l.to_string_lossy()))
            else {
                continue;
            };
            namespaces.entry(netns).or_insert(pid);
            let Ok(fds) = fs::read_dir(dir.join("fd")) else { continue };
            let mut owner: Option<Arc<SocketOwner>> = None;
            for fd in fds.flatten() {
                let Some(inode) = fs::read_link(fd.path()).ok().and_then(|l| socket_inode(&l.to_string_lossy())) else {
                    continue;
                };
                let owner = owner
                    .get_or_insert_with(|| {
                        let command = fs::read_to_string(dir.join("comm")).unwrap_or_default().trim_end().to_owned();
                        let cgroup = fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
                        let container_id = cgroup_v2_path(&cgroup).and_then(container_id).map(str::to_owned);
                        Arc::new(SocketOwner { pid, command, container_id, netns })
                    })
                    .clone();
                owners.entry(inode).or_insert(owner);
            }
        }
        for (netns, pid) in namespaces {
            let net = proc.join(pid.to_string()).join("net");
            for (file, transport) in
                [("tcp", Transport::Tcp), ("tcp6", Transport::Tcp), ("udp", Transport::Udp), ("udp6", Transport::Udp)]
            {
                let rows = parse_socket_table(&fs::read_to_string(net.join(file)).unwrap_or_default());
                index.add(transport, netns, &rows, &owners);
            }
            for address in parse_fib_trie_local(&fs::read_to_string(net.join("fib_trie")).unwrap_or_default()) {
                index.add_address(netns, IpAddr::V4(address));
            }
            for address in parse_if_inet6(&fs::read_to_string(net.join("if_inet6")).unwrap_or_default()) {
                index.add_address(netns, IpAddr::V6(address));
            }
        }
        index
    }
}

/// `net:[4026531840]` → 4026531840.
pub fn namespace_inode(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The cgroup v2 path in a `/proc/<pid>/cgroup` file (its `0::` line).
pub fn cgroup_v2_path(file: &str) -> Option<&str> {
    file.lines().find_map(|line| line.strip_prefix("0::"))
}

/// Rows of `/proc/net/{tcp,tcp6,udp,udp6}`: local and remote ends and inode.
/// Addresses are hex words in the kernel's byte order (little-endian here).
pub fn parse_socket_table(table: &str) -> Vec<SocketRow> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = parse_end(fields.get(1)?)?;
            let remote = parse_end(fields.get(2)?)?;
            let inode = fields.get(9)?.parse().ok()?;
            Some(SocketRow { local, remote, inode })
        })
        .collect()
}

/// `0100007F:1F90` → 127.0.0.1:8080.
fn parse_end(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |chunk: &str| u32::from_str_radix(chunk, 16).ok().map(|w| w.to_ne_bytes());
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(address)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (index, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(address.get(index * 8..index * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The namespace's own IPv4 addresses: the `/32 host LOCAL` leaves of
/// `/proc/net/fib_trie`.
pub fn parse_fib_trie_local(trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last_leaf: Option<Ipv4Addr> = None;
    for line in trie.lines() {
        let trimmed = line.trim_start_matches([' ', '|', '+', '-', '`']);
        if line.contains("|--") || line.trim_start().starts_with("+--") {
            last_leaf = trimmed.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if trimmed.trim() == "/32 host LOCAL"
            && let Some(address) = last_leaf
            && !out.contains(&address)
        {
            out.push(address);
        }
    }
    out
}

/// The namespace's IPv6 addresses, from `/proc/net/if_inet6`.
pub fn parse_if_inet6(table: &str) -> Vec<Ipv6Addr> {
    table
        .lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)
        })
        .collect()
}
