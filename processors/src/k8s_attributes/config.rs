//! `processors::k8s_attributes` config, with the collector's names.

use flowtel_core::schema::attr;
use std::{path::PathBuf, time::Duration};

use flowtel_core::config::Validate;
pub use flowtel_core::kube_client::AuthType;
use regex::Regex;
use serde::Deserialize;

/// `processors::k8s_attributes` (alias `k8sattributes`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct K8sAttributesConfig {
    /// How flowtel authenticates to the API server.
    pub auth_type: AuthType,
    /// With `auth_type: kubeConfig`: the kubeconfig file (default: `$KUBECONFIG`,
    /// then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// With `auth_type: kubeConfig`: the context to use (default: the current one).
    pub context: Option<String>,
    /// Talks to no API server: only tags resources with `k8s.pod.ip` (the
    /// connection's address), for a gateway further on to enrich.
    pub passthrough: bool,
    /// Which pods are watched.
    pub filter: FilterConfig,
    /// What is added.
    pub extract: ExtractConfig,
    /// Pods never described (default: `jaeger-agent`, `jaeger-collector`,
    /// as in the collector).
    pub exclude: ExcludeConfig,
    /// How an OTLP resource finds its pod; the first rule that resolves wins.
    /// Empty: `k8s.pod.ip`, then `k8s.pod.uid`, then `container.id`, then the
    /// connection's address.
    pub pod_association: Vec<AssociationRule>,
    /// Fail startup when the metadata has not been listed within
    /// `wait_for_metadata_timeout`.
    pub wait_for_metadata: bool,
    /// How long data may wait for the first complete listing at startup;
    /// after that it passes as it is, so nothing waits longer than this.
    #[serde(with = "humantime_serde")]
    pub wait_for_metadata_timeout: Duration,
}

impl Default for K8sAttributesConfig {
    fn default() -> Self {
        K8sAttributesConfig {
            auth_type: AuthType::ServiceAccount,
            kubeconfig: None,
            context: None,
            passthrough: false,
            filter: FilterConfig::default(),
            extract: ExtractConfig::default(),
            exclude: ExcludeConfig::default(),
            pod_association: Vec::new(),
            wait_for_metadata: false,
            wait_for_metadata_timeout: Duration::from_secs(10),
        }
    }
}

/// `filter`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Watch only the pods of the node named by this environment variable
    /// (for an agent: set it from `spec.nodeName` through the downward API).
    pub node_from_env_var: Option<String>,
    /// Watch only the pods of this node.
    pub node: Option<String>,
    /// Watch only this namespace's pods, ReplicaSets and services.
    pub namespace: Option<String>,
    /// Watch only the pods whose labels match all of these.
    pub labels: Vec<SelectorRule>,
    /// Watch only the pods whose fields (`status.phase`, …) match all of these.
    pub fields: Vec<SelectorRule>,
}

/// One rule of `filter.labels` or `filter.fields`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelectorRule {
    /// The label key or field path.
    pub key: String,
    /// The value compared with (`equals`, `not-equals`).
    #[serde(default)]
    pub value: Option<String>,
    /// How: `equals` (default), `not-equals`, and for labels `exists`, `does-not-exist`.
    #[serde(default)]
    pub op: SelectorOp,
}

/// The operator of a [`SelectorRule`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SelectorOp {
    /// `key=value`.
    #[default]
    Equals,
    /// `key!=value`.
    NotEquals,
    /// The label is set.
    Exists,
    /// The label is not set.
    DoesNotExist,
}

impl SelectorRule {
    /// The rule in the API's selector syntax (`app=web`, `!canary`).
    pub fn selector(&self) -> String {
        let value = self.value.as_deref().unwrap_or_default();
        match self.op {
            SelectorOp::Equals => format!("{}={value}", self.key),
            SelectorOp::NotEquals => format!("{}!={value}", self.key),
            SelectorOp::Exists => self.key.clone(),
            SelectorOp::DoesNotExist => format!("!{}", self.key),
        }
    }
}

/// `extract`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    /// Which attributes are set (names as on a resource; on flow records each
    /// side gets them as `k8s.src.*` / `k8s.dst.*`).
    pub metadata: Vec<String>,
    /// Labels copied into attributes.
    pub labels: Vec<FieldExtract>,
    /// Annotations copied into attributes.
    pub annotations: Vec<FieldExtract>,
    /// A pod annotation `resource.opentelemetry.io/<key>` becomes the
    /// resource attribute `<key>` (OTLP resources only).
    pub otel_annotations: bool,
}

/// `exclude`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExcludeConfig {
    /// Pods whose name matches one of these (whole name, regular expression).
    pub pods: Vec<ExcludedPod>,
}

/// One `exclude.pods` entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExcludedPod {
    /// The pod name, a regular expression matched against the whole name.
    pub name: String,
}

impl Default for ExcludeConfig {
    fn default() -> Self {
        let pods = ["jaeger-agent", "jaeger-collector"].map(|name| ExcludedPod { name: name.into() }).to_vec();
        ExcludeConfig { pods }
    }
}

impl ExcludeConfig {
    /// The pod name patterns, compiled (invalid ones were refused by validation).
    pub fn pod_patterns(&self) -> Vec<Regex> {
        self.pods.iter().filter_map(|pod| Regex::new(&format!("^(?:{})$", pod.name)).ok()).collect()
    }
}

impl Default for ExtractConfig {
    fn default() -> Self {
        let metadata = [
            attr::K8S_POD_NAME,
            attr::K8S_POD_UID,
            attr::K8S_NAMESPACE_NAME,
            attr::K8S_NODE_NAME,
            attr::K8S_OWNER_KIND,
            attr::K8S_OWNER_NAME,
            attr::K8S_DEPLOYMENT_NAME,
            attr::K8S_SERVICE_NAME,
        ];
        ExtractConfig {
            metadata: metadata.map(str::to_owned).to_vec(),
            labels: Vec::new(),
            annotations: Vec::new(),
            otel_annotations: false,
        }
    }
}

/// One label or annotation rule of `extract`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldExtract {
    /// The attribute name; default `k8s.<from>.labels.<key>` (or
    /// `.annotations.`). With `key_regex`, `$1`, `${name}` name its groups.
    #[serde(default)]
    pub tag_name: Option<String>,
    /// The label or annotation key.
    #[serde(default)]
    pub key: Option<String>,
    /// Every key matching this regular expression (whole key); each gets its default name.
    #[serde(default)]
    pub key_regex: Option<String>,
    /// Whose labels: `pod` (default), `namespace` or `node`.
    #[serde(default)]
    pub from: FieldSource,
}

/// Whose labels or annotations a [`FieldExtract`] reads.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FieldSource {
    /// The pod's.
    #[default]
    Pod,
    /// The pod's namespace's.
    Namespace,
    /// The pod's node's.
    Node,
}

impl FieldSource {
    /// The word in default attribute names.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldSource::Pod => "pod",
            FieldSource::Namespace => "namespace",
            FieldSource::Node => "node",
        }
    }
}

/// One `pod_association` rule: all its sources must be present.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssociationRule {
    /// Where the identifying values come from.
    pub sources: Vec<AssociationSource>,
}

/// One source of a [`AssociationRule`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AssociationSource {
    /// `resource_attribute` or `connection`.
    pub from: AssociationFrom,
    /// With `resource_attribute`: the attribute (`k8s.pod.ip`, `k8s.pod.uid`,
    /// `container.id`, `k8s.pod.name` with `k8s.namespace.name`, or any
    /// attribute holding an IP).
    #[serde(default)]
    pub name: Option<String>,
}

/// Where an [`AssociationSource`] reads.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AssociationFrom {
    /// A resource attribute.
    ResourceAttribute,
    /// The peer address of the connection the data arrived on.
    Connection,
}

impl K8sAttributesConfig {
    /// The association rules in force (the defaults when none are configured).
    pub fn association_rules(&self) -> Vec<AssociationRule> {
        if !self.pod_association.is_empty() {
            return self.pod_association.clone();
        }
        let attribute = |name: &str| AssociationRule {
            sources: vec![AssociationSource { from: AssociationFrom::ResourceAttribute, name: Some(name.into()) }],
        };
        vec![
            attribute(attr::K8S_POD_IP),
            attribute(attr::K8S_POD_UID),
            attribute(attr::CONTAINER_ID),
            AssociationRule { sources: vec![AssociationSource { from: AssociationFrom::Connection, name: None }] },
        ]
    }

    /// The label selector of the pod watch (empty: every pod).
    pub fn pod_label_selector(&self) -> String {
        self.filter.labels.iter().map(SelectorRule::selector).collect::<Vec<_>>().join(",")
    }

    /// The field selector of the pod watch: the node, and `filter.fields`.
    pub fn pod_field_selector(&self) -> String {
        let node = self.node_filter().map(|node| format!("spec.nodeName={node}"));
        node.into_iter().chain(self.filter.fields.iter().map(SelectorRule::selector)).collect::<Vec<_>>().join(",")
    }

    /// The node whose pods are watched, if restricted.
    pub fn node_filter(&self) -> Option<String> {
        if let Some(node) = &self.filter.node {
            return Some(node.clone());
        }
        let variable = self.filter.node_from_env_var.as_ref()?;
        std::env::var(variable).ok().filter(|v| !v.is_empty())
    }
}

impl Validate for K8sAttributesConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (index, key) in self.extract.metadata.iter().enumerate() {
            if !super::enrich::metadata_names().any(|known| known == key) {
                problems.push((
                    format!("extract::metadata[{index}]"),
                    format!(
                        "unknown attribute {key:?}; known: {}",
                        super::enrich::metadata_names().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        for (kind, rules) in [("labels", &self.extract.labels), ("annotations", &self.extract.annotations)] {
            for (index, rule) in rules.iter().enumerate() {
                let path = format!("extract::{kind}[{index}]");
                match (&rule.key, &rule.key_regex) {
                    (Some(_), Some(_)) => problems.push((path, "set `key` or `key_regex`, not both".into())),
                    (None, None) => problems.push((path, "needs `key` or `key_regex`".into())),
                    (None, Some(pattern)) => {
                        if let Err(err) = Regex::new(&format!("^(?:{pattern})$")) {
                            problems.push((format!("{path}::key_regex"), err.to_string()));
                        }
                        if rule.tag_name.as_ref().is_some_and(|tag| !tag.contains('$')) {
                            problems.push((
                                format!("{path}::tag_name"),
                                "with `key_regex`, must name a group ($1, ${name}) so that each key gets its own name"
                                    .into(),
                            ));
                        }
                    }
                    (Some(_), None) => {}
                }
            }
        }
        for (index, pod) in self.exclude.pods.iter().enumerate() {
            if let Err(err) = Regex::new(&format!("^(?:{})$", pod.name)) {
                problems.push((format!("exclude::pods[{index}]::name"), err.to_string()));
            }
        }
        for (index, rule) in self.pod_association.iter().enumerate() {
            if rule.sources.is_empty() {
                problems.push((format!("pod_association[{index}]::sources"), "must not be empty".into()));
            }
            for (source_index, source) in rule.sources.iter().enumerate() {
                let path = format!("pod_association[{index}]::sources[{source_index}]");
                match (source.from, &source.name) {
                    (AssociationFrom::ResourceAttribute, None) => {
                        problems.push((format!("{path}::name"), "`from: resource_attribute` needs a `name`".into()));
                    }
                    (AssociationFrom::Connection, Some(_)) => {
                        problems.push((format!("{path}::name"), "`from: connection` takes no `name`".into()));
                    }
                    _ => {}
                }
            }
        }
        if let Some(variable) = &self.filter.node_from_env_var {
            if self.filter.node.is_some() {
                problems
                    .push(("filter::node_from_env_var".into(), "cannot be set together with `filter::node`".into()));
            } else if std::env::var(variable).map_or(true, |v| v.is_empty()) {
                problems.push((
                    "filter::node_from_env_var".into(),
                    format!("the environment variable {variable} is not set (or empty)"),
                ));
            }
        }
        for (kind, rules) in [("labels", &self.filter.labels), ("fields", &self.filter.fields)] {
            for (index, rule) in rules.iter().enumerate() {
                let path = format!("filter::{kind}[{index}]");
                if rule.key.trim().is_empty() {
                    problems.push((format!("{path}::key"), "must not be empty".into()));
                }
                match rule.op {
                    SelectorOp::Equals | SelectorOp::NotEquals if rule.value.is_none() => {
                        problems.push((format!("{path}::value"), "is needed with `equals` and `not-equals`".into()));
                    }
                    SelectorOp::Exists | SelectorOp::DoesNotExist if kind == "fields" => {
                        problems.push((format!("{path}::op"), "fields take only `equals` or `not-equals`".into()));
                    }
                    SelectorOp::Exists | SelectorOp::DoesNotExist if rule.value.is_some() => {
                        problems
                            .push((format!("{path}::value"), "is not used with `exists` or `does-not-exist`".into()));
                    }
                    _ => {}
                }
            }
        }
        if self.kubeconfig.is_some() && self.auth_type != AuthType::KubeConfig {
            problems.push(("kubeconfig".into(), "is only read with `auth_type: kubeConfig`".into()));
        }
        if self.wait_for_metadata_timeout.is_zero() && self.wait_for_metadata {
            problems.push(("wait_for_metadata_timeout".into(), "must be more than 0 with `wait_for_metadata`".into()));
        }
        problems
    }
}
