//! One queue on disk: a folder of append-only segment files and a cursor.
//!
//! A segment (`00000000000000000001.seg`) is a run of frames:
//!
//! ```text
//! magic u32 | length u32 | items u32 | payload crc32 u32 | header crc32 u32 | payload
//! ```
//!
//! all little-endian; the header checksum covers the 16 bytes before it.
//! The cursor file holds the position (segment, offset) before which every
//! batch was sent, with its own checksum. A segment is deleted once the
//! cursor has passed it.
//!
//! Reading back after a restart checks every frame: a damaged header is
//! skipped byte by byte to the next valid one (the bytes counted), a
//! damaged or cut-off payload is skipped with its items counted, and the
//! rest is delivered. A write that fails (a full disk) is cut off again,
//! so the segment stays readable.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use flowtel_core::{
    self_telemetry::Counter,
    storage::{DurableQueue, QueueUsage, RecordId, StorageError, StoredRecord},
};

const MAGIC: u32 = 0x3151_5446; // "FTQ1"
const HEADER_LEN: u64 = 20;
const SEGMENT_SUFFIX: &str = ".seg";
const CURSOR_FILE: &str = "cursor";
/// An emptied queue starts a fresh segment once its write segment holds
/// this much (so a queue that empties after every batch does not create
/// a file per batch).
const REBOUND_MIN: u64 = 64 * 1024;

/// The bytes on disk of every queue of one storage, and their bound.
#[derive(Debug)]
pub(super) struct DiskBudget {
    pub(super) used: AtomicU64,
    pub(super) limit: u64,
}

impl DiskBudget {
    fn take(&self, bytes: u64) -> Result<(), StorageError> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|_| StorageError::Full { limit: self.limit })
    }

    fn give_back(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| Some(used.saturating_sub(bytes)));
    }
}

/// What a queue counts of what it could not read back.
#[derive(Clone)]
pub(super) struct LossCounters {
    /// Items of damaged batches (payload checksum wrong).
    pub(super) corrupt_items: Counter,
    /// Items of batches cut off at the end of a file.
    pub(super) truncated_items: Counter,
    /// Bytes skipped where no valid frame header was found.
    pub(super) skipped_bytes: Counter,
}

/// How a queue is kept.
#[derive(Clone, Copy, Debug)]
pub(super) struct LogOptions {
    pub(super) fsync: bool,
    pub(super) segment_size: u64,
    pub(super) compact_on_start: bool,
    pub(super) compact_on_rebound: bool,
}

/// Where a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    segment: u64,
    offset: u64,
}

/// A valid frame's place and size.
#[derive(Clone, Copy, Debug)]
struct Frame {
    at: Position,
    len: u32,
    items: u32,
    crc: u32,
}

fn header(len: u32, items: u32, crc: u32) -> [u8; HEADER_LEN as usize] {
    let mut bytes = [0u8; HEADER_LEN as usize];
    bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    bytes[4..8].copy_from_slice(&len.to_le_bytes());
    bytes[8..12].copy_from_slice(&items.to_le_bytes());
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&header_crc.to_le_bytes());
    bytes
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The frame header at the start of `bytes`, if it is one.
fn parse_header(bytes: &[u8]) -> Option<(u32, u32, u32)> {
    if bytes.len() < HEADER_LEN as usize || u32_at(bytes, 0) != MAGIC {
        return None;
    }
    (crc32fast::hash(&bytes[0..16]) == u32_at(bytes, 16))
        .then(|| (u32_at(bytes, 4), u32_at(bytes, 8), u32_at(bytes, 12)))
}

struct LogState {
    writer: File,
    write_segment: u64,
    write_len: u64,
    /// Live segment files and their sizes.
    segments: BTreeMap<u64, u64>,
    unread: VecDeque<Frame>,
    handed_out: BTreeMap<RecordId, Frame>,
    next_id: RecordId,
    cursor: Position,
    cursor_file: File,
    reader: Option<(u64, File)>,
    usage: QueueUsage,
}

/// One queue's folder.
pub(super) struct SegmentLog {
    dir: PathBuf,
    options: LogOptions,
    budget: Arc<DiskBudget>,
    losses: LossCounters,
    state: Mutex<LogState>,
}

fn io_error(what: &str, path: &Path, err: &std::io::Error) -> StorageError {
    StorageError::Io(format!("cannot {what} {}: {err}", path.display()))
}

impl SegmentLog {
    fn segment_path(dir: &Path, segment: u64) -> PathBuf {
        dir.join(format!("{segment:020}{SEGMENT_SUFFIX}"))
    }

    /// Opens (or creates) the queue in `dir`, reading back what is stored.
    pub(super) fn open(
        dir: PathBuf,
        options: LogOptions,
        budget: Arc<DiskBudget>,
        losses: LossCounters,
    ) -> Result<Self, StorageError> {
        fs::create_dir_all(&dir).map_err(|err| io_error("create", &dir, &err))?;
        let cursor_path = dir.join(CURSOR_FILE);
        let cursor_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&cursor_path)
            .map_err(|err| io_error("open", &cursor_path, &err))?;
        let cursor = read_cursor(&cursor_file);
        let mut segments = BTreeMap::new();
        let listing = fs::read_dir(&dir).map_err(|err| io_error("list", &dir, &err))?;
        for entry in listing.flatten() {
            let name = entry.file_name();
            let Some(segment) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse().ok())
            else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            segments.insert(segment, size);
        }
        let mut unread = VecDeque::new();
        let mut live = BTreeMap::new();
        for (&segment, &size) in &segments {
            let path = Self::segment_path(&dir, segment);
            if segment < cursor.segment {
                // Sent before the last stop; only its deletion was missed.
                let _ = fs::remove_file(&path);
                continue;
            }
            let start = if segment == cursor.segment { cursor.offset } else { 0 };
            let bytes = fs::read(&path).map_err(|err| io_error("read", &path, &err))?;
            scan_segment(segment, &bytes, start, &losses, &mut unread, &path);
            live.insert(segment, size);
        }
        let write_segment = live.keys().next_back().map_or(1, |last| last + 1).max(cursor.segment + 1);
        let writer = Self::create_segment(&dir, write_segment)?;
        live.insert(write_segment, 0);
        let used: u64 = live.values().sum();
        budget.used.fetch_add(used, Ordering::Relaxed);
        let mut usage = QueueUsage::default();
        for frame in &unread {
            usage.records += 1;
            usage.items += u64::from(frame.items);
            usage.bytes += u64::from(frame.len);
        }
        let state = LogState {
            writer,
            write_segment,
            write_len: 0,
            segments: live,
            unread,
            handed_out: BTreeMap::new(),
            next_id: 0,
            cursor,
            cursor_file,
            reader: None,
            usage,
        };
        let log = SegmentLog { dir, options, budget, losses, state: Mutex::new(state) };
        if options.compact_on_start {
            log.compact()?;
        } else {
            // Written now so that its blocks exist: rewriting it in place
            // then needs no new space, even on a full disk.
            log.write_cursor(&mut log.lock())?;
        }
        Ok(log)
    }

    fn create_segment(dir: &Path, segment: u64) -> Result<File, StorageError> {
        let path = Self::segment_path(dir, segment);
        OpenOptions::new().create(true).append(true).open(&path).map_err(|err| io_error("create", &path, &err))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Copies every unsent batch into fresh segments and deletes the old ones.
    fn compact(&self) -> Result<(), StorageError> {
        let mut state = self.lock();
        let frames: Vec<Frame> = state.unread.drain(..).collect();
        state.usage = QueueUsage::default();
        let old: Vec<u64> = state.segments.keys().copied().filter(|s| *s != state.write_segment).collect();
        for frame in frames {
            match self.read_payload(&mut state, &frame) {
                Some(payload) => self.append(&mut state, &payload, frame.items)?,
                None => self.losses.corrupt_items.add(u64::from(frame.items)),
            }
        }
        state.cursor = Position { segment: state.write_segment, offset: 0 };
        self.write_cursor(&mut state)?;
        for segment in old {
            self.delete_segment(&mut state, segment);
        }
        Ok(())
    }

    fn delete_segment(&self, state: &mut LogState, segment: u64) {
        if let Some(size) = state.segments.remove(&segment) {
            let path = Self::segment_path(&self.dir, segment);
            if let Err(err) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %err, "Cannot delete a sent segment of a persistent queue.");
            }
            self.budget.give_back(size);
            if state.reader.as_ref().is_some_and(|(s, _)| *s == segment) {
                state.reader = None;
            }
        }
    }

    /// Writes one frame at the end of the write segment, starting a new
    /// segment when this one is full.
    fn append(&self, state: &mut LogState, payload: &[u8], items: u32) -> Result<(), StorageError> {
        let len = u32::try_from(payload.len())
            .map_err(|_| StorageError::Io(format!("a batch of {} bytes is too large to store", payload.len())))?;
        let frame_len = HEADER_LEN + u64::from(len);
        if state.write_len > 0 && state.write_len + frame_len > self.options.segment_size {
            self.rotate(state)?;
        }
        self.budget.take(frame_len)?;
        let crc = crc32fast::hash(payload);
        let mut bytes = Vec::with_capacity(frame_len as usize);
        bytes.extend_from_slice(&header(len, items, crc));
        bytes.extend_from_slice(payload);
        let path = Self::segment_path(&self.dir, state.write_segment);
        let written = state
            .writer
            .write_all(&bytes)
            .and_then(|()| if self.options.fsync { state.writer.sync_data() } else { Ok(()) });
        if let Err(err) = written {
            self.budget.give_back(frame_len);
            // Cut off what part of the frame was written, so the segment
            // stays readable; if even that fails, write to a fresh one.
            if state.writer.set_len(state.write_len).is_err() {
                let _ = self.rotate(state);
            }
            return Err(io_error("write to", &path, &err));
        }
        let frame = Frame { at: Position { segment: state.write_segment, offset: state.write_len }, len, items, crc };
        state.write_len += frame_len;
        *state.segments.entry(state.write_segment).or_default() += frame_len;
        state.unread.push_back(frame);
        state.usage.records += 1;
        state.usage.items += u64::from(items);
        state.usage.bytes += u64::from(len);
        Ok(())
    }

    fn rotate(&self, state: &mut LogState) -> Result<(), StorageError> {
        let next = state.write_segment + 1;
        state.writer = Self::create_segment(&self.dir, next)?;
        state.write_segment = next;
        state.write_len = 0;
        state.segments.insert(next, 0);
        Ok(())
    }

    /// A frame's payload, if its checksum still holds.
    fn read_payload(&self, state: &mut LogState, frame: &Frame) -> Option<Vec<u8>> {
        if state.reader.as_ref().is_none_or(|(segment, _)| *segment != frame.at.segment) {
            let path = Self::segment_path(&self.dir, frame.at.segment);
            let file = File::open(&path).ok()?;
            state.reader = Some((frame.at.segment, file));
        }
        let (_, file) = state.reader.as_ref()?;
        let mut payload = vec![0u8; frame.len as usize];
        file.read_exact_at(&mut payload, frame.at.offset + HEADER_LEN).ok()?;
        (crc32fast::hash(&payload) == frame.crc).then_some(payload)
    }

    /// The position before which every batch was sent.
    fn sent_up_to(state: &LogState) -> Position {
        state
            .handed_out
            .values()
            .next()
            .or(state.unread.front())
            .map_or(Position { segment: state.write_segment, offset: state.write_len }, |frame| frame.at)
    }

    fn write_cursor(&self, state: &mut LogState) -> Result<(), StorageError> {
        let mut bytes = [0u8; 20];
        bytes[0..8].copy_from_slice(&state.cursor.segment.to_le_bytes());
        bytes[8..16].copy_from_slice(&state.cursor.offset.to_le_bytes());
        let crc = crc32fast::hash(&bytes[0..16]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        let written = state
            .cursor_file
            .write_all_at(&bytes, 0)
            .and_then(|()| if self.options.fsync { state.cursor_file.sync_data() } else { Ok(()) });
        written.map_err(|err| io_error("write", &self.dir.join(CURSOR_FILE), &err))
    }

    fn forget(state: &mut LogState, frame: &Frame) {
        state.usage.records = state.usage.records.saturating_sub(1);
        state.usage.items = state.usage.items.saturating_sub(u64::from(frame.items));
        state.usage.bytes = state.usage.bytes.saturating_sub(u64::from(frame.len));
    }
}

impl DurableQueue for SegmentLog {
    fn push(&self, record: &[u8], items: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        self.append(&mut state, record, u32::try_from(items).unwrap_or(u32::MAX))
    }

    fn pop(&self) -> Option<StoredRecord> {
        let mut state = self.lock();
        while let Some(frame) = state.unread.pop_front() {
            match self.read_payload(&mut state, &frame) {
                Some(bytes) => {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.handed_out.insert(id, frame);
                    return Some(StoredRecord { id, items: u64::from(frame.items), bytes });
                }
                None => {
                    tracing::error!(segment = %Self::segment_path(&self.dir, frame.at.segment).display(), offset = frame.at.offset, items = frame.items, "A stored batch changed on disk and fails its checksum; skipping it.");
                    self.losses.corrupt_items.add(u64::from(frame.items));
                    Self::forget(&mut state, &frame);
                }
            }
        }
        None
    }

    fn done(&self, id: RecordId) {
        let mut state = self.lock();
        let Some(frame) = state.handed_out.remove(&id) else { return };
        Self::forget(&mut state, &frame);
        let emptied = state.unread.is_empty() && state.handed_out.is_empty();
        if self.options.compact_on_rebound && emptied && state.write_len >= REBOUND_MIN.min(self.options.segment_size) {
            // Empty: a fresh segment, and the written one can go.
            if self.rotate(&mut state).is_err() {
                return;
            }
        }
        let sent_up_to = Self::sent_up_to(&state);
        if sent_up_to <= state.cursor {
            return;
        }
        state.cursor = sent_up_to;
        if let Err(err) = self.write_cursor(&mut state) {
            tracing::warn!(%err, "Cannot record what a persistent queue sent; it may be sent again after a restart.");
        }
        // Segments wholly sent go either way: nothing in them is needed.
        let passed: Vec<u64> = state.segments.range(..sent_up_to.segment).map(|(s, _)| *s).collect();
        for segment in passed {
            self.delete_segment(&mut state, segment);
        }
    }

    fn usage(&self) -> QueueUsage {
        self.lock().usage
    }
}

fn read_cursor(file: &File) -> Position {
    let mut bytes = [0u8; 20];
    if file.read_exact_at(&mut bytes, 0).is_err() || crc32fast::hash(&bytes[0..16]) != u32_at(&bytes, 16) {
        return Position { segment: 0, offset: 0 };
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[0..8]);
    let segment = u64::from_le_bytes(word);
    word.copy_from_slice(&bytes[8..16]);
    Position { segment, offset: u64::from_le_bytes(word) }
}

/// Reads the frames of one segment from `start`, keeping the valid ones
/// and counting what is damaged.
fn scan_segment(
    segment: u64,
    bytes: &[u8],
    start: u64,
    losses: &LossCounters,
    frames: &mut VecDeque<Frame>,
    path: &Path,
) {
    let mut at = usize::try_from(start).unwrap_or(usize::MAX).min(bytes.len());
    let mut skipped = 0u64;
    let report = |what: &str, offset: usize, items: u64| {
        tracing::warn!(segment = %path.display(), offset, items, "{what}");
    };
    while at < bytes.len() {
        let Some((len, items, crc)) = parse_header(&bytes[at..]) else {
            skipped += 1;
            at += 1;
            continue;
        };
        if skipped > 0 {
            losses.skipped_bytes.add(skipped);
            report("Skipped damaged bytes of a persistent queue.", at - skipped as usize, 0);
            skipped = 0;
        }
        let body = at + HEADER_LEN as usize;
        let end = body.saturating_add(len as usize);
        if end > bytes.len() {
            losses.truncated_items.add(u64::from(items));
            report("A stored batch is cut off at the end of its file; its items are lost.", at, u64::from(items));
            return;
        }
        if crc32fast::hash(&bytes[body..end]) == crc {
            frames.push_back(Frame { at: Position { segment, offset: at as u64 }, len, items, crc });
        } else {
            losses.corrupt_items.add(u64::from(items));
            report("A stored batch fails its checksum; its items are lost.", at, u64::from(items));
        }
        at = end;
    }
    if skipped > 0 {
        losses.skipped_bytes.add(skipped);
        report("Skipped damaged bytes at the end of a persistent queue's file.", bytes.len() - skipped as usize, 0);
    }
}
