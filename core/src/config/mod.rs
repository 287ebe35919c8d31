//! The collector-style configuration file (`otel-config.yaml`).
//!
//! Loading happens in three steps; every error they find is reported
//! together, each with its path (`exporters::otlp_grpc::timeout: …`):
//!
//! 1. [`read_file`] / [`read_str_with_env`] check the text ([`yaml`]: its
//!    size, nesting and duplicate keys), parse it with figment, expand
//!    `${env:VAR}`, `${VAR}` and `${env:VAR:-default}`, and check the shape
//!    of the top level and of `service` (pipelines and telemetry).
//! 2. The binary decodes each component's own typed config with
//!    [`ComponentConfig::decode`] (the core knows no component type).
//! 3. [`RawConfig::check_pipelines`] checks the references between
//!    pipelines and components.
//!
//! Only a file that is not YAML at all stops at step 1; otherwise the
//! problems of every step come out in one list.

mod errors;
mod expand;
mod redact;
mod values;
pub mod yaml;

use std::{collections::BTreeMap, path::Path};

use figment::{
    Figment,
    providers::{Format, Yaml},
    value::Dict,
};
use serde::{Deserialize, de::DeserializeOwned};

/// A config value not yet decoded (a section one component hands to another's decoder).
pub use figment::value::Value;

pub use errors::{ConfigError, ConfigErrors};
pub use redact::{REDACTED, redacted};
pub use values::HostPort;

use crate::{
    component::{ComponentId, ComponentKind, PipelineId},
    self_telemetry::TelemetryConfig,
};

/// The sections a config file may have at the top level.
const TOP_LEVEL_KEYS: [&str; 6] = ["receivers", "processors", "exporters", "connectors", "extensions", "service"];

/// One component's config, not yet decoded into its typed struct.
#[derive(Clone, Debug)]
pub struct ComponentConfig {
    path: String,
    value: Value,
}

impl ComponentConfig {
    /// A section found at `path` (`exporters::load_balancing::protocol::otlp`).
    pub fn new(path: impl Into<String>, value: Value) -> Self {
        ComponentConfig { path: path.into(), value }
    }

    /// The value, as written.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The config path of this component, e.g. `exporters::otlp_grpc`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Decodes the typed config; an empty or absent body takes the defaults.
    pub fn decode<T: DeserializeOwned + Validate>(&self) -> Result<T, ConfigErrors> {
        let decoded: T = self.value.deserialize().map_err(|err| ConfigErrors::from_figment(&self.path, err))?;
        let problems = decoded.validate();
        if problems.is_empty() {
            Ok(decoded)
        } else {
            Err(ConfigErrors::new(
                problems
                    .into_iter()
                    .map(|(field, message)| ConfigError::new(join_path(&self.path, &field), message))
                    .collect(),
            ))
        }
    }
}

/// Cross-field checks a typed config runs after decoding.
pub trait Validate {
    /// Returns `(field path, message)` for each problem; empty when valid.
    fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A pipeline: the receivers feeding it, its processor chain, its exporters.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Receivers whose data enters this pipeline.
    #[serde(default)]
    pub receivers: Vec<String>,
    /// Processors, run in this order.
    #[serde(default)]
    pub processors: Vec<String>,
    /// Exporters that get the pipeline's output.
    #[serde(default)]
    pub exporters: Vec<String>,
}

/// A pipeline whose references were checked.
#[derive(Clone, Debug)]
pub struct CheckedPipeline {
    /// The pipeline id.
    pub id: PipelineId,
    /// Receivers and connectors feeding it, in config order.
    pub receivers: Vec<ComponentId>,
    /// Processors, in config order.
    pub processors: Vec<ComponentId>,
    /// Exporters and connectors it feeds, in config order.
    pub exporters: Vec<ComponentId>,
}

/// A parsed config file, with each component's body still to be decoded.
#[derive(Debug, Default)]
pub struct RawConfig {
    /// `receivers:` by id.
    pub receivers: BTreeMap<ComponentId, ComponentConfig>,
    /// `processors:` by id.
    pub processors: BTreeMap<ComponentId, ComponentConfig>,
    /// `exporters:` by id.
    pub exporters: BTreeMap<ComponentId, ComponentConfig>,
    /// `connectors:` by id.
    pub connectors: BTreeMap<ComponentId, ComponentConfig>,
    /// `extensions:` by id.
    pub extensions: BTreeMap<ComponentId, ComponentConfig>,
    /// `service::extensions`: the extensions to start, in order.
    pub service_extensions: Vec<ComponentId>,
    /// `service::pipelines`, as written.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// `service::telemetry`.
    pub telemetry: TelemetryConfig,
    /// Problems found while reading, reported with those of later steps.
    pub problems: Vec<ConfigError>,
    /// What is allowed but likely a mistake (an unset environment variable).
    pub warnings: Vec<ConfigError>,
    /// The whole file after `${env:…}` expansion (`/debug/config` shows it redacted).
    pub effective: Dict,
}

/// Reads a config file; `Err` only when it cannot be read or is not YAML.
pub fn read_file(path: &Path) -> Result<RawConfig, ConfigErrors> {
    let text = std::fs::read(path)
        .map_err(|err| ConfigErrors::one(path.display().to_string(), format!("cannot read the config file: {err}")))?;
    let text = String::from_utf8(text).map_err(|err| {
        ConfigErrors::one(
            "config",
            format!("not UTF-8 text: invalid byte at offset {}", err.utf8_error().valid_up_to()),
        )
    })?;
    read_str_with_env(&text, &|name| std::env::var(name).ok())
}

/// Parses config text with the process environment; every problem is an error.
pub fn load_str(text: &str) -> Result<RawConfig, ConfigErrors> {
    load_str_with_env(text, &|name| std::env::var(name).ok())
}

/// Parses config text, looking environment variables up with `env`; every
/// problem is an error.
pub fn load_str_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigErrors> {
    let mut config = read_str_with_env(text, env)?;
    let problems = std::mem::take(&mut config.problems);
    ConfigErrors::result(problems).map(|()| config)
}

/// Parses config text, looking environment variables up with `env`. `Err`
/// only when the text is not a YAML mapping; other problems are in
/// [`RawConfig::problems`].
pub fn read_str_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<RawConfig, ConfigErrors> {
    yaml::check(text).map_err(|err| ConfigErrors::one("config", err.to_string()))?;
    let mut top: Dict = Figment::from(Yaml::string(text))
        .extract()
        .map_err(|err| ConfigErrors::one("config", yaml_error_message(err)))?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (key, value) in top.iter_mut() {
        expand::expand_env(value, key, env, &mut errors, &mut warnings);
    }
    for key in top.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            errors.push(ConfigError::new(
                key.clone(),
                format!("unknown section; expected one of {}", TOP_LEVEL_KEYS.join(", ")),
            ));
        }
    }

    let mut config = RawConfig {
        receivers: components(&top, ComponentKind::Receiver, &mut errors),
        processors: components(&top, ComponentKind::Processor, &mut errors),
        exporters: components(&top, ComponentKind::Exporter, &mut errors),
        connectors: components(&top, ComponentKind::Connector, &mut errors),
        extensions: components(&top, ComponentKind::Extension, &mut errors),
        ..RawConfig::default()
    };
    match top.get("service") {
        None => errors.push(ConfigError::new("service", "missing; a config needs at least one pipeline")),
        Some(service) => read_service(service, &mut config, &mut errors),
    }
    config.problems = errors;
    config.warnings = warnings;
    config.effective = top;
    Ok(config)
}

fn yaml_error_message(err: figment::Error) -> String {
    format!("not a valid YAML mapping: {}", err.kind)
}

fn components(
    top: &Dict,
    kind: ComponentKind,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<ComponentId, ComponentConfig> {
    let section = kind.section();
    let mut out = BTreeMap::new();
    let dict = match top.get(section) {
        None | Some(Value::Empty(..)) => return out,
        Some(Value::Dict(_, dict)) => dict,
        Some(other) => {
            errors.push(ConfigError::new(
                section,
                format!("expected a mapping of component ids, found {}", describe(other)),
            ));
            return out;
        }
    };
    for (key, value) in dict {
        let path = format!("{section}::{key}");
        match key.parse::<ComponentId>() {
            Ok(id) => {
                let value = match value {
                    // `debug:` with no body takes the defaults.
                    Value::Empty(tag, _) => Value::Dict(*tag, Dict::new()),
                    other => other.clone(),
                };
                out.insert(id, ComponentConfig { path, value });
            }
            Err(err) => errors.push(ConfigError::new(path, err.to_string())),
        }
    }
    out
}

/// The keys `service` may have.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    #[serde(default)]
    pipelines: BTreeMap<String, PipelineConfig>,
    #[serde(default)]
    telemetry: Option<Value>,
    #[serde(default)]
    extensions: Vec<String>,
}

fn read_service(service: &Value, config: &mut RawConfig, errors: &mut Vec<ConfigError>) {
    let section: ServiceSection = match service.deserialize() {
        Ok(section) => section,
        Err(err) => {
            errors.extend(ConfigErrors::from_figment("service", err));
            return;
        }
    };
    for extension in &section.extensions {
        let path = "service::extensions";
        match extension.parse::<ComponentId>() {
            Ok(id) if !config.extensions.contains_key(&id) => {
                errors.push(ConfigError::new(path, format!("`{id}` is not defined under `extensions`")));
            }
            Ok(id) if config.service_extensions.contains(&id) => {
                errors.push(ConfigError::new(path, format!("`{id}` is listed twice")));
            }
            Ok(id) => config.service_extensions.push(id),
            Err(err) => errors.push(ConfigError::new(path, err.to_string())),
        }
    }
    config.pipelines = section.pipelines;
    match &section.telemetry {
        None | Some(Value::Empty(..)) => {}
        Some(telemetry) => match telemetry.deserialize::<TelemetryConfig>() {
            Ok(telemetry) => config.telemetry = telemetry,
            Err(err) => errors.extend(ConfigErrors::from_figment("service::telemetry", err)),
        },
    }
}

impl RawConfig {
    /// Checks every pipeline: its id, that it has receivers and exporters, and
    /// that each component it names is defined (a connector stands in for
    /// a receiver or an exporter). Reports every problem.
    pub fn check_pipelines(&self) -> Result<Vec<CheckedPipeline>, ConfigErrors> {
        let mut errors = Vec::new();
        for (kind, section) in [(ComponentKind::Receiver, &self.receivers), (ComponentKind::Exporter, &self.exporters)]
        {
            for id in section.keys().filter(|id| self.connectors.contains_key(*id)) {
                errors.push(ConfigError::new(
                    format!("connectors::{id}"),
                    format!(
                        "`{id}` is also defined under `{}`; a pipeline could not tell which one it names",
                        kind.section()
                    ),
                ));
            }
        }
        let mut pipelines = Vec::new();
        if self.pipelines.is_empty() {
            errors.push(ConfigError::new(
                "service::pipelines",
                "no pipeline is defined; add e.g. `logs: {receivers: [otlp], exporters: [debug]}`",
            ));
        }
        for (name, pipeline) in &self.pipelines {
            let path = format!("service::pipelines::{name}");
            let id = match name.parse::<PipelineId>() {
                Ok(id) => Some(id),
                Err(err) => {
                    errors.push(ConfigError::new(path.clone(), err.to_string()));
                    None
                }
            };
            let receivers = resolve_refs(
                &path,
                ComponentKind::Receiver,
                &pipeline.receivers,
                &[&self.receivers, &self.connectors],
                &mut errors,
            );
            let processors =
                resolve_refs(&path, ComponentKind::Processor, &pipeline.processors, &[&self.processors], &mut errors);
            let exporters = resolve_refs(
                &path,
                ComponentKind::Exporter,
                &pipeline.exporters,
                &[&self.exporters, &self.connectors],
                &mut errors,
            );
            if pipeline.receivers.is_empty() {
                errors.push(ConfigError::new(format!("{path}::receivers"), "a pipeline needs at least one receiver"));
            }
            if pipeline.exporters.is_empty() {
                errors.push(ConfigError::new(format!("{path}::exporters"), "a pipeline needs at least one exporter"));
            }
            if let Some(id) = id {
                pipelines.push(CheckedPipeline { id, receivers, processors, exporters });
            }
        }
        ConfigErrors::result(errors).map(|()| pipelines)
    }
}

fn resolve_refs(
    pipeline_path: &str,
    kind: ComponentKind,
    names: &[String],
    defined: &[&BTreeMap<ComponentId, ComponentConfig>],
    errors: &mut Vec<ConfigError>,
) -> Vec<ComponentId> {
    let section = kind.section();
    let path = format!("{pipeline_path}::{section}");
    let sections = if defined.len() > 1 { format!("`{section}` or `connectors`") } else { format!("`{section}`") };
    let mut resolved: Vec<ComponentId> = Vec::new();
    for name in names {
        match name.parse::<ComponentId>() {
            Ok(id) if !defined.iter().any(|section| section.contains_key(&id)) => {
                errors.push(ConfigError::new(path.clone(), format!("`{id}` is not defined under {sections}")))
            }
            Ok(id) if resolved.contains(&id) => {
                errors.push(ConfigError::new(path.clone(), format!("`{id}` is listed twice")));
            }
            Ok(id) => resolved.push(id),
            Err(err) => errors.push(ConfigError::new(path.clone(), err.to_string())),
        }
    }
    resolved
}

fn join_path(prefix: &str, field: &str) -> String {
    if field.is_empty() { prefix.to_owned() } else { format!("{prefix}::{field}") }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(..) | Value::Char(..) => "a string",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "nothing",
        Value::Dict(..) => "a mapping",
        Value::Array(..) => "a list",
    }
}

#[cfg(test)]
mod tests;
