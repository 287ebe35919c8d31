//! How much heap flowtel holds: a counting wrapper around the system
//! allocator, which the `flowtel` binary installs as its global allocator.
//! The `memory_limiter` processor reads it (it falls back to the resident
//! set size where the wrapper is not installed, as in unit tests).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicBool, AtomicIsize, Ordering},
};

static IN_USE: AtomicIsize = AtomicIsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Bytes a thread may allocate or free before it tells the shared count:
/// the count is off by at most this much per thread, and the shared
/// counter's cache line is not fought over on every allocation.
const FLUSH_BYTES: isize = 256 * 1024;

thread_local! {
    // Const-initialized and without a destructor: usable from the allocator
    // at any point of a thread's life, and never allocates itself.
    static UNFLUSHED: Cell<isize> = const { Cell::new(0) };
    // Bytes this thread has allocated since it started (never decreases).
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn account(bytes: isize) {
    if bytes > 0 {
        let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get() + bytes as u64));
    }
    let flushed = UNFLUSHED.try_with(|local| {
        let total = local.get() + bytes;
        if total.abs() >= FLUSH_BYTES {
            IN_USE.fetch_add(total, Ordering::Relaxed);
            local.set(0);
        } else {
            local.set(total);
        }
    });
    if flushed.is_err() {
        IN_USE.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The system allocator, counting the bytes held.
pub struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            account(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            account(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(pointer, layout) };
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Marks the counting allocator as installed; call once from `main`.
pub fn counting_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Heap bytes held (to within 256 KiB per thread), when the counting
/// allocator is installed.
pub fn heap_in_use() -> Option<u64> {
    INSTALLED.load(Ordering::Relaxed).then(|| IN_USE.load(Ordering::Relaxed).max(0) as u64)
}

/// Counts what the current thread allocates from now on: the memory a
/// synchronous piece of work (decoding one request) takes, known while it
/// runs. Counts nothing where the counting allocator is not installed.
#[derive(Clone, Copy, Debug)]
pub struct AllocationMeter {
    start: u64,
}

impl AllocationMeter {
    /// Starts counting on this thread.
    pub fn start() -> Self {
        AllocationMeter { start: allocated_by_this_thread() }
    }

    /// Bytes allocated on this thread since [`AllocationMeter::start`]
    /// (frees are not subtracted).
    pub fn allocated(&self) -> u64 {
        allocated_by_this_thread().saturating_sub(self.start)
    }
}

fn allocated_by_this_thread() -> u64 {
    ALLOCATED.try_with(Cell::get).unwrap_or(0)
}

/// The process's resident set size in bytes (from `/proc/self/statm`).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Memory in use: the counted heap, else the resident set.
pub fn in_use() -> Option<u64> {
    heap_in_use().or_else(resident_bytes)
}

/// The machine's memory, or the cgroup's limit when lower (bytes).
pub fn total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let machine = kib * 1024;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    Some(cgroup.map_or(machine, |limit| limit.min(machine)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_has_resident_memory_and_the_machine_has_more() {
        let resident = resident_bytes().unwrap();
        assert!(resident > 1 << 20);
        assert!(total().unwrap() > resident);
        // Not installed in unit tests: in_use falls back to the resident set.
        assert_eq!(heap_in_use(), None);
        assert!(in_use().unwrap() > 0);
    }
}

/// A BPF map this process holds, as the kernel describes it in
/// `/proc/self/fdinfo` (names need the bpf syscall; ids match `bpftool map`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BpfMap {
    /// The kernel's id of the map.
    pub id: u64,
    /// Its type, as a number of `enum bpf_map_type`.
    pub map_type: u64,
    /// Its capacity.
    pub max_entries: u64,
    /// The memory the kernel charges for it.
    pub memlock_bytes: u64,
}

/// The BPF maps this process has open (each once, however many descriptors).
pub fn bpf_maps() -> Vec<BpfMap> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let mut maps: Vec<BpfMap> = fds
        .filter_map(Result::ok)
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == "anon_inode:bpf-map"))
        .filter_map(|fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.file_name().to_string_lossy())).ok()?;
            let field = |name: &str| {
                info.lines().find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0)
            };
            Some(BpfMap {
                id: field("map_id:"),
                map_type: field("map_type:"),
                max_entries: field("max_entries:"),
                memlock_bytes: field("memlock:"),
            })
        })
        .collect();
    maps.sort_by_key(|map| map.id);
    maps.dedup_by_key(|map| map.id);
    maps
}
