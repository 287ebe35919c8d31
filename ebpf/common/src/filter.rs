//! Packet filters in classic BPF, as libpcap compiles pcap-filter
//! expressions, handed to the eBPF programs that evaluate them.
//!
//! Two programs are kept: one for packets that start at their link-layer
//! (Ethernet) header, as the TC programs see them, and one for packets that
//! start at their network header, as the drop and TCP programs see them.

/// Name of the array of two [`PacketFilter`]s: [`FILTER_LINK_LAYER`] and
/// [`FILTER_NETWORK_LAYER`].
pub const PACKET_FILTERS_MAP: &str = "PACKET_FILTERS";
/// [`PACKET_FILTERS_MAP`] slot of the program for Ethernet frames.
pub const FILTER_LINK_LAYER: u32 = 0;
/// [`PACKET_FILTERS_MAP`] slot of the program for packets starting at their IP header.
pub const FILTER_NETWORK_LAYER: u32 = 1;
/// Most instructions a filter program may have (a power of two, so a masked
/// index is always inside the program).
pub const FILTER_MAX_INSTRUCTIONS: usize = 512;
/// Bytes of a packet a filter sees, from its first header: a load past them
/// does not match, as a load past a short capture does not in libpcap.
pub const FILTER_CAPTURE_BYTES: usize = 256;
/// Scratch memory words of the classic BPF machine (`BPF_MEMWORDS`).
pub const FILTER_MEMORY_WORDS: usize = 16;

/// One classic BPF instruction (`struct sock_filter` / `struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterInstruction {
    /// Opcode: class, size, mode or operation, source.
    pub code: u16,
    /// Jump offset when a condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

/// A classic BPF program as the eBPF programs read it from their map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketFilter {
    /// Instructions in use (0: no program, everything matches).
    pub length: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
    /// The program; slots past `length` are unused.
    pub instructions: [FilterInstruction; FILTER_MAX_INSTRUCTIONS],
}

impl Default for PacketFilter {
    fn default() -> Self {
        PacketFilter { length: 0, pad: 0, instructions: [FilterInstruction::default(); FILTER_MAX_INSTRUCTIONS] }
    }
}

/// Classic BPF opcodes: the fields of [`FilterInstruction::code`] and their values.
pub mod op {
    /// The instruction class.
    pub const fn class(code: u16) -> u16 {
        code & 0x07
    }
    /// The operand size of a load.
    pub const fn size(code: u16) -> u16 {
        code & 0x18
    }
    /// The addressing mode of a load.
    pub const fn mode(code: u16) -> u16 {
        code & 0xe0
    }
    /// The operation of an ALU or jump instruction.
    pub const fn operation(code: u16) -> u16 {
        code & 0xf0
    }
    /// The source of an ALU or jump operand: [`K`] or [`X`].
    pub const fn source(code: u16) -> u16 {
        code & 0x08
    }
    /// The value a return instruction returns: [`K`], [`X`] or [`A`].
    pub const fn return_value(code: u16) -> u16 {
        code & 0x18
    }
    /// The operation of a miscellaneous instruction: [`TAX`] or [`TXA`].
    pub const fn misc(code: u16) -> u16 {
        code & 0xf8
    }

    /// Load into A.
    pub const LD: u16 = 0x00;
    /// Load into X.
    pub const LDX: u16 = 0x01;
    /// Store A in scratch memory.
    pub const ST: u16 = 0x02;
    /// Store X in scratch memory.
    pub const STX: u16 = 0x03;
    /// Arithmetic on A.
    pub const ALU: u16 = 0x04;
    /// Jumps (always forward).
    pub const JMP: u16 = 0x05;
    /// Return: 0 rejects the packet, anything else accepts it.
    pub const RET: u16 = 0x06;
    /// Register moves.
    pub const MISC: u16 = 0x07;

    /// 32-bit load.
    pub const W: u16 = 0x00;
    /// 16-bit load.
    pub const H: u16 = 0x08;
    /// 8-bit load.
    pub const B: u16 = 0x10;

    /// The constant.
    pub const IMM: u16 = 0x00;
    /// Packet bytes at a constant offset.
    pub const ABS: u16 = 0x20;
    /// Packet bytes at X plus a constant.
    pub const IND: u16 = 0x40;
    /// Scratch memory.
    pub const MEM: u16 = 0x60;
    /// The packet's length on the wire.
    pub const LEN: u16 = 0x80;
    /// Four times the low nibble of a packet byte (an IPv4 header's length).
    pub const MSH: u16 = 0xa0;

    /// A + operand.
    pub const ADD: u16 = 0x00;
    /// A - operand.
    pub const SUB: u16 = 0x10;
    /// A * operand.
    pub const MUL: u16 = 0x20;
    /// A / operand.
    pub const DIV: u16 = 0x30;
    /// A | operand.
    pub const OR: u16 = 0x40;
    /// A & operand.
    pub const AND: u16 = 0x50;
    /// A << operand.
    pub const LSH: u16 = 0x60;
    /// A >> operand.
    pub const RSH: u16 = 0x70;
    /// -A.
    pub const NEG: u16 = 0x80;
    /// A % operand.
    pub const MOD: u16 = 0x90;
    /// A ^ operand.
    pub const XOR: u16 = 0xa0;

    /// Jump always (by k).
    pub const JA: u16 = 0x00;
    /// Jump if A == operand.
    pub const JEQ: u16 = 0x10;
    /// Jump if A > operand.
    pub const JGT: u16 = 0x20;
    /// Jump if A >= operand.
    pub const JGE: u16 = 0x30;
    /// Jump if A & operand != 0.
    pub const JSET: u16 = 0x40;

    /// Operand: the constant k.
    pub const K: u16 = 0x00;
    /// Operand: the X register.
    pub const X: u16 = 0x08;
    /// Return A.
    pub const A: u16 = 0x10;

    /// X = A.
    pub const TAX: u16 = 0x00;
    /// A = X.
    pub const TXA: u16 = 0x80;
}

/// The classic BPF machine running one program over one packet: the packet's
/// first bytes, its registers and scratch memory. It lives in a map value in
/// the kernel (too big for the stack), and runs one [`step`] at a time so the
/// verifier checks one instruction's worth of code, not a whole program.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FilterMachine {
    /// The packet's first bytes.
    pub bytes: [u8; FILTER_CAPTURE_BYTES],
    /// How many of `bytes` hold the packet (at most [`FILTER_CAPTURE_BYTES`]).
    pub captured: u32,
    /// The packet's whole length (`BPF_LEN`).
    pub wire_length: u32,
    /// The accumulator.
    pub a: u32,
    /// The index register.
    pub x: u32,
    /// The next instruction.
    pub pc: u32,
    /// [`VERDICT_RUNNING`], [`VERDICT_MATCH`] or [`VERDICT_NO_MATCH`].
    pub verdict: u32,
    /// Scratch memory (`M[]`).
    pub memory: [u32; FILTER_MEMORY_WORDS],
}

/// [`FilterMachine::verdict`]: the program has not returned yet.
pub const VERDICT_RUNNING: u32 = 0;
/// [`FilterMachine::verdict`]: the program returned non-zero.
pub const VERDICT_MATCH: u32 = 1;
/// [`FilterMachine::verdict`]: the program returned zero, or could not go on
/// (a load past the captured bytes, a division by zero, a jump out of it).
pub const VERDICT_NO_MATCH: u32 = 2;

impl FilterMachine {
    /// Gets the machine ready for a new packet of `wire_length` bytes, of
    /// which `captured` were copied into `bytes`.
    #[inline(always)]
    pub fn reset(&mut self, captured: u32, wire_length: u32) {
        self.captured = if captured as usize > FILTER_CAPTURE_BYTES { FILTER_CAPTURE_BYTES as u32 } else { captured };
        self.wire_length = wire_length;
        self.a = 0;
        self.x = 0;
        self.pc = 0;
        self.verdict = VERDICT_RUNNING;
        self.memory = [0; FILTER_MEMORY_WORDS];
    }

    /// `size` bytes (1, 2 or 4) at `offset`, big-endian; `None` past the captured bytes.
    #[inline(always)]
    fn load(&self, offset: u32, size: u32) -> Option<u32> {
        let end = offset.checked_add(size)?;
        if end > self.captured {
            return None;
        }
        // Masked: the verifier sees every index inside the buffer.
        let byte = |n: u32| u32::from(self.bytes[(offset.wrapping_add(n)) as usize & (FILTER_CAPTURE_BYTES - 1)]);
        Some(match size {
            4 => byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3),
            2 => byte(0) << 8 | byte(1),
            _ => byte(0),
        })
    }

    #[inline(always)]
    fn stop(&mut self, matched: bool) -> bool {
        self.verdict = if matched { VERDICT_MATCH } else { VERDICT_NO_MATCH };
        true
    }

    /// Runs the instruction at `pc`; true once the program has a verdict.
    #[inline(always)]
    pub fn step(&mut self, program: &PacketFilter) -> bool {
        use op::*;
        if self.pc >= program.length || self.pc as usize >= FILTER_MAX_INSTRUCTIONS {
            return self.stop(false);
        }
        let instruction = program.instructions[self.pc as usize & (FILTER_MAX_INSTRUCTIONS - 1)];
        self.pc += 1;
        let code = instruction.code;
        let k = instruction.k;
        let memory = k as usize & (FILTER_MEMORY_WORDS - 1);
        let size = match size(code) {
            W => 4,
            H => 2,
            _ => 1,
        };
        match class(code) {
            LD | LDX => {
                let value = match mode(code) {
                    IMM => Some(k),
                    ABS => self.load(k, size),
                    IND => self.x.checked_add(k).and_then(|at| self.load(at, size)),
                    MEM => Some(self.memory[memory]),
                    LEN => Some(self.wire_length),
                    MSH => self.load(k, 1).map(|byte| (byte & 0x0f) << 2),
                    _ => None,
                };
                let Some(value) = value else { return self.stop(false) };
                if class(code) == LD {
                    self.a = value;
                } else {
                    self.x = value;
                }
            }
            ST => self.memory[memory] = self.a,
            STX => self.memory[memory] = self.x,
            ALU => {
                let operand = if source(code) == X { self.x } else { k };
                self.a = match operation(code) {
                    ADD => self.a.wrapping_add(operand),
                    SUB => self.a.wrapping_sub(operand),
                    MUL => self.a.wrapping_mul(operand),
                    DIV | MOD if operand == 0 => return self.stop(false),
                    DIV => self.a / operand,
                    MOD => self.a % operand,
                    OR => self.a | operand,
                    AND => self.a & operand,
                    LSH => self.a.checked_shl(operand).unwrap_or(0),
                    RSH => self.a.checked_shr(operand).unwrap_or(0),
                    NEG => self.a.wrapping_neg(),
                    XOR => self.a ^ operand,
                    _ => return self.stop(false),
                };
            }
            JMP => {
                let operand = if source(code) == X { self.x } else { k };
                let offset = match operation(code) {
                    JA => k,
                    JEQ => u32::from(if self.a == operand { instruction.jt } else { instruction.jf }),
                    JGT => u32::from(if self.a > operand { instruction.jt } else { instruction.jf }),
                    JGE => u32::from(if self.a >= operand { instruction.jt } else { instruction.jf }),
                    JSET => u32::from(if self.a & operand != 0 { instruction.jt } else { instruction.jf }),
                    _ => return self.stop(false),
                };
                self.pc = match self.pc.checked_add(offset) {
                    Some(pc) => pc,
                    None => return self.stop(false),
                };
            }
            RET => {
                let value = match return_value(code) {
                    K => k,
                    X => self.x,
                    _ => self.a,
                };
                return self.stop(value != 0);
            }
            _ => match misc(code) {
                TAX => self.x = self.a,
                TXA => self.a = self.x,
                _ => return self.stop(false),
            },
        }
        false
    }

    /// Runs `program` to its verdict (at most one step per instruction:
    /// classic BPF only jumps forward); true when it matched.
    pub fn run(&mut self, program: &PacketFilter) -> bool {
        for _ in 0..=program.length {
            if self.step(program) {
                break;
            }
        }
        self.verdict == VERDICT_MATCH
    }
}
