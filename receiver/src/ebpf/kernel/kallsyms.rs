//! Kernel addresses to function names, from `/proc/kallsyms`.

/// The kernel's text symbols, sorted by address.
#[derive(Debug, Default)]
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms` (addresses are zero without CAP_SYSLOG; then
    /// nothing resolves).
    pub fn load() -> Self {
        std::fs::read_to_string("/proc/kallsyms").map(|text| Self::parse(&text)).unwrap_or_default()
    }

    /// Parses kallsyms text: `<address> <type> <name> [module]` per line;
    /// only text symbols (`t`, `T`) are kept.
    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let address = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                (address != 0 && matches!(kind, "t" | "T")).then(|| (address, name.to_owned()))
            })
            .collect();
        symbols.sort_unstable();
        Kallsyms { symbols }
    }

    /// Whether any symbol is known.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The function containing `address` and the offset into it.
    pub fn resolve(&self, address: u64) -> Option<(&str, u64)> {
        let index = self.symbols.partition_point(|(start, _)| *start <= address).checked_sub(1)?;
        let (start, name) = &self.symbols[index];
        Some((name.as_str(), address - start))
    }

    /// `function+0xoffset`, or the address in hex when nothing resolves.
    pub fn describe(&self, address: u64) -> String {
        match self.resolve(address) {
            Some((name, offset)) => format!("{name}+{offset:#x}"),
            None => format!("{address:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_addresses_inside_text_symbols() {
        let symbols = Kallsyms::parse(
            "ffffffff81000000 T _text\nffffffff81a00000 t tcp_v4_rcv\nffffffff81a00800 D some_data\n\
             ffffffff81a01000 T ip_rcv\nffffffffc0000000 t veth_xmit\t[veth]\n",
        );
        assert_eq!(symbols.resolve(0xffffffff81a00123), Some(("tcp_v4_rcv", 0x123)));
        assert_eq!(symbols.resolve(0xffffffff81a00900), Some(("tcp_v4_rcv", 0x900)), "data symbols are skipped");
        assert_eq!(symbols.resolve(0xffffffffc0000010), Some(("veth_xmit", 0x10)));
        assert_eq!(symbols.resolve(0x1000), None);
        assert_eq!(symbols.describe(0xffffffff81a01004), "ip_rcv+0x4");
        assert_eq!(symbols.describe(0x10), "0x10");
    }

    #[test]
    fn zeroed_addresses_resolve_nothing() {
        let symbols = Kallsyms::parse("0000000000000000 T _text\n0000000000000000 t tcp_v4_rcv\n");
        assert!(symbols.is_empty());
    }
}
