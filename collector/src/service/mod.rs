//! From a config file to a checked service, and from that to a running topology.

mod wiring;

use std::{collections::BTreeMap, path::Path};

use flowtel_core::{
    ComponentId, ComponentKind,
    config::{CheckedPipeline, ComponentConfig, ConfigError, ConfigErrors, read_file, redacted},
    self_telemetry::TelemetryConfig,
    topology::{PipelineSpec, TopologySpec},
};

use crate::components::{
    ComponentType, ConnectorConfig, ExporterConfig, ExtensionConfig, ProcessorConfig, ReceiverConfig, component_type,
    decode_connector, decode_exporter, decode_extension, decode_processor, decode_receiver,
};

/// A config file's components, built and ready to start.
pub struct Service {
    /// `service::telemetry`.
    pub telemetry: TelemetryConfig,
    /// What to start.
    pub spec: TopologySpec,
    /// The config after `${env:…}` expansion, its secrets hidden.
    pub effective_config: serde_json::Value,
}

/// Reads, checks and builds a config file, as a start would, without
/// starting anything. Every problem is reported together; warnings (an
/// unset environment variable) come back either way. Exporters build their
/// clients, so this runs inside an async runtime.
pub fn load(path: &Path) -> (Vec<ConfigError>, Result<Service, ConfigErrors>) {
    let mut raw = match read_file(path) {
        Ok(raw) => raw,
        Err(errors) => return (Vec::new(), Err(errors)),
    };
    let mut warnings = std::mem::take(&mut raw.warnings);
    let effective_config = redacted(&raw.effective);
    let mut errors = ConfigErrors::new(std::mem::take(&mut raw.problems));
    let checked = check(raw, &mut errors);
    let spec = checked.build(&mut errors, &mut warnings);
    let result = if errors.errors().is_empty() {
        Ok(Service { telemetry: checked.telemetry, spec, effective_config })
    } else {
        Err(errors)
    };
    (warnings, result)
}

/// A config whose every part was decoded and checked.
struct CheckedService {
    receivers: BTreeMap<ComponentId, ReceiverConfig>,
    processors: BTreeMap<ComponentId, ProcessorConfig>,
    exporters: BTreeMap<ComponentId, ExporterConfig>,
    connectors: BTreeMap<ComponentId, ConnectorConfig>,
    extensions: BTreeMap<ComponentId, ExtensionConfig>,
    /// Every id under `extensions`, decoded or not.
    defined_extensions: Vec<ComponentId>,
    /// `service::extensions`: the extensions to start.
    started_extensions: Vec<ComponentId>,
    pipelines: Vec<CheckedPipeline>,
    telemetry: TelemetryConfig,
}

/// Decodes every component of one section, collecting errors.
fn decode_section<T>(
    kind: ComponentKind,
    section: &BTreeMap<ComponentId, ComponentConfig>,
    decode: fn(&ComponentType, &ComponentConfig) -> Result<T, ConfigErrors>,
    types: &mut BTreeMap<(ComponentKind, ComponentId), &'static ComponentType>,
    errors: &mut ConfigErrors,
) -> BTreeMap<ComponentId, T> {
    let mut decoded = BTreeMap::new();
    for (id, config) in section {
        let component_type = match component_type(kind, id) {
            Ok(t) => t,
            Err(err) => {
                errors.extend([err]);
                continue;
            }
        };
        types.insert((kind, id.clone()), component_type);
        match decode(component_type, config) {
            Ok(value) => {
                decoded.insert(id.clone(), value);
            }
            Err(errs) => errors.extend(errs),
        }
    }
    decoded
}

/// Decodes and checks every part of a parsed config, adding what is wrong to `errors`.
fn check(raw: flowtel_core::config::RawConfig, errors: &mut ConfigErrors) -> CheckedService {
    let mut types = BTreeMap::new();
    let receivers = decode_section(ComponentKind::Receiver, &raw.receivers, decode_receiver, &mut types, errors);
    let processors = decode_section(ComponentKind::Processor, &raw.processors, decode_processor, &mut types, errors);
    let exporters = decode_section(ComponentKind::Exporter, &raw.exporters, decode_exporter, &mut types, errors);
    let connectors = decode_section(ComponentKind::Connector, &raw.connectors, decode_connector, &mut types, errors);
    let extensions = decode_section(ComponentKind::Extension, &raw.extensions, decode_extension, &mut types, errors);
    let pipelines = match raw.check_pipelines() {
        Ok(pipelines) => pipelines,
        Err(errs) => {
            errors.extend(errs);
            Vec::new()
        }
    };
    for pipeline in &pipelines {
        let used = [
            (ComponentKind::Receiver, &pipeline.receivers),
            (ComponentKind::Processor, &pipeline.processors),
            (ComponentKind::Exporter, &pipeline.exporters),
        ];
        for (kind, ids) in used {
            for id in ids {
                // Connectors' signals are checked with their wiring.
                if let Some(component_type) = types.get(&(kind, id.clone()))
                    && !component_type.signals.contains(&pipeline.id.signal())
                {
                    errors.extend([ConfigError::new(
                        format!("service::pipelines::{}::{}", pipeline.id, kind.section()),
                        format!("`{id}` does not handle {}", pipeline.id.signal()),
                    )]);
                }
            }
        }
    }
    let connector_types: BTreeMap<ComponentId, &ComponentType> = types
        .iter()
        .filter(|((kind, _), _)| *kind == ComponentKind::Connector)
        .map(|((_, id), t)| (id.clone(), *t))
        .collect();
    errors.extend(wiring::check(&connector_types, &pipelines));
    CheckedService {
        receivers,
        processors,
        exporters,
        connectors,
        extensions,
        defined_extensions: raw.extensions.keys().cloned().collect(),
        started_extensions: raw.service_extensions,
        pipelines,
        telemetry: raw.telemetry,
    }
}

impl CheckedService {
    /// Builds the components that pipelines use (unused ones are left out,
    /// with a warning), adding what cannot be built to `errors`.
    fn build(&self, errors: &mut ConfigErrors, warnings: &mut Vec<ConfigError>) -> TopologySpec {
        let used = |kind: ComponentKind, id: &ComponentId| {
            self.pipelines.iter().any(|p| match kind {
                ComponentKind::Receiver => p.receivers.contains(id),
                ComponentKind::Processor => p.processors.contains(id),
                ComponentKind::Exporter => p.exporters.contains(id),
                ComponentKind::Connector => p.receivers.contains(id) || p.exporters.contains(id),
                ComponentKind::Extension => false,
            })
        };
        let mut receivers = BTreeMap::new();
        for (id, config) in &self.receivers {
            if used(ComponentKind::Receiver, id) {
                receivers.insert(id.clone(), config.build());
            } else {
                warnings.push(ConfigError::new(format!("receivers::{id}"), "not used by any pipeline"));
            }
        }
        let mut exporters = BTreeMap::new();
        for (id, config) in &self.exporters {
            if !used(ComponentKind::Exporter, id) {
                warnings.push(ConfigError::new(format!("exporters::{id}"), "not used by any pipeline"));
                continue;
            }
            match config.build() {
                Ok(spec) => {
                    if let Some(storage) = &spec.queue.storage
                        && !self.started_extensions.contains(storage)
                    {
                        let where_ = if self.defined_extensions.contains(storage) {
                            "is not listed in `service::extensions`"
                        } else {
                            "is not defined under `extensions`"
                        };
                        errors.extend([ConfigError::new(
                            format!("exporters::{id}::sending_queue::storage"),
                            format!("`{storage}` {where_}"),
                        )]);
                    }
                    exporters.insert(id.clone(), spec);
                }
                Err(error) => errors.extend([ConfigError::new(format!("exporters::{id}"), error.to_string())]),
            }
        }
        let mut connectors = BTreeMap::new();
        for (id, config) in &self.connectors {
            if used(ComponentKind::Connector, id) {
                connectors.insert(id.clone(), config.build());
            } else {
                warnings.push(ConfigError::new(format!("connectors::{id}"), "not used by any pipeline"));
            }
        }
        let pipelines = self
            .pipelines
            .iter()
            .map(|pipeline| PipelineSpec {
                id: pipeline.id.clone(),
                receivers: pipeline.receivers.clone(),
                processors: pipeline
                    .processors
                    .iter()
                    .filter_map(|id| self.processors.get(id).map(|config| (id.clone(), config.build())))
                    .collect(),
                exporters: pipeline.exporters.clone(),
            })
            .collect();
        for id in self.defined_extensions.iter().filter(|id| !self.started_extensions.contains(id)) {
            warnings.push(ConfigError::new(format!("extensions::{id}"), "not listed in `service::extensions`"));
        }
        let extensions = self
            .started_extensions
            .iter()
            .filter_map(|id| self.extensions.get(id).map(|config| (id.clone(), config.build())))
            .collect();
        TopologySpec { extensions, receivers, exporters, connectors, pipelines }
    }
}
