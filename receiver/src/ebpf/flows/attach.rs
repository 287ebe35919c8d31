//! Attaching the TC programs to the interfaces the config names, as they
//! come and go: by TCX where the kernel has it (6.6+), else by a clsact
//! qdisc, removing what a flowtel that did not stop cleanly left there.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use aya::programs::{
    LinkOrder, TcAttachType, TestRun as _, TestRunOptions,
    tc::{self, NlOptions, TcAttachOptions},
};
use flowtel_core::ComponentId;
use flowtel_ebpf_common::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_TC_NOOP};

use super::interfaces::{self, Interface, InterfaceFilter};
use crate::ebpf::{
    config::{EbpfReceiverConfig, TcAttach},
    kernel::loader::{Attachment, EbpfError, Probes, classifier},
};

/// Keeps the attached interfaces in line with the filter.
pub struct InterfaceWatcher {
    filter: InterfaceFilter,
    names: BTreeMap<u32, String>,
    mode: TcAttach,
    /// How the first interface was attached, once logged.
    reported: Option<TcVariant>,
}

/// How the TC programs were attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcVariant {
    /// A TCX link (6.6+): it goes with the process.
    Tcx,
    /// A classifier in a clsact qdisc, because the kernel has no TCX.
    ClsactFallback,
    /// A classifier in a clsact qdisc, because the config asks for it.
    Clsact,
}

impl TcVariant {
    /// The startup log's line.
    fn describe(self) -> &'static str {
        match self {
            TcVariant::Tcx => "Flow programs attach with TCX: the kernel has it (6.6+).",
            TcVariant::ClsactFallback => {
                "Flow programs attach with a clsact qdisc: this kernel has no TCX (before 6.6)."
            }
            TcVariant::Clsact => {
                "Flow programs attach with a clsact qdisc: the config asks for it (tc_attach: netlink)."
            }
        }
    }
}

/// Attaches the TC programs to every interface the config names that exists
/// now (one that cannot be attached is an error); the returned watcher
/// attaches those that appear later.
pub fn attach(
    probes: &mut Probes,
    config: &EbpfReceiverConfig,
    id: &ComponentId,
) -> Result<InterfaceWatcher, EbpfError> {
    let filter = InterfaceFilter::new(&config.interfaces, &config.exclude_interfaces)
        .map_err(|(field, message)| EbpfError::Setting { field: field.to_owned(), message })?;
    let mut watcher = InterfaceWatcher { filter, names: BTreeMap::new(), mode: config.tc_attach, reported: None };
    watcher.sync(probes, true)?;
    if probes.attached().next().is_none() {
        tracing::warn!(receiver = %id, "No interface matches yet; waiting for one to appear.");
    }
    Ok(watcher)
}

impl InterfaceWatcher {
    /// Attaches to the interfaces that match and are not yet attached, and
    /// detaches from those gone or no longer matching; `strict` makes an
    /// interface that cannot be attached an error (at startup).
    pub fn sync(&mut self, probes: &mut Probes, strict: bool) -> Result<(), EbpfError> {
        let Ok(present) = interfaces::list(Path::new("/sys/class/net")) else { return Ok(()) };
        for interface in &present {
            self.names.insert(interface.ifindex, interface.name.clone());
        }
        let wanted: Vec<&Interface> = present.iter().filter(|i| self.filter.matches(i)).collect();
        let gone: Vec<String> =
            probes.attached().filter(|name| !wanted.iter().any(|i| i.name == *name)).map(str::to_owned).collect();
        for name in gone {
            tracing::info!(interface = %name, "Interface gone or no longer matching; detaching.");
            probes.detach(&name);
        }
        for interface in wanted {
            if probes.attached().any(|name| name == interface.name) {
                continue;
            }
            match probes.attach(&interface.name, self.mode) {
                Ok(variant) => {
                    if self.reported.is_none() {
                        tracing::info!("{}", variant.describe());
                        self.reported = Some(variant);
                    }
                    tracing::info!(interface = %interface.name, "Attached flow programs.");
                }
                Err(err) if strict => return Err(err),
                Err(err) => tracing::warn!(interface = %interface.name, error = %err, "Cannot attach; will retry."),
            }
        }
        Ok(())
    }

    /// The name of the interface with index `ifindex`.
    pub fn name(&self, ifindex: u32) -> String {
        self.names.get(&ifindex).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }
}

impl Probes {
    /// Interfaces the programs are attached to.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.attached.keys().map(String::as_str)
    }

    /// Attaches both programs to `interface` (in flowtel's network
    /// namespace); returns how. Attaching again is a no-op.
    pub fn attach(&mut self, interface: &str, mode: TcAttach) -> Result<TcVariant, EbpfError> {
        if let Some(attachment) = self.attached.get(interface) {
            return Ok(attachment.variant);
        }
        let mut attachment = Attachment { links: Vec::new(), added_clsact: false, variant: TcVariant::Tcx };
        match self.attach_both(interface, mode, &mut attachment) {
            Ok(variant) => {
                attachment.variant = variant;
                self.attached.insert(interface.to_owned(), attachment);
                Ok(variant)
            }
            Err(err) => {
                self.release(interface, attachment);
                Err(err)
            }
        }
    }

    fn attach_both(
        &mut self,
        interface: &str,
        mode: TcAttach,
        attachment: &mut Attachment,
    ) -> Result<TcVariant, EbpfError> {
        let mut variant = if mode == TcAttach::Netlink { TcVariant::Clsact } else { TcVariant::Tcx };
        for (name, attach_type) in [(PROG_TC_INGRESS, TcAttachType::Ingress), (PROG_TC_EGRESS, TcAttachType::Egress)] {
            let name = self.program_name(name);
            let tcx = || TcAttachOptions::TcxOrder(LinkOrder::first());
            let netlink = || TcAttachOptions::Netlink(NlOptions { priority: 1, ..NlOptions::default() });
            let first_try = match mode {
                TcAttach::Auto | TcAttach::Tcx => tcx(),
                TcAttach::Netlink => netlink(),
            };
            if matches!(first_try, TcAttachOptions::Netlink(_)) {
                if !attachment.added_clsact && attachment.links.is_empty() {
                    attachment.added_clsact = tc::qdisc_add_clsact(interface).is_ok();
                }
                remove_leftover(interface, attach_type, name);
            }
            let program = classifier(&mut self.ebpf, name)?;
            let link = match program.attach_with_options(interface, attach_type, first_try) {
                Ok(link) => link,
                Err(tcx_error) if mode == TcAttach::Auto => {
                    // Before 6.6 there is no TCX: fall back to a clsact qdisc.
                    tracing::debug!(interface, error = %tcx_error, "TCX attach failed; using a clsact qdisc.");
                    variant = TcVariant::ClsactFallback;
                    if attachment.links.is_empty() {
                        attachment.added_clsact = tc::qdisc_add_clsact(interface).is_ok();
                    }
                    remove_leftover(interface, attach_type, name);
                    let program = classifier(&mut self.ebpf, name)?;
                    program.attach_with_options(interface, attach_type, netlink())
                }
                .map_err(|e| attach_error(name, interface, &e))?,
                Err(e) => return Err(attach_error(name, interface, &e)),
            };
            attachment.links.push((name, link));
        }
        Ok(variant)
    }

    /// Detaches from `interface` and removes the qdisc flowtel added there.
    pub fn detach(&mut self, interface: &str) {
        if let Some(attachment) = self.attached.remove(interface) {
            self.release(interface, attachment);
        }
    }

    fn release(&mut self, interface: &str, attachment: Attachment) {
        for (name, link) in attachment.links {
            if let Ok(program) = classifier(&mut self.ebpf, name)
                && let Err(err) = program.detach(link)
            {
                // A removed interface takes its links with it.
                tracing::debug!(interface, program = name, error = %err, "Detach failed.");
            }
        }
        if attachment.added_clsact {
            remove_clsact(interface);
        }
    }

    /// Detaches from every interface.
    pub fn detach_all(&mut self) {
        let interfaces: Vec<String> = self.attached.keys().cloned().collect();
        for interface in interfaces {
            self.detach(&interface);
        }
    }

    /// Runs the ingress classifier once on a crafted packet (an Ethernet
    /// frame) with `BPF_PROG_TEST_RUN`; returns its verdict.
    pub fn test_run_ingress(&mut self, frame: &[u8]) -> Result<u32, EbpfError> {
        let name = self.program_name(PROG_TC_INGRESS);
        self.test_run(name, frame, 1).map(|(verdict, _)| verdict)
    }

    /// Benchmark only: runs the ingress classifier (or, with `noop`, the TC
    /// program that does nothing) `repeat` times on `frame`; the kernel's
    /// mean time per run.
    pub fn time_ingress(&mut self, frame: &[u8], repeat: u32, noop: bool) -> Result<Duration, EbpfError> {
        let name = if noop { PROG_TC_NOOP } else { self.program_name(PROG_TC_INGRESS) };
        if noop {
            let program = classifier(&mut self.ebpf, name)?;
            if program.fd().is_err() {
                program.load().map_err(|e| EbpfError::Program {
                    program: name,
                    on: String::new(),
                    message: format!("the kernel refused it: {e}"),
                })?;
            }
        }
        self.test_run(name, frame, repeat).map(|(_, mean)| mean)
    }

    /// `BPF_PROG_TEST_RUN` of a loaded classifier: its verdict and mean time per run.
    fn test_run(&mut self, name: &'static str, frame: &[u8], repeat: u32) -> Result<(u32, Duration), EbpfError> {
        let program = classifier(&mut self.ebpf, name)?;
        let options = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::default() };
        program.test_run(options).map(|result| (result.return_value, result.duration)).map_err(|e| EbpfError::Program {
            program: name,
            on: String::new(),
            message: format!("test run failed: {e:?}"),
        })
    }
}

fn attach_error(program: &'static str, interface: &str, err: &aya::programs::ProgramError) -> EbpfError {
    EbpfError::Program { program, on: format!(" on {interface}"), message: format!("cannot attach: {err}") }
}

/// Removes a flowtel classifier (found by its name) that a flowtel which
/// did not stop cleanly (`kill -9`, a crash) left in `interface`'s clsact
/// qdisc: unlike TCX links, netlink filters outlive the process that added
/// them, and a restart would otherwise run two of each.
fn remove_leftover(interface: &str, attach_type: TcAttachType, name: &str) {
    match tc::qdisc_detach_program(interface, attach_type, name) {
        Ok(()) => tracing::warn!(
            interface,
            program = name,
            "Removed a flowtel program left attached by a flowtel that did not stop cleanly."
        ),
        // None there (the usual case), or no qdisc yet.
        Err(err) => tracing::debug!(interface, program = name, error = %err, "No leftover program to remove."),
    }
}

/// Removes a clsact qdisc (and the filters on it) with iproute2's `tc`.
fn remove_clsact(interface: &str) {
    match Command::new("tc").args(["qdisc", "del", "dev", interface, "clsact"]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => tracing::debug!(
            interface,
            stderr = %String::from_utf8_lossy(&output.stderr).trim(),
            "Could not remove the clsact qdisc (the interface may be gone)."
        ),
        Err(err) => {
            tracing::warn!(interface, error = %err, "Cannot run `tc` to remove the clsact qdisc flowtel added.")
        }
    }
}
