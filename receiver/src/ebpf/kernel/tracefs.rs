//! Tracepoint record layouts from tracefs `format` files, and finding (or
//! mounting) tracefs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name (`saddr`).
    pub name: String,
    /// The C declaration's type (`__u8`, `const void *`, `enum skb_drop_reason`).
    pub c_type: String,
    /// Elements when the field is an array (`saddr[4]`), else `None`.
    pub array: Option<usize>,
    /// Offset from the record's start.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Whether the kernel marks it signed.
    pub signed: bool,
}

/// tracefs cannot be found, mounted or read.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    /// Mounted, but its `events` directory cannot be read.
    #[error("tracefs is mounted at {} but {} cannot be read: {source}", mount.display(), events.display())]
    Unreadable {
        /// Where tracefs is mounted.
        mount: PathBuf,
        /// Its `events` directory.
        events: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not mounted, and `mount` cannot be run.
    #[error("tracefs is not mounted and `mount` cannot run: {0}")]
    CannotRunMount(std::io::Error),
    /// Not mounted, and mounting it failed (what `mount` said).
    #[error("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}")]
    MountFailed(String),
    /// A tracepoint's `format` file cannot be read.
    #[error("{}: {source}", path.display())]
    ReadFormat {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A tracepoint's `format` file cannot be parsed.
    #[error("{}: {source}", path.display())]
    ParseFormat {
        /// The file.
        path: PathBuf,
        /// Why.
        source: FormatError,
    },
}

/// A `format` file that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// It declares no field.
    #[error("no fields")]
    NoFields,
    /// A field line cannot be read.
    #[error("line {line}: {why}: `{text}`")]
    Field {
        /// 1-based.
        line: usize,
        /// What is wrong with it.
        why: FieldError,
        /// The line.
        text: String,
    },
}

/// What is wrong with a field line.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    /// Nothing before the first `;`.
    #[error("no declaration")]
    NoDeclaration,
    /// `name[N]` with an N that is not a number.
    #[error("bad array length")]
    ArrayLength,
    /// No C type and identifier in the declaration.
    #[error("no field name")]
    NoName,
    /// No `offset:`.
    #[error("no offset")]
    NoOffset,
    /// No `size:`.
    #[error("no size")]
    NoSize,
}

/// The layout of one tracepoint's record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Format {
    /// Every field, the common ones (`common_pid`, …) included.
    pub fields: Vec<Field>,
}

impl Format {
    /// Parses a `format` file's text. Lines that are not field declarations
    /// are ignored; a field line that cannot be read is an error naming it.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let mut fields = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else { continue };
            let field =
                parse_field(rest).map_err(|why| FormatError::Field { line: number + 1, why, text: line.to_owned() })?;
            fields.push(field);
        }
        if fields.is_empty() {
            return Err(FormatError::NoFields);
        }
        Ok(Format { fields })
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The offset of `name` as the programs take it, if it has `size` bytes.
    pub fn offset_of(&self, name: &str, size: usize) -> Option<u16> {
        self.field(name).filter(|f| f.size == size).and_then(|f| u16::try_from(f.offset).ok())
    }

    /// Reads field `name` from a record as an unsigned integer (1, 2, 4 or 8 bytes, native order).
    pub fn read_uint(&self, record: &[u8], name: &str) -> Option<u64> {
        let field = self.field(name)?;
        let bytes = record.get(field.offset..field.offset + field.size)?;
        Some(match field.size {
            1 => u64::from(bytes[0]),
            2 => u64::from(u16::from_ne_bytes(bytes.try_into().ok()?)),
            4 => u64::from(u32::from_ne_bytes(bytes.try_into().ok()?)),
            8 => u64::from_ne_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    }

    /// The bytes of field `name` in a record.
    pub fn bytes<'r>(&self, record: &'r [u8], name: &str) -> Option<&'r [u8]> {
        let field = self.field(name)?;
        record.get(field.offset..field.offset + field.size)
    }
}

/// `<type> <name>[N]; offset:O; size:S; signed:0|1;` (after `field:`).
fn parse_field(rest: &str) -> Result<Field, FieldError> {
    let mut parts = rest.split(';').map(str::trim);
    let declaration = parts.next().ok_or(FieldError::NoDeclaration)?;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in parts {
        let Some((key, value)) = part.split_once(':') else { continue };
        match key.trim() {
            "offset" => offset = value.trim().parse::<usize>().ok(),
            "size" => size = value.trim().parse::<usize>().ok(),
            "signed" => signed = value.trim() == "1",
            _ => {}
        }
    }
    let declaration = declaration.trim();
    // The name is the last identifier, after any `*`; an array suffix follows it.
    let (declaration, array) = match declaration.strip_suffix(']').and_then(|d| d.rsplit_once('[')) {
        Some((before, count)) => {
            let count = match count.trim().parse::<usize>() {
                Ok(count) => count,
                // A length the kernel wrote as an expression (5.10's
                // `__u8 saddr[sizeof(struct sockaddr_in6)]`): for bytes, the size says it.
                Err(_) if is_byte_type(before) => size.ok_or(FieldError::NoSize)?,
                Err(_) => return Err(FieldError::ArrayLength),
            };
            (before.trim_end(), Some(count))
        }
        None => (declaration, None),
    };
    let name = declaration.rsplit(|c: char| c.is_whitespace() || c == '*').next().unwrap_or_default();
    let c_type = &declaration[..declaration.len() - name.len()];
    if c_type.is_empty() || name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(FieldError::NoName);
    }
    Ok(Field {
        name: name.to_owned(),
        c_type: c_type.trim().to_owned(),
        array,
        offset: offset.ok_or(FieldError::NoOffset)?,
        size: size.ok_or(FieldError::NoSize)?,
        signed,
    })
}

/// Whether a declaration (`__u8 saddr`) is of a one-byte type.
fn is_byte_type(declaration: &str) -> bool {
    let words: Vec<&str> = declaration.split_whitespace().collect();
    // Every word but the name.
    words.split_last().is_some_and(|(_, c_type)| {
        matches!(c_type, ["__u8"] | ["u8"] | ["char"] | ["unsigned", "char"] | ["signed", "char"] | ["__s8"] | ["s8"])
    })
}

/// Where tracefs is mounted (and readable), mounting it at
/// `/sys/kernel/tracing` when it is nowhere. A tracefs that is mounted but
/// cannot be read (no permission) is an error saying so.
pub fn root() -> Result<PathBuf, TracefsError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if let Some(mounted) = mounted_tracefs(&mounts) {
        let events = mounted.join("events");
        return match std::fs::read_dir(&events) {
            Ok(_) => Ok(mounted),
            Err(source) => Err(TracefsError::Unreadable { mount: mounted, events, source }),
        };
    }
    for candidate in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(candidate).join("events").is_dir() {
            return Ok(PathBuf::from(candidate));
        }
    }
    let output = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .output()
        .map_err(TracefsError::CannotRunMount)?;
    if !output.status.success() {
        return Err(TracefsError::MountFailed(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    Ok(PathBuf::from("/sys/kernel/tracing"))
}

/// The first tracefs mount point in a `/proc/self/mounts` listing.
fn mounted_tracefs(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
        // Mount points escape spaces and the like as octal (`\040`).
        (kind == "tracefs").then(|| PathBuf::from(point.replace("\\040", " ")))
    })
}

/// The record layout of tracepoint `category:name`.
pub fn format(root: &Path, category: &str, name: &str) -> Result<Format, TracefsError> {
    let path = root.join("events").join(category).join(name).join("format");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(TracefsError::ReadFormat { path, source }),
    };
    Format::parse(&text).map_err(|source| TracefsError::ParseFormat { path, source })
}

#[cfg(test)]
mod tests;
