//! What the kernel programs write, decoded as the `ebpf` receiver decodes
//! it: flow events, drop and TCP events (TCP records read with the
//! tracepoint layouts of a real kernel's tracefs), made into log records,
//! and packet journeys, made into spans; and tracefs `format` files themselves.
//!
//! The first byte picks what the rest is.
#![no_main]

use std::{path::Path, sync::OnceLock};

use flowtel_receiver::ebpf::{
    KernelEvent, decode_event, decode_kernel_event,
    drops::{DropContext, drop_record},
    journeys::convert::journey_span,
    kernel::{btf::KernelEnums, kallsyms::Kallsyms, tracefs},
    tcp::{TcpContext, TcpFormats, tcp_record},
};
use libfuzzer_sys::fuzz_target;

struct Kernel {
    enums: KernelEnums,
    kallsyms: Kallsyms,
    formats: TcpFormats,
}

fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../receiver/testdata/tracefs-6.18");
        let format = |category, name| tracefs::format(&root, category, name).unwrap_or_default();
        Kernel {
            enums: KernelEnums {
                drop_reasons: [(2, "NOT_SPECIFIED".to_owned()), (3, "NO_SOCKET".to_owned())].into_iter().collect(),
                tcp_states: [(1, "ESTABLISHED".to_owned()), (7, "CLOSE".to_owned())].into_iter().collect(),
                ..KernelEnums::default()
            },
            kallsyms: Kallsyms::parse("ffffffff81a00000 t tcp_v4_rcv\nffffffff81b00000 T ip_rcv\n"),
            formats: TcpFormats {
                retransmit: format("tcp", "tcp_retransmit_skb"),
                send_reset: format("tcp", "tcp_send_reset"),
                receive_reset: format("tcp", "tcp_receive_reset"),
                set_state: format("sock", "inet_sock_set_state"),
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, bytes)) = data.split_first() else { return };
    let kernel = kernel();
    match choice % 3 {
        0 => {
            let _ = decode_event(bytes);
        }
        1 => {
            let ctx = DropContext {
                enums: &kernel.enums,
                kallsyms: &kernel.kallsyms,
                monotonic_to_unix_ns: 1,
                now_unix_ns: 2,
            };
            match decode_kernel_event(bytes) {
                Some(KernelEvent::Drop(event)) => {
                    let stack: Vec<u64> =
                        bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default())).collect();
                    let _ = drop_record(&event, Some(&stack), &ctx);
                }
                Some(KernelEvent::Tcp(event)) => {
                    let ctx = TcpContext {
                        formats: &kernel.formats,
                        enums: &kernel.enums,
                        monotonic_to_unix_ns: u64::MAX,
                        now_unix_ns: 2,
                    };
                    let _ = tcp_record(&event, &ctx, None);
                }
                Some(KernelEvent::Journey(event)) => {
                    let _ = journey_span(&event, &ctx, [1; 16], [2; 8]);
                }
                None => {}
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(bytes)
                && let Ok(format) = tracefs::Format::parse(text)
            {
                for field in ["saddr", "sport", "family", "skaddr"] {
                    let _ = format.read_uint(bytes, field);
                    let _ = format.bytes(bytes, field);
                }
            }
        }
    }
});
