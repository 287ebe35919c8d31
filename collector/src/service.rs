//! From a config file to a checked service, and from that to a running topology.

use std::{collections::BTreeMap, path::Path};

use flowtel_core::{
    ComponentId, ComponentKind,
    config::{CheckedPipeline, ComponentConfig, ConfigError, ConfigErrors, load_file},
    self_telemetry::TelemetryConfig,
    topology::{PipelineSpec, TopologySpec},
};

use crate::components::{
    ComponentType, ExporterConfig, ProcessorConfig, ReceiverConfig, component_type, decode_exporter, decode_processor,
    decode_receiver,
};

/// A config whose every part was decoded and checked.
pub struct CheckedService {
    receivers: BTreeMap<ComponentId, ReceiverConfig>,
    processors: BTreeMap<ComponentId, ProcessorConfig>,
    exporters: BTreeMap<ComponentId, ExporterConfig>,
    pipelines: Vec<CheckedPipeline>,
    /// `service::telemetry`.
    pub telemetry: TelemetryConfig,
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

/// Reads, decodes and checks a config file; every problem is reported together.
pub fn check(path: &Path) -> Result<CheckedService, ConfigErrors> {
    let raw = load_file(path)?;
    let mut errors = ConfigErrors::default();
    let mut types = BTreeMap::new();
    let receivers = decode_section(ComponentKind::Receiver, &raw.receivers, decode_receiver, &mut types, &mut errors);
    let processors =
        decode_section(ComponentKind::Processor, &raw.processors, decode_processor, &mut types, &mut errors);
    let exporters = decode_section(ComponentKind::Exporter, &raw.exporters, decode_exporter, &mut types, &mut errors);
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
    if !errors.errors().is_empty() {
        return Err(errors);
    }
    Ok(CheckedService { receivers, processors, exporters, pipelines, telemetry: raw.telemetry })
}

impl CheckedService {
    /// Builds the components that pipelines use (unused ones are left out, with a warning).
    pub fn build(&self) -> Result<TopologySpec, ConfigErrors> {
        let mut errors = Vec::new();
        let used = |kind: ComponentKind, id: &ComponentId| {
            self.pipelines.iter().any(|p| match kind {
                ComponentKind::Receiver => p.receivers.contains(id),
                ComponentKind::Processor => p.processors.contains(id),
                ComponentKind::Exporter => p.exporters.contains(id),
            })
        };
        let mut receivers = BTreeMap::new();
        for (id, config) in &self.receivers {
            if used(ComponentKind::Receiver, id) {
                receivers.insert(id.clone(), config.build());
            } else {
                tracing::warn!(receiver = %id, "Receiver is not used by any pipeline.");
            }
        }
        let mut exporters = BTreeMap::new();
        for (id, config) in &self.exporters {
            if !used(ComponentKind::Exporter, id) {
                tracing::warn!(exporter = %id, "Exporter is not used by any pipeline.");
                continue;
            }
            match config.build() {
                Ok(spec) => {
                    exporters.insert(id.clone(), spec);
                }
                Err(message) => errors.push(ConfigError::new(format!("exporters::{id}"), message)),
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
        ConfigErrors::result(errors).map(|()| TopologySpec { receivers, exporters, pipelines })
    }
}
