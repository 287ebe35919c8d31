//! `receivers::ebpf::filter`: a pcap-filter expression (as tcpdump and Retis
//! take them), compiled by libpcap into classic BPF and run in the kernel by
//! the programs' `_filtered` variants (`ebpf/probes/src/filter.rs`).
//!
//! libpcap compiles it twice: for Ethernet frames (the TC programs) and for
//! packets starting at their IP header (drops, and the header the TCP
//! programs build from a socket). Before the programs go to the kernel every
//! instruction is checked to be one the kernel side runs exactly as libpcap
//! would; anything else is a startup error, never a filter quietly ignored.

use std::fmt;

use flowtel_ebpf_common::{
    FILTER_CAPTURE_BYTES, FILTER_MAX_INSTRUCTIONS, FILTER_MEMORY_WORDS, FilterInstruction, PacketFilter, op,
};
use pcap::{Capture, Linktype};

#[cfg(test)]
mod tests;

/// libpcap's `DLT_EN10MB`: Ethernet frames.
const DLT_ETHERNET: Linktype = Linktype::ETHERNET;
/// libpcap's `DLT_RAW` on Linux: packets starting at their IPv4 or IPv6 header.
const DLT_RAW: Linktype = Linktype(12);

/// A compiled filter, ready for the kernel.
#[derive(Clone)]
pub struct CompiledFilter {
    /// The expression, as written.
    pub expression: String,
    /// The program for Ethernet frames (the TC programs).
    pub link_layer: PacketFilter,
    /// The program for packets from their IP header (drops and TCP events),
    /// or why the expression has none (it names link-layer fields).
    pub network_layer: Result<PacketFilter, String>,
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("expression", &self.expression)
            .field("link_layer", &self.link_layer.length)
            .field("network_layer", &self.network_layer.as_ref().map(|p| p.length))
            .finish()
    }
}

impl CompiledFilter {
    /// Compiles `expression`. The error is libpcap's message, or says
    /// which instruction the kernel side cannot run and why.
    pub fn compile(expression: &str) -> Result<Self, String> {
        let link_layer = compile_for(expression, DLT_ETHERNET)?;
        let network_layer = compile_for(expression, DLT_RAW);
        Ok(CompiledFilter { expression: expression.to_owned(), link_layer, network_layer })
    }

    /// The network-layer program, or an error saying why drops and TCP
    /// events cannot be filtered by this expression.
    pub fn network_layer(&self) -> Result<&PacketFilter, String> {
        self.network_layer.as_ref().map_err(|why| {
            format!(
                "`{}` cannot judge drops and TCP events, which have no link-layer header ({why}); \
                 set drops.enabled and tcp.enabled to false to filter flows only",
                self.expression
            )
        })
    }
}

/// libpcap's program for `expression` on `linktype`, checked and copied
/// into the kernel's layout.
fn compile_for(expression: &str, linktype: Linktype) -> Result<PacketFilter, String> {
    let message = |error: pcap::Error| match error {
        pcap::Error::PcapError(message) => format!("libpcap: {message}"),
        other => format!("libpcap: {other}"),
    };
    let capture = Capture::dead(linktype).map_err(message)?;
    let program = capture.compile(expression, true).map_err(message)?;
    let instructions: Vec<FilterInstruction> =
        program.get_instructions().iter().map(|i| parse_instruction(&i.to_string())).collect::<Result<_, _>>()?;
    to_kernel(&instructions)
}

/// One instruction from the pcap crate's only view of it, `code jt jf k`.
fn parse_instruction(text: &str) -> Result<FilterInstruction, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let parsed = match fields.as_slice() {
        [code, jt, jf, k] => (|| {
            Some(FilterInstruction {
                code: code.parse().ok()?,
                jt: jt.parse().ok()?,
                jf: jf.parse().ok()?,
                k: k.parse().ok()?,
            })
        })(),
        _ => None,
    };
    parsed.ok_or_else(|| format!("libpcap gave an instruction flowtel cannot read: `{text}`"))
}

/// Checks that the kernel side runs every instruction as libpcap would,
/// and lays the program out for the kernel.
pub fn to_kernel(instructions: &[FilterInstruction]) -> Result<PacketFilter, String> {
    if instructions.len() > FILTER_MAX_INSTRUCTIONS {
        return Err(format!(
            "the compiled filter has {} instructions; the kernel side runs at most {FILTER_MAX_INSTRUCTIONS}",
            instructions.len()
        ));
    }
    let mut filter = PacketFilter { length: instructions.len() as u32, ..PacketFilter::default() };
    for (at, instruction) in instructions.iter().enumerate() {
        check(instruction, at, instructions.len()).map_err(|why| {
            format!(
                "instruction {at} of the compiled filter (code {:#06x}, k {}) cannot run in the kernel: {why}",
                instruction.code, instruction.k
            )
        })?;
        filter.instructions[at] = *instruction;
    }
    Ok(filter)
}

/// Why one instruction cannot run in the kernel exactly as in libpcap.
fn check(instruction: &FilterInstruction, at: usize, length: usize) -> Result<(), String> {
    use op::*;
    let code = instruction.code;
    let k = instruction.k;
    let jump = |offset: u32| {
        if at + 1 + offset as usize >= length {
            Err(format!("it jumps past the program's end (by {offset})"))
        } else {
            Ok(())
        }
    };
    let memory = || {
        if (k as usize) < FILTER_MEMORY_WORDS {
            Ok(())
        } else {
            Err(format!("scratch memory has {FILTER_MEMORY_WORDS} words"))
        }
    };
    let unknown = || Err("unknown opcode".to_owned());
    match class(code) {
        LD | LDX => {
            let sized = |expected: u16| if size(code) == expected { Ok(()) } else { unknown() };
            match (class(code), mode(code)) {
                (_, IMM | LEN) => sized(W),
                (_, MEM) => sized(W).and_then(|()| memory()),
                (LD, ABS) => {
                    let bytes = match size(code) {
                        W => 4,
                        H => 2,
                        B => 1,
                        _ => return unknown(),
                    };
                    if k as usize + bytes > FILTER_CAPTURE_BYTES {
                        Err(format!(
                            "it reads packet bytes past the first {FILTER_CAPTURE_BYTES}, which the kernel side sees"
                        ))
                    } else {
                        Ok(())
                    }
                }
                (LD, IND) if size(code) != 0x18 => Ok(()),
                (LDX, MSH) => sized(B),
                _ => unknown(),
            }
        }
        ST | STX => memory(),
        ALU => match operation(code) {
            DIV | MOD if source(code) == K && k == 0 => Err("it divides by zero".into()),
            ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | NEG | MOD | XOR => Ok(()),
            _ => unknown(),
        },
        JMP => match operation(code) {
            JA => jump(k),
            JEQ | JGT | JGE | JSET => jump(u32::from(instruction.jt)).and_then(|()| jump(u32::from(instruction.jf))),
            _ => unknown(),
        },
        RET => match return_value(code) {
            K | X | A => Ok(()),
            _ => unknown(),
        },
        _ => match misc(code) {
            TAX | TXA => Ok(()),
            _ => unknown(),
        },
    }
}
