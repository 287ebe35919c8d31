//! What flowtel reads from the kernel's BTF at startup: struct field
//! offsets for the drop and TCP programs, and the names of drop reasons,
//! TCP states and reset reasons. Nothing here is hard-coded per kernel.

use std::{collections::BTreeMap, path::Path};

use btf_rs::{Btf, BtfType, Type};
use flowtel_ebpf_common::{KernelLayout, UNKNOWN};

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A BTF lookup that failed, naming what was looked for.
#[derive(Debug, thiserror::Error)]
#[error("BTF: {0}")]
pub struct BtfError(String);

/// Reads a BTF file (`/sys/kernel/btf/vmlinux`, or a raw BTF blob).
pub fn load(path: &Path) -> Result<Btf, BtfError> {
    Btf::from_file(path).map_err(|e| BtfError(format!("cannot read {}: {e}", path.display())))
}

/// Reads a raw BTF blob from memory.
pub fn parse(bytes: &[u8]) -> Result<Btf, BtfError> {
    Btf::from_bytes(bytes).map_err(|e| BtfError(format!("not BTF: {e}")))
}

fn name_of(btf: &Btf, item: &dyn BtfType) -> String {
    btf.resolve_name(item).unwrap_or_default()
}

/// Follows typedefs and qualifiers to the type underneath.
fn resolve(btf: &Btf, mut ty: Type) -> Type {
    for _ in 0..16 {
        let next = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t),
            Type::Const(t) => btf.resolve_chained_type(t),
            Type::Volatile(t) => btf.resolve_chained_type(t),
            Type::Restrict(t) => btf.resolve_chained_type(t),
            Type::TypeTag(t) => btf.resolve_chained_type(t),
            _ => return ty,
        };
        match next {
            Ok(next) => ty = next,
            Err(_) => return ty,
        }
    }
    ty
}

/// The struct (or union) named `name`, ignoring forward declarations.
fn named_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, BtfError> {
    let types = btf.resolve_types_by_name(name).map_err(|_| BtfError(format!("no type `{name}`")))?;
    types
        .into_iter()
        .find_map(|ty| match ty {
            Type::Struct(s) | Type::Union(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| BtfError(format!("no struct `{name}`")))
}

/// A member found in a struct.
struct Found {
    /// Bits from the start of the outermost struct searched.
    bit_offset: u32,
    /// The member's type.
    ty: Type,
    /// Whether it is a bit field.
    bit_field: bool,
}

/// Member `name` of `s`, looking through anonymous struct and union members.
fn find_member(btf: &Btf, s: &btf_rs::Struct, name: &str) -> Option<Found> {
    for member in &s.members {
        let member_name = name_of(btf, member);
        let Ok(ty) = btf.resolve_chained_type(member) else { continue };
        if member_name == name {
            let bit_field = member.bitfield_size().is_some_and(|size| size != 0);
            return Some(Found { bit_offset: member.bit_offset(), ty, bit_field });
        }
        if member_name.is_empty()
            && let Type::Struct(inner) | Type::Union(inner) = resolve(btf, ty)
            && let Some(found) = find_member(btf, &inner, name)
        {
            return Some(Found { bit_offset: member.bit_offset() + found.bit_offset, ..found });
        }
    }
    None
}

/// Byte offset of a dotted member path (`nd_net.net`) in struct `root`.
pub fn member_offset(btf: &Btf, root: &str, path: &str) -> Result<u16, BtfError> {
    let missing = || BtfError(format!("no member `{path}` in struct `{root}`"));
    let mut current = named_struct(btf, root)?;
    let mut bits = 0u32;
    let parts: Vec<&str> = path.split('.').collect();
    for (index, part) in parts.iter().enumerate() {
        let found = find_member(btf, &current, part).ok_or_else(missing)?;
        bits += found.bit_offset;
        if found.bit_field {
            return Err(BtfError(format!("`{root}.{path}` is a bit field")));
        }
        if index + 1 < parts.len() {
            current = match resolve(btf, found.ty) {
                Type::Struct(s) | Type::Union(s) => s,
                _ => return Err(BtfError(format!("`{part}` in `{root}.{path}` is not a struct"))),
            };
        }
    }
    if !bits.is_multiple_of(8) {
        return Err(BtfError(format!("`{root}.{path}` is a bit field")));
    }
    u16::try_from(bits / 8).ok().filter(|offset| *offset != UNKNOWN).ok_or_else(missing)
}

/// The members of enum `name` (`enum skb_drop_reason`), or of the anonymous
/// enum that has a member named `name` (`TCP_ESTABLISHED`), as name → value.
pub fn enum_values(btf: &Btf, name: &str) -> Result<BTreeMap<String, u64>, BtfError> {
    let values = |ty: &Type| -> Option<BTreeMap<String, u64>> {
        match ty {
            Type::Enum(e) => Some(e.members.iter().map(|m| (name_of(btf, m), u64::from(m.val()))).collect()),
            Type::Enum64(e) => Some(e.members.iter().map(|m| (name_of(btf, m), m.val())).collect()),
            _ => None,
        }
    };
    if let Ok(types) = btf.resolve_types_by_name(name)
        && let Some(found) = types.iter().find_map(values)
    {
        return Ok(found);
    }
    // Anonymous enums (the TCP states, IPPROTO_*) are found by a member's name.
    let anonymous = btf.resolve_types_by_name("").unwrap_or_default();
    anonymous
        .iter()
        .filter_map(values)
        .find(|members| members.contains_key(name))
        .ok_or_else(|| BtfError(format!("no enum `{name}`")))
}

/// Value → name of an enum's members, with `prefix` removed from the names.
pub fn names_by_value(members: &BTreeMap<String, u64>, prefix: &str) -> BTreeMap<u64, String> {
    members.iter().map(|(name, value)| (*value, name.strip_prefix(prefix).unwrap_or(name).to_owned())).collect()
}

/// The struct offsets the programs need; what this kernel lacks stays
/// `UNKNOWN` and is listed in the second value.
pub fn struct_layout(btf: &Btf) -> (KernelLayout, Vec<String>) {
    let mut layout = KernelLayout::unknown();
    let mut missing = Vec::new();
    let fields: [(&mut u16, &str, &str); 24] = [
        (&mut layout.skb_head, "sk_buff", "head"),
        (&mut layout.skb_network_header, "sk_buff", "network_header"),
        (&mut layout.skb_transport_header, "sk_buff", "transport_header"),
        (&mut layout.skb_dev, "sk_buff", "dev"),
        (&mut layout.skb_len, "sk_buff", "len"),
        (&mut layout.skb_data, "sk_buff", "data"),
        (&mut layout.skb_tail, "sk_buff", "tail"),
        (&mut layout.dev_ifindex, "net_device", "ifindex"),
        (&mut layout.dev_name, "net_device", "name"),
        (&mut layout.dev_net, "net_device", "nd_net.net"),
        (&mut layout.net_inum, "net", "ns.inum"),
        (&mut layout.sock_net, "sock", "__sk_common.skc_net.net"),
        (&mut layout.tcp_srtt_us, "tcp_sock", "srtt_us"),
        (&mut layout.tcp_bytes_acked, "tcp_sock", "bytes_acked"),
        (&mut layout.tcp_bytes_received, "tcp_sock", "bytes_received"),
        (&mut layout.skb_cb, "sk_buff", "cb"),
        (&mut layout.tcp_cb_gso_segs, "tcp_skb_cb", "tcp_gso_segs"),
        (&mut layout.sock_family, "sock", "__sk_common.skc_family"),
        (&mut layout.sock_daddr, "sock", "__sk_common.skc_daddr"),
        (&mut layout.sock_rcv_saddr, "sock", "__sk_common.skc_rcv_saddr"),
        (&mut layout.sock_dport, "sock", "__sk_common.skc_dport"),
        (&mut layout.inet_sport, "inet_sock", "inet_sport"),
        (&mut layout.sock_v6_daddr, "sock", "__sk_common.skc_v6_daddr"),
        (&mut layout.sock_v6_rcv_saddr, "sock", "__sk_common.skc_v6_rcv_saddr"),
    ];
    for (slot, root, path) in fields {
        match member_offset(btf, root, path) {
            Ok(offset) => *slot = offset,
            Err(err) => missing.push(err.to_string()),
        }
    }
    (layout, missing)
}

/// The kernel's enums flowtel names values with.
#[derive(Clone, Debug, Default)]
pub struct KernelEnums {
    /// `enum skb_drop_reason`, value → name without `SKB_DROP_REASON_`
    /// (`NO_SOCKET`; `SKB_CONSUMED` is `CONSUMED`). Empty before 5.17.
    pub drop_reasons: BTreeMap<u64, String>,
    /// TCP states, value → name without `TCP_` (`ESTABLISHED`).
    pub tcp_states: BTreeMap<u64, String>,
    /// `enum sk_rst_reason`, value → name without `SK_RST_REASON_` (6.10+).
    pub reset_reasons: BTreeMap<u64, String>,
    /// `IPPROTO_TCP`.
    pub ipproto_tcp: Option<u64>,
}

impl KernelEnums {
    /// Reads the enums; those the kernel lacks stay empty.
    pub fn read(btf: &Btf) -> Self {
        let drop_reasons = enum_values(btf, "skb_drop_reason")
            .map(|members| {
                members
                    .into_iter()
                    .filter(|(name, _)| name != "SKB_DROP_REASON_MAX")
                    .map(|(name, value)| {
                        let short = name
                            .strip_prefix("SKB_DROP_REASON_")
                            .or_else(|| name.strip_prefix("SKB_"))
                            .unwrap_or(&name)
                            .to_owned();
                        (value, short)
                    })
                    .collect()
            })
            .unwrap_or_default();
        KernelEnums {
            drop_reasons,
            tcp_states: enum_values(btf, "TCP_ESTABLISHED")
                .map(|m| names_by_value(&m, "TCP_"))
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, name)| name != "MAX_STATES")
                .collect(),
            reset_reasons: enum_values(btf, "sk_rst_reason")
                .map(|m| names_by_value(&m, "SK_RST_REASON_"))
                .unwrap_or_default(),
            ipproto_tcp: enum_values(btf, "IPPROTO_TCP").ok().and_then(|m| m.get("IPPROTO_TCP").copied()),
        }
    }

    /// The value of a drop reason given by name (`NO_SOCKET` or `SKB_DROP_REASON_NO_SOCKET`).
    pub fn drop_reason_value(&self, name: &str) -> Option<u64> {
        let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
        self.drop_reasons.iter().find(|(_, n)| n.as_str() == short).map(|(value, _)| *value)
    }

    /// The value of a TCP state given without its `TCP_` prefix.
    pub fn tcp_state(&self, name: &str) -> Option<u64> {
        self.tcp_states.iter().find(|(_, n)| n.as_str() == name).map(|(value, _)| *value)
    }
}

#[cfg(test)]
mod tests;
