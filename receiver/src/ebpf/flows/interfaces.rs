//! Which interfaces to watch: names and globs, matched against what
//! `/sys/class/net` lists in flowtel's network namespace.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

/// An interface present on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub ifindex: u32,
    /// Whether it is administratively up.
    pub up: bool,
}

/// Lists the interfaces under `sys_class_net` (normally `/sys/class/net`).
pub fn list(sys_class_net: &Path) -> std::io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(sys_class_net)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let read = |file: &str| std::fs::read_to_string(entry.path().join(file)).unwrap_or_default();
        let Ok(ifindex) = read("ifindex").trim().parse() else {
            continue;
        };
        let flags = u32::from_str_radix(read("flags").trim().trim_start_matches("0x"), 16).unwrap_or(0);
        out.push(Interface { name, ifindex, up: flags & libc::IFF_UP as u32 != 0 });
    }
    out.sort_by_key(|i| i.ifindex);
    Ok(out)
}

/// The `interfaces` / `exclude_interfaces` rule.
#[derive(Clone, Debug)]
pub struct InterfaceFilter {
    include: Option<GlobSet>,
    names_lo: bool,
    exclude: GlobSet,
}

fn globs(field: &'static str, patterns: &[String]) -> Result<GlobSet, (&'static str, String)> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = Glob::new(pattern).map_err(|err| (field, format!("{pattern:?} is not a valid glob: {err}")))?;
        builder.add(glob);
    }
    builder.build().map_err(|err| (field, err.to_string()))
}

impl InterfaceFilter {
    /// Builds the rule; an error names the field and the bad pattern.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, (&'static str, String)> {
        Ok(InterfaceFilter {
            include: if include.is_empty() { None } else { Some(globs("interfaces", include)?) },
            names_lo: include.iter().any(|p| p == "lo"),
            exclude: globs("exclude_interfaces", exclude)?,
        })
    }

    /// Whether `interface` should be watched.
    pub fn matches(&self, interface: &Interface) -> bool {
        if !interface.up || self.exclude.is_match(&interface.name) {
            return false;
        }
        if interface.name == "lo" {
            return self.names_lo;
        }
        self.include.as_ref().is_none_or(|set| set.is_match(&interface.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, up: bool) -> Interface {
        Interface { name: name.into(), ifindex: 1, up }
    }

    #[test]
    fn default_is_every_up_interface_but_loopback() {
        let filter = InterfaceFilter::new(&[], &[]).expect("valid");
        assert!(filter.matches(&iface("eth0", true)));
        assert!(!filter.matches(&iface("eth1", false)));
        assert!(!filter.matches(&iface("lo", true)));
    }

    #[test]
    fn globs_and_excludes() {
        let filter = InterfaceFilter::new(&["veth*".into(), "lo".into()], &["veth9*".into()]).expect("valid");
        assert!(filter.matches(&iface("veth12", true)));
        assert!(!filter.matches(&iface("veth90", true)));
        assert!(!filter.matches(&iface("eth0", true)));
        assert!(filter.matches(&iface("lo", true)));
        let star = InterfaceFilter::new(&["*".into()], &[]).expect("valid");
        assert!(!star.matches(&iface("lo", true)), "lo only when named");
    }

    #[test]
    fn a_bad_glob_names_its_field() {
        let err = InterfaceFilter::new(&["eth[".into()], &[]).expect_err("invalid");
        assert_eq!(err.0, "interfaces");
    }

    #[test]
    fn lists_this_host() {
        let interfaces = list(Path::new("/sys/class/net")).expect("sysfs");
        assert!(interfaces.iter().any(|i| i.name == "lo" && i.ifindex == 1), "{interfaces:?}");
    }
}
