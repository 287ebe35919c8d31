//! Checks of a config's YAML text before it is parsed: a size bound, a
//! nesting bound (a YAML parser takes minutes on a small file nested a
//! hundred thousand levels deep), and no key given twice in one mapping
//! (YAML forbids it; a lenient parser keeps the last and says nothing).

/// The largest config file read, in bytes.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// The deepest nesting of collections a config may have.
pub const MAX_NESTING: usize = 64;

/// Why a config's text was refused before parsing.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error("the file is {0} bytes; a config is at most {MAX_CONFIG_BYTES}")]
    TooLarge(usize),
    /// A line opens more than [`MAX_NESTING`] block entries.
    #[error("line {line}: {entries} nested block entries; a config nests at most {MAX_NESTING} levels")]
    NestedBlockEntries {
        /// 1-based.
        line: usize,
        /// Entries the line opens.
        entries: usize,
    },
    /// Flow collections nested deeper than [`MAX_NESTING`].
    #[error("line {line}: collections nested deeper than {MAX_NESTING} levels")]
    NestedCollections {
        /// 1-based.
        line: usize,
    },
    /// A key given twice in one mapping (the parser's message, with its place).
    #[error("{0}")]
    DuplicateKey(String),
}

/// Checks `text`; the error says what is wrong and where.
pub fn check(text: &str) -> Result<(), YamlError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(YamlError::TooLarge(text.len()));
    }
    check_nesting(text)?;
    check_duplicate_keys(text)
}

/// Bounds the nesting a line can open: flow collections (`[`, `{`) outside
/// quotes and comments, and a run of block indicators (`- - - x`, `? ? x`)
/// at the start of a line. Indentation alone cannot nest deep in a file of
/// bounded size (each level costs a column on every line below it).
fn check_nesting(text: &str) -> Result<(), YamlError> {
    let mut flow_depth = 0usize;
    let mut quote: Option<char> = None;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if quote.is_none() && flow_depth == 0 {
            let indicators = block_indicator_run(line);
            if indicators > MAX_NESTING {
                return Err(YamlError::NestedBlockEntries { line: line_number, entries: indicators });
            }
        }
        let mut chars = line.chars().peekable();
        let mut previous = ' ';
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some('\''), '\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') if previous.is_whitespace() || "[{,:".contains(previous) => quote = Some(c),
                (None, '#') if previous.is_whitespace() => break,
                (None, '[' | '{') => {
                    flow_depth += 1;
                    if flow_depth > MAX_NESTING {
                        return Err(YamlError::NestedCollections { line: line_number });
                    }
                }
                (None, ']' | '}') => flow_depth = flow_depth.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
    }
    Ok(())
}

/// How many block indicators (`-` or `?` followed by a space) open a line.
fn block_indicator_run(line: &str) -> usize {
    let mut rest = line.trim_start();
    let mut count = 0;
    while let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
        count += 1;
        rest = after.trim_start();
    }
    count
}

/// YAML's rule that the keys of a mapping are unique, which the config
/// parser itself does not enforce.
fn check_duplicate_keys(text: &str) -> Result<(), YamlError> {
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Err(err) if err.to_string().contains("duplicate") => Err(YamlError::DuplicateKey(err.to_string())),
        // Other errors are the parser's to report, with its own message.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_quickly_with_its_line() {
        let flow = format!("receivers: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check(&flow).unwrap_err().to_string().starts_with("line 1: collections nested deeper than 64"));
        let block = format!("exporters:\n  debug:\nreceivers:\n{}x\n", "- ".repeat(100_000));
        assert!(check(&block).unwrap_err().to_string().starts_with("line 4: 100000 nested block entries"));
        let sane = "a: [[1, 2], {b: [3]}]  # ] ] ] not counted\nc: '[[[[' \nd: \"{{{\\\"\"\n- - x\n";
        assert!(check(sane).is_ok());
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let err = check("receivers:\n  otlp: {}\n  otlp: {}\n").unwrap_err().to_string();
        assert!(err.contains("duplicate") && err.contains("otlp"), "{err}");
        assert!(check("a: {x: 1}\nb: {x: 1}\n").is_ok());
    }

    #[test]
    fn size_is_bounded() {
        assert!(check(&"#".repeat(MAX_CONFIG_BYTES + 1)).unwrap_err().to_string().contains("at most"));
    }
}
