//! The effective config with its secrets hidden, for `/debug/config`.

use figment::value::{Dict, Value};

/// What a hidden value reads as.
pub const REDACTED: &str = "[REDACTED]";

/// Whether a key names a secret: every header's value, and keys that say
/// password, secret, token, credential, authorization or an API key.
fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "credential", "authorization", "api_key", "apikey", "api-key"]
        .iter()
        .any(|word| key.contains(word))
}

/// `config` as JSON, every secret value replaced by [`REDACTED`].
pub fn redacted(config: &Dict) -> serde_json::Value {
    serde_json::Value::Object(config.iter().map(|(key, value)| (key.clone(), redact(key, value, false))).collect())
}

fn redact(key: &str, value: &Value, under_headers: bool) -> serde_json::Value {
    match value {
        Value::Dict(_, dict) => {
            let headers = key.eq_ignore_ascii_case("headers");
            serde_json::Value::Object(dict.iter().map(|(k, v)| (k.clone(), redact(k, v, headers))).collect())
        }
        Value::Array(_, items) => {
            serde_json::Value::Array(items.iter().map(|v| redact(key, v, under_headers)).collect())
        }
        _ if under_headers || secret_key(key) => serde_json::Value::String(REDACTED.to_owned()),
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use figment::{
        Figment,
        providers::{Format, Yaml},
    };

    use super::*;

    #[test]
    fn headers_tokens_and_keys_are_hidden_and_the_rest_shown() {
        let text = "exporters:\n  otlp_grpc:\n    endpoint: backend:4317\n    headers: {authorization: Bearer abc, x-tenant: t1}\n    tls: {key_file: /etc/key.pem}\n  hubble: {api_key: k1, token_list: [a, b]}\nprocessors:\n  k8s_attributes: {password: p}\n";
        let dict: Dict = Figment::from(Yaml::string(text)).extract().unwrap();
        let shown = redacted(&dict).to_string();
        for secret in ["Bearer abc", "t1", "k1", "\"a\"", "\"p\""] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("backend:4317") && shown.contains("/etc/key.pem"), "{shown}");
    }
}
