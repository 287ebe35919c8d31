//! Config errors: each with the path of what is wrong, reported together.

use std::fmt;

/// One problem in the config, at a path like `exporters::otlp_grpc::timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: section, component id and field names joined by `::`.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in a config, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Wraps a list of problems.
    pub fn new(errors: Vec<ConfigError>) -> Self {
        ConfigErrors(errors)
    }

    /// A single problem.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError::new(path, message)])
    }

    /// `Ok(())` when `errors` is empty.
    pub fn result(errors: Vec<ConfigError>) -> Result<(), ConfigErrors> {
        if errors.is_empty() { Ok(()) } else { Err(ConfigErrors(errors)) }
    }

    /// Converts figment's errors (each with its key path) below `prefix`.
    pub fn from_figment(prefix: &str, err: figment::Error) -> Self {
        ConfigErrors(
            err.into_iter()
                .map(|err| {
                    let mut path = prefix.to_owned();
                    for key in &err.path {
                        path.push_str("::");
                        path.push_str(key);
                    }
                    ConfigError::new(path, err.kind.to_string())
                })
                .collect(),
        )
    }

    /// The problems.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Extend<ConfigError> for ConfigErrors {
    fn extend<I: IntoIterator<Item = ConfigError>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(f, "{count} error{} in the config:", if count == 1 { "" } else { "s" })?;
        for err in &self.0 {
            write!(f, "\n  {err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
