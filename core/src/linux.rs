//! Facts of the local Linux host that several components read.

/// This host's name (`/proc/sys/kernel/hostname`), if it can be read.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_owned()).filter(|n| !n.is_empty())
}

/// The container id in a cgroup path: the last 64-hex-digit run in it
/// (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `.../<id>`).
pub fn container_id(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    let mut found = None;
    let mut start = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if !byte.is_ascii_hexdigit() || byte.is_ascii_uppercase() {
            if index - start == 64 {
                found = Some(&path[start..index]);
            }
            start = index + 1;
        }
    }
    if bytes.len() - start == 64 {
        found = Some(&path[start..]);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c";

    #[test]
    fn container_ids_from_runtime_paths() {
        assert_eq!(container_id(&format!("/system.slice/docker-{ID}.scope")), Some(ID));
        assert_eq!(
            container_id(&format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(container_id(&format!("/kubepods/besteffort/pod1234/{ID}")), Some(ID));
        assert_eq!(container_id("/user.slice/user-0.slice/session-3.scope"), None);
        assert_eq!(container_id(&format!("/x/{}", &ID[..63])), None);
    }
}
