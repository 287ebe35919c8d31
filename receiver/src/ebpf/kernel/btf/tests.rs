use super::*;

/// The BTF of a 6.18 kernel (`/sys/kernel/btf/vmlinux`, zstd-compressed).
fn kernel_6_18() -> Btf {
    let compressed = include_bytes!("../../../../testdata/btf/vmlinux-6.18.btf.zst");
    let raw = zstd::decode_all(&compressed[..]).expect("testdata decompresses");
    parse(&raw).expect("testdata is BTF")
}

#[test]
fn struct_offsets_are_found_through_anonymous_members() {
    let (layout, missing) = struct_layout(&kernel_6_18());
    assert!(missing.is_empty(), "{missing:?}");
    // `dev` sits in an anonymous struct in an anonymous union at the start of
    // sk_buff; the header offsets in the `headers` struct group; `len` and
    // `head` are plain members.
    assert_eq!(layout.skb_dev, 16);
    assert_eq!(layout.skb_len, 112);
    assert_eq!(layout.skb_head, 192);
    assert_eq!((layout.skb_transport_header, layout.skb_network_header), (178, 180));
    // Dotted paths through named members: net_device.nd_net.net, sock.__sk_common.skc_net.net.
    assert_eq!(layout.dev_net, 264);
    assert_eq!(layout.sock_net, 48);
    assert_eq!(layout.net_inum, 176);
    assert_eq!((layout.tcp_srtt_us, layout.tcp_bytes_received, layout.tcp_bytes_acked), (1680, 1752, 1824));
    // tcp_skb_cb.tcp_gso_segs is in an anonymous struct in an anonymous union, after seq and end_seq.
    assert_eq!((layout.skb_cb, layout.tcp_cb_gso_segs), (40, 8));
    // A socket's ends: sock_common's address pair and ports sit in anonymous unions.
    assert_eq!((layout.sock_daddr, layout.sock_rcv_saddr, layout.sock_dport, layout.sock_family), (0, 4, 12, 16));
    assert_eq!((layout.sock_v6_daddr, layout.sock_v6_rcv_saddr), (56, 72));
    // inet_sock starts with its struct sock, so the offset is from the socket.
    assert_eq!(layout.inet_sport, 814);
}

#[test]
fn missing_members_and_bit_fields_are_named_errors() {
    let btf = kernel_6_18();
    let err = member_offset(&btf, "sk_buff", "no_such_member").unwrap_err().to_string();
    assert!(err.contains("no member `no_such_member` in struct `sk_buff`"), "{err}");
    let err = member_offset(&btf, "no_such_struct", "len").unwrap_err().to_string();
    assert!(err.contains("no_such_struct"), "{err}");
    let err = member_offset(&btf, "sk_buff", "pkt_type").unwrap_err().to_string();
    assert!(err.contains("bit field"), "{err}");
    let err = member_offset(&btf, "sk_buff", "len.inner").unwrap_err().to_string();
    assert!(err.contains("not a struct"), "{err}");
}

#[test]
fn enums_are_read_by_name_or_by_a_member_of_an_anonymous_enum() {
    let enums = KernelEnums::read(&kernel_6_18());
    assert_eq!(enums.drop_reasons.get(&0).map(String::as_str), Some("NOT_DROPPED_YET"));
    assert_eq!(enums.drop_reasons.get(&1).map(String::as_str), Some("CONSUMED"));
    assert_eq!(enums.drop_reasons.get(&3).map(String::as_str), Some("NO_SOCKET"));
    assert_eq!(enums.drop_reasons.get(&12).map(String::as_str), Some("NETFILTER_DROP"));
    assert!(!enums.drop_reasons.values().any(|n| n == "MAX"));
    assert_eq!(enums.drop_reason_value("NO_SOCKET"), Some(3));
    assert_eq!(enums.drop_reason_value("SKB_DROP_REASON_NO_SOCKET"), Some(3));
    assert_eq!(enums.drop_reason_value("NOT_A_REASON"), None);
    assert_eq!(enums.tcp_state("ESTABLISHED"), Some(1));
    assert_eq!(enums.tcp_state("CLOSE"), Some(7));
    assert_eq!(enums.tcp_states.get(&12).map(String::as_str), Some("NEW_SYN_RECV"));
    assert_eq!(enums.reset_reasons.get(&1).map(String::as_str), Some("NO_SOCKET"));
    assert_eq!(enums.ipproto_tcp, Some(6));
}

#[test]
fn drop_reason_names_match_what_the_kernel_prints_in_tracefs() {
    // The kfree_skb format's print fmt lists `{ value, "NAME" }` for each
    // reason the tracepoint prints; BTF must name every one the same.
    let format = include_str!("../../../../testdata/tracefs-6.18/events/skb/kfree_skb/format");
    let enums = KernelEnums::read(&kernel_6_18());
    let mut checked = 0;
    for pair in format.split("{ ").skip(1) {
        let Some((value, rest)) = pair.split_once(", \"") else { continue };
        let Some((name, _)) = rest.split_once('"') else { continue };
        let Ok(value) = value.trim().parse::<u64>() else { continue };
        if name == "MAX" {
            continue;
        }
        assert_eq!(enums.drop_reasons.get(&value).map(String::as_str), Some(name), "reason {value}");
        checked += 1;
    }
    assert!(checked > 100, "only {checked} reasons in the format");
}
