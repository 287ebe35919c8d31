//! cgroup v2 ids (what `bpf_get_current_cgroup_id` returns) to cgroup paths.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// How often an unknown id may trigger a new walk of the cgroup tree.
const REWALK_INTERVAL: Duration = Duration::from_secs(5);

/// A cache of cgroup id → path under the cgroup v2 mount.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

impl Cgroups {
    /// A cache over the cgroup v2 hierarchy mounted at `root` (`/sys/fs/cgroup`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cgroups { root: root.into(), paths: HashMap::new(), last_walk: None }
    }

    /// A cache over the system's cgroup v2 mount (`/sys/fs/cgroup`, or
    /// `/sys/fs/cgroup/unified` on hybrid systems); `None` without one.
    pub fn discover() -> Option<Self> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        cgroup2_mount(&mounts).map(Cgroups::new)
    }

    /// The cgroup path (`/system.slice/docker-<id>.scope`) of an id.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.paths.contains_key(&id) && self.last_walk.is_none_or(|at| at.elapsed() >= REWALK_INTERVAL) {
            self.last_walk = Some(Instant::now());
            self.paths.clear();
            walk(&self.root, &self.root, &mut self.paths, 0);
        }
        self.paths.get(&id).map(String::as_str)
    }
}

/// The mount point of the first cgroup v2 file system in a mounts table.
fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(point))
    })
}

/// A cgroup v2 id is the inode number of its directory.
fn walk(root: &Path, dir: &Path, paths: &mut HashMap<u64, String>, depth: usize) {
    if depth > 32 {
        return;
    }
    if let Ok(meta) = std::fs::metadata(dir) {
        let relative = dir.strip_prefix(root).map(|p| format!("/{}", p.display())).unwrap_or_default();
        paths.insert(meta.ino(), if relative == "/" { "/".into() } else { relative });
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), paths, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_of_hybrid_and_unified_systems() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(cgroup2_mount(hybrid), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n"), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"), None);
    }

    #[test]
    fn ids_are_directory_inodes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("system.slice/app.scope")).unwrap();
        let inode = std::fs::metadata(dir.path().join("system.slice/app.scope")).unwrap().ino();
        let mut cgroups = Cgroups::new(dir.path());
        assert_eq!(cgroups.path(inode), Some("/system.slice/app.scope"));
        assert_eq!(cgroups.path(0), None);
    }
}
