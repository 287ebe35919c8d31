//! The `flowtel` binary: `flowtel --config F` runs the pipelines,
//! `flowtel validate --config F` checks a config, `flowtel components`
//! lists what is built in.

// This is the command line: it talks to the user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod components;
mod service;

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use flowtel_core::{
    self_telemetry::{Health, MetricsLevel, MetricsRegistry, OtlpPush, TelemetryServer, init_logging},
    topology::Topology,
};

#[derive(Parser)]
#[command(name = "flowtel", version, about = "The Linux kernel's view of the network, as OpenTelemetry.")]
struct Cli {
    /// The collector-style config file.
    #[arg(long, short, global = true, default_value = "otel-config.yaml")]
    config: PathBuf,
    /// How long shutdown may take to flush batches and queues.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the config and starts nothing (exit 0 when valid, 1 otherwise).
    Validate,
    /// Lists the built-in receivers, processors and exporters.
    Components,
}

/// Counts the heap flowtel holds, for the `memory_limiter` and own metrics.
#[global_allocator]
static ALLOCATOR: flowtel_core::memory::CountingAllocator = flowtel_core::memory::CountingAllocator;

fn main() -> ExitCode {
    flowtel_core::memory::counting_installed();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Components) => {
            print_components();
            ExitCode::SUCCESS
        }
        Some(Command::Validate) => validate(cli),
        None => run(&cli),
    }
}

/// Checks the config and builds its components, as a start would, without
/// starting them.
fn validate(cli: Cli) -> ExitCode {
    // Clients (gRPC channels) are created inside an async runtime even
    // when nothing runs yet.
    let Some(runtime) = async_runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    let _context = runtime.enter();
    let (warnings, loaded) = service::load(&cli.config);
    for warning in &warnings {
        eprintln!("{}: warning: {warning}", cli.config.display());
    }
    match loaded {
        Ok(_) => {
            println!("{}: valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {errors}", cli.config.display());
            ExitCode::FAILURE
        }
    }
}

/// The async runtime `builder` makes, or `None` after saying why it could not.
fn async_runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder.enable_all().build().map_err(|err| eprintln!("cannot start the async runtime: {err}")).ok()
}

fn print_components() {
    for kind in [
        flowtel_core::ComponentKind::Receiver,
        flowtel_core::ComponentKind::Processor,
        flowtel_core::ComponentKind::Exporter,
        flowtel_core::ComponentKind::Connector,
        flowtel_core::ComponentKind::Extension,
    ] {
        println!("{}:", kind.section());
        for component in components::COMPONENT_TYPES.iter().filter(|c| c.kind == kind) {
            let aliases = if component.aliases.is_empty() {
                String::new()
            } else {
                format!(" (alias {})", component.aliases.join(", "))
            };
            let signals: Vec<String> = if component.kind == flowtel_core::ComponentKind::Extension {
                vec!["service".to_owned()]
            } else if component.joins.is_empty() {
                component.signals.iter().map(|s| s.as_str().to_owned()).collect()
            } else {
                component.joins.iter().map(|(from, to)| format!("{from} → {to}")).collect()
            };
            println!("  {}{aliases} [{}]: {}", component.name, signals.join(", "), component.description);
        }
    }
}

fn run(cli: &Cli) -> ExitCode {
    let Some(runtime) = async_runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    let (warnings, loaded) = {
        let _context = runtime.enter();
        service::load(&cli.config)
    };
    let service = match loaded {
        Ok(service) => service,
        Err(errors) => {
            for warning in &warnings {
                eprintln!("{}: warning: {warning}", cli.config.display());
            }
            eprintln!("{}: {errors}", cli.config.display());
            return ExitCode::FAILURE;
        }
    };
    init_logging(&service.telemetry.logs);
    for warning in &warnings {
        tracing::warn!(config = %cli.config.display(), path = %warning.path, "{}.", warning.message);
    }
    match runtime.block_on(serve(service, cli.shutdown_timeout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flowtel: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(service: service::Service, shutdown_timeout: Duration) -> anyhow::Result<()> {
    let service::Service { telemetry, spec, effective_config } = service;
    let registry = Arc::new(MetricsRegistry::new());
    registry.observed_gauge("flowtel_process_heap_bytes", "Heap memory flowtel holds.", &[], || {
        flowtel_core::memory::heap_in_use().map_or(0, |bytes| bytes as i64)
    });
    registry.add_debug_page("config", move || effective_config.clone());
    let memory_registry = Arc::downgrade(&registry);
    registry.add_debug_page("memory", move || debug_memory(memory_registry.upgrade().as_deref()));
    let health = Health::default();
    let metrics_config = &telemetry.metrics;
    let mut server = if metrics_config.level == MetricsLevel::None {
        None
    } else {
        let server =
            TelemetryServer::start(&metrics_config.address, registry.clone(), health.clone()).await.map_err(|err| {
                anyhow::anyhow!(
                    "service::telemetry::metrics::address: cannot listen on {}: {err}",
                    metrics_config.address
                )
            })?;
        Some(server)
    };
    let mut topology = Topology::start(spec, registry.clone()).await?;
    let mut push = match (&metrics_config.otlp, metrics_config.level) {
        (Some(otlp), level) if level != MetricsLevel::None => Some(
            OtlpPush::start(otlp, registry.clone())
                .map_err(|err| anyhow::anyhow!("service::telemetry::metrics::otlp: {err}"))?,
        ),
        _ => None,
    };
    health.set_ready(true);
    tracing::info!("flowtel is running.");

    wait_for_signal().await?;
    tracing::info!("Shutting down: stopping intake, flushing pipelines and queues.");
    health.set_ready(false);
    topology.shutdown(shutdown_timeout).await;
    if let Some(push) = push.as_mut() {
        push.shutdown();
    }
    if let Some(server) = server.as_mut() {
        server.shutdown().await;
    }
    tracing::info!("flowtel stopped.");
    Ok(())
}

/// `/debug/memory`: the process's resident set and counted heap, the BPF
/// maps it holds (what the kernel charges for each), and every byte gauge of
/// flowtel's own metrics (queues, indexes) by component.
fn debug_memory(registry: Option<&MetricsRegistry>) -> serde_json::Value {
    let maps = flowtel_core::memory::bpf_maps();
    let components: Vec<serde_json::Value> = registry
        .map(MetricsRegistry::samples)
        .unwrap_or_default()
        .into_iter()
        .filter(|sample| !sample.is_counter && sample.name.ends_with("_bytes"))
        .map(|sample| {
            let labels: serde_json::Map<String, serde_json::Value> =
                sample.labels.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            serde_json::json!({"metric": sample.name, "labels": labels, "bytes": sample.value})
        })
        .collect();
    serde_json::json!({
        "resident_bytes": flowtel_core::memory::resident_bytes(),
        "heap_bytes": flowtel_core::memory::heap_in_use(),
        "bpf_map_bytes": maps.iter().map(|map| map.memlock_bytes).sum::<u64>(),
        "bpf_maps": maps,
        "components": components,
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
