use super::*;

fn testdata(category: &str, name: &str) -> Format {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tracefs-6.18");
    format(&root, category, name).expect("testdata format parses")
}

#[test]
fn reads_fields_offsets_sizes_and_arrays() {
    let kfree_skb = testdata("skb", "kfree_skb");
    assert_eq!(kfree_skb.offset_of("skbaddr", 8), Some(8));
    assert_eq!(kfree_skb.offset_of("location", 8), Some(16));
    assert_eq!(kfree_skb.offset_of("reason", 4), Some(36));
    let reason = kfree_skb.field("reason").unwrap();
    assert_eq!(reason.c_type, "enum skb_drop_reason");
    assert!(!reason.signed);
    assert_eq!(kfree_skb.field("skbaddr").unwrap().c_type, "void *");
    assert!(kfree_skb.field("common_pid").unwrap().signed, "common fields are kept");

    let reset = testdata("tcp", "tcp_send_reset");
    let saddr = reset.field("saddr").unwrap();
    assert_eq!((saddr.offset, saddr.size, saddr.array), (32, 28, Some(28)));
    assert_eq!(reset.field("skaddr").unwrap().c_type, "const void *");

    assert_eq!(testdata("tcp", "tcp_probe").offset_of("srtt", 4), Some(100));
    let state = testdata("sock", "inet_sock_set_state");
    assert_eq!(state.offset_of("newstate", 4), Some(20));
    assert_eq!(state.offset_of("newstate", 8), None, "a size mismatch is no offset");
    assert_eq!(state.offset_of("no_such_field", 4), None);
}

#[test]
fn reads_values_out_of_a_record() {
    let format = testdata("sock", "inet_sock_set_state");
    let mut record = vec![0u8; 72];
    record[16..20].copy_from_slice(&2i32.to_ne_bytes());
    record[24..26].copy_from_slice(&8080u16.to_ne_bytes());
    record[32..36].copy_from_slice(&[10, 0, 0, 1]);
    assert_eq!(format.read_uint(&record, "oldstate"), Some(2));
    assert_eq!(format.read_uint(&record, "sport"), Some(8080));
    assert_eq!(format.bytes(&record, "saddr"), Some(&[10, 0, 0, 1][..]));
    assert_eq!(format.read_uint(&record[..20], "newstate"), None, "a short record reads nothing");
}

#[test]
fn malformed_formats_say_where() {
    let err = Format::parse("name: x\nformat:\n\tfield:int state;\toffset:8;\tsigned:1;\n").unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("no size"), "{err}");
    let err = Format::parse("\tfield:int state[x];\toffset:8;\tsize:4;\tsigned:1;\n").unwrap_err().to_string();
    assert!(err.contains("bad array length"), "{err}");
    // 5.10's tcp_probe writes a byte array's length as an expression; its size says it.
    let probe =
        Format::parse("\tfield:__u8 saddr[sizeof(struct sockaddr_in6)];\toffset:8;\tsize:28;\tsigned:0;\n").unwrap();
    let saddr = probe.field("saddr").unwrap();
    assert_eq!((saddr.offset, saddr.size, saddr.array), (8, 28, Some(28)));
    let err = Format::parse("\tfield:;\toffset:8;\tsize:4;\tsigned:1;\n").unwrap_err().to_string();
    assert!(err.contains("no field name"), "{err}");
    assert_eq!(Format::parse("name: x\nprint fmt: \"\"\n").unwrap_err().to_string(), "no fields");
    let err = format(Path::new("/nonexistent"), "skb", "kfree_skb").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/events/skb/kfree_skb/format"), "{err}");
}

#[test]
fn the_tracefs_mount_point_is_read_from_the_mount_table() {
    let mounts = "sysfs /sys sysfs rw 0 0\nnodev /sys/kernel/tracing tracefs rw,relatime 0 0\n";
    assert_eq!(mounted_tracefs(mounts), Some(PathBuf::from("/sys/kernel/tracing")));
    assert_eq!(mounted_tracefs("tracefs /my\\040trace tracefs rw 0 0\n"), Some(PathBuf::from("/my trace")));
    assert_eq!(mounted_tracefs("sysfs /sys sysfs rw 0 0\n"), None);
}

/// Found by the `kernel_events` fuzz target: a declaration whose last
/// separator is a multi-byte whitespace character (U+0085) split a character.
#[test]
fn a_declaration_with_unicode_whitespace_is_parsed_or_refused_without_panicking() {
    let text = "name: x\nformat:\n\tfield:int\u{85}a;\toffset:8;\tsize:4;\tsigned:1;\n";
    let format = Format::parse(text).unwrap();
    assert_eq!(format.field("a").map(|f| f.c_type.as_str()), Some("int"));
    assert!(Format::parse("format:\n\tfield:\u{85};\toffset:8;\tsize:4;\n").is_err());
}
