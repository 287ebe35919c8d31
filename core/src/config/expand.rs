//! `${env:VAR}`, `${VAR}` and `${env:VAR:-default}` expansion, as the
//! OpenTelemetry Collector does it: on string values after parsing (so a
//! variable cannot change the YAML structure), `$$` for a literal `$`.
//! A value that is one whole reference takes the type of what it expands to
//! (`port: ${env:PORT}` gives a number); an unset variable without a default
//! expands to the empty string, with a warning naming it and where it is used.

use figment::value::{Num, Value};

use super::ConfigError;

/// Expands references in every string below `value`, in place.
pub(super) fn expand_env(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(tag, text) => match expand_str(text, env) {
            Ok(Expanded { text: expanded, whole_reference, unset }) => {
                for name in unset {
                    warnings.push(ConfigError::new(
                        path,
                        format!("environment variable {name} is not set; it expands to an empty string"),
                    ));
                }
                *value = if whole_reference { typed_scalar(*tag, expanded) } else { Value::String(*tag, expanded) };
            }
            Err(error) => errors.push(ConfigError::new(path, error.to_string())),
        },
        Value::Dict(_, dict) => {
            for (key, child) in dict.iter_mut() {
                expand_env(child, &format!("{path}::{key}"), env, errors, warnings);
            }
        }
        Value::Array(_, items) => {
            for (index, child) in items.iter_mut().enumerate() {
                expand_env(child, &format!("{path}::{index}"), env, errors, warnings);
            }
        }
        _ => {}
    }
}

/// A reference that cannot be expanded.
#[derive(Debug, thiserror::Error)]
enum ExpandError {
    #[error("unterminated `${{` in {text:?}")]
    Unterminated { text: String },
    #[error("unsupported reference `${{{reference}}}`: only `env:` is available")]
    UnsupportedScheme { reference: String },
    #[error("invalid environment variable name {name:?} in `${{{reference}}}`")]
    InvalidName { name: String, reference: String },
}

struct Expanded {
    text: String,
    whole_reference: bool,
    /// Variables referenced without a default that are not set.
    unset: Vec<String>,
}

fn expand_str(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Expanded, ExpandError> {
    if !text.contains('$') {
        return Ok(Expanded { text: text.to_owned(), whole_reference: false, unset: Vec::new() });
    }
    let mut unset = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut references = 0;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| ExpandError::Unterminated { text: text.to_owned() })?;
            match resolve(&body[..end], env)? {
                Some(value) => out.push_str(&value),
                None => unset.push(body[..end].trim().trim_start_matches("env:").to_owned()),
            }
            references += 1;
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    let whole_reference = references == 1 && text.starts_with("${") && text.ends_with('}');
    Ok(Expanded { text: out, whole_reference, unset })
}

/// The value a reference stands for; `None` for an unset variable without a default.
fn resolve(reference: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, ExpandError> {
    let reference = reference.trim();
    let spec = match reference.split_once(':') {
        Some(("env", spec)) => spec,
        Some((scheme, _)) if !scheme.contains('-') => {
            return Err(ExpandError::UnsupportedScheme { reference: reference.to_owned() });
        }
        _ => reference,
    };
    let (name, default) = match spec.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (spec, None),
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ExpandError::InvalidName { name: name.to_owned(), reference: reference.to_owned() });
    }
    match (env(name), default) {
        (Some(value), _) => Ok(Some(value)),
        (None, Some(default)) => Ok(Some(default.to_owned())),
        (None, None) => Ok(None),
    }
}

/// The value a whole reference stands for: numbers and booleans keep their
/// type, as if they had been written in the file.
fn typed_scalar(tag: figment::value::Tag, text: String) -> Value {
    if let Ok(n) = text.parse::<u64>() {
        Value::Num(tag, Num::U64(n))
    } else if let Ok(n) = text.parse::<i64>() {
        Value::Num(tag, Num::I64(n))
    } else if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && text.contains('.')
    {
        Value::Num(tag, Num::F64(f))
    } else if text == "true" || text == "false" {
        Value::Bool(tag, text == "true")
    } else {
        Value::String(tag, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("collector".into()),
            "PORT" => Some("4317".into()),
            _ => None,
        }
    }

    fn expand(text: &str) -> Result<String, String> {
        expand_str(text, &env).map(|e| e.text).map_err(|e| e.to_string())
    }

    #[test]
    fn an_unset_variable_is_named() {
        let expanded = expand_str("${env:HOST}:${env:NOPE}/${ALSO_NOPE}", &env).unwrap();
        assert_eq!(expanded.text, "collector:/");
        assert_eq!(expanded.unset, ["NOPE", "ALSO_NOPE"]);
        let mut value = Value::from("${env:NOPE}".to_owned());
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        expand_env(&mut value, "exporters::x::endpoint", &env, &mut errors, &mut warnings);
        assert!(errors.is_empty());
        assert_eq!(
            warnings[0].to_string(),
            "exporters::x::endpoint: environment variable NOPE is not set; it expands to an empty string"
        );
    }

    #[test]
    fn all_three_forms_expand() {
        assert_eq!(expand("${env:HOST}:${PORT}").as_deref(), Ok("collector:4317"));
        assert_eq!(expand("${env:MISSING:-fallback}").as_deref(), Ok("fallback"));
        assert_eq!(expand("${env:HOST:-fallback}").as_deref(), Ok("collector"));
        assert_eq!(expand("${MISSING}").as_deref(), Ok(""));
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(expand("cost $$5 ${PORT}").as_deref(), Ok("cost $5 4317"));
        assert_eq!(expand("$HOST").as_deref(), Ok("$HOST"));
    }

    #[test]
    fn bad_references_are_errors() {
        assert!(expand("${env:HOST").is_err());
        assert!(expand("${env:1BAD}").is_err());
        assert!(expand("${file:/etc/passwd}").is_err());
    }

    #[test]
    fn a_whole_reference_keeps_its_type() {
        let mut value = Value::from("${env:PORT}".to_owned());
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        expand_env(&mut value, "x", &env, &mut errors, &mut warnings);
        assert!(errors.is_empty());
        assert_eq!(value.to_u128(), Some(4317));
        let mut value = Value::from("port ${env:PORT}".to_owned());
        expand_env(&mut value, "x", &env, &mut errors, &mut warnings);
        assert_eq!(value.as_str(), Some("port 4317"));
    }
}
