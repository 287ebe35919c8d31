//! A cgroup named as a container runtime names its containers, so that a
//! process put in it looks, in `/proc/<pid>/cgroup`, like one running in a
//! container with a given id. Removed on drop.

use std::{fs, path::PathBuf};

/// A cgroup `flowtel-test-<pid>/docker-<id>.scope` in the cgroup v2 hierarchy.
pub struct FakeContainer {
    parent: PathBuf,
    scope: PathBuf,
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid host).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
    })
}

impl FakeContainer {
    /// Creates the cgroup of container `id`; `None` where there is no cgroup
    /// v2 hierarchy to create it in.
    pub fn create(id: &str) -> Option<FakeContainer> {
        let parent = cgroup2_mount()?.join(format!("flowtel-test-{}", std::process::id()));
        let scope = parent.join(format!("docker-{id}.scope"));
        fs::create_dir_all(&scope).ok()?;
        Some(FakeContainer { parent, scope })
    }

    /// Moves process `pid` into the container's cgroup.
    pub fn add(&self, pid: u32) {
        fs::write(self.scope.join("cgroup.procs"), pid.to_string()).expect("moving a process into a cgroup");
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        // Its processes have ended by now (they are dropped first).
        let _ = fs::remove_dir(&self.scope);
        let _ = fs::remove_dir(&self.parent);
    }
}
