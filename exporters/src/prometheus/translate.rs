//! The collector's translation of OTLP names, units and attributes to
//! Prometheus: dots and other characters to `_`, a unit suffix from the
//! UCUM unit (`By` → `bytes`, `s` → `seconds`, `By/s` →
//! `bytes_per_second`; annotations in braces dropped), `_ratio` for unit
//! `1` gauges; `_total` is the encoder's.

/// A metric or label name with every character outside `[a-zA-Z0-9_]`
/// (and `:` for metrics) as `_`, runs of `_` collapsed, and a leading digit
/// escaped with `_` (metrics) or `key_` (labels).
pub(crate) fn sanitize(name: &str, metric: bool) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        let keep = c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
        let c = if keep { c } else { '_' };
        if c == '_' && out.ends_with('_') && !out.is_empty() {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, if metric { "_" } else { "key_" });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The word of a UCUM unit (`By` → `bytes`), `None` for unknown ones.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

/// The singular word of a unit after `/` (`s` → `second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The suffix a UCUM unit gives a name (`bytes_per_second`), if any.
pub(crate) fn unit_suffix(unit: &str, gauge: bool) -> Option<String> {
    // `{packet}` and the `{…}` parts of `{packet}/s` are annotations.
    let mut clean = String::with_capacity(unit.len());
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth == 0 => clean.push(c),
            _ => {}
        }
    }
    let clean = clean.trim();
    if clean == "1" {
        return gauge.then(|| "ratio".to_owned());
    }
    let (main, per) = match clean.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (clean, None),
    };
    let main = (!main.is_empty()).then(|| unit_word(main).map_or_else(|| sanitize(main, false), str::to_owned));
    let per = per
        .filter(|p| !p.is_empty())
        .map(|p| format!("per_{}", per_unit_word(p).map_or_else(|| sanitize(p, false), str::to_owned)));
    let suffix = match (main, per) {
        (Some(main), Some(per)) => format!("{main}_{per}"),
        (Some(main), None) => main,
        (None, Some(per)) => per,
        (None, None) => return None,
    };
    let suffix = suffix.trim_matches('_').to_owned();
    (!suffix.is_empty()).then_some(suffix)
}

/// A metric's Prometheus name and the unit suffix it ends with.
pub(crate) fn metric_name(
    name: &str,
    unit: &str,
    gauge: bool,
    namespace: Option<&str>,
    suffixes: bool,
) -> (String, Option<String>) {
    let mut full = sanitize(name, true);
    if let Some(namespace) = namespace {
        full = format!("{}_{full}", sanitize(namespace, true));
    }
    // A counter's `_total` is the encoder's; a name that has it already
    // would get it twice.
    if !gauge && let Some(stem) = full.strip_suffix("_total") {
        full = stem.to_owned();
    }
    let suffix = if suffixes { unit_suffix(unit, gauge) } else { None };
    if let Some(suffix) = &suffix
        && !full.ends_with(&format!("_{suffix}"))
        && full != *suffix
    {
        full = format!("{full}_{suffix}");
    }
    let unit = suffix.filter(|suffix| full.ends_with(&format!("_{suffix}")));
    (full, unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_units_translate_as_in_the_collector() {
        assert_eq!(
            metric_name("network.flow.bytes", "By", false, None, true),
            ("network_flow_bytes".into(), Some("bytes".into()))
        );
        assert_eq!(
            metric_name("http.server.request.duration", "s", false, None, true).0,
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("network.packet.drops", "{packet}", false, None, true),
            ("network_packet_drops".into(), None)
        );
        assert_eq!(metric_name("cpu.utilization", "1", true, None, true).0, "cpu_utilization_ratio");
        assert_eq!(
            metric_name("throughput", "By/s", true, Some("flowtel"), true).0,
            "flowtel_throughput_bytes_per_second"
        );
        assert_eq!(metric_name("requests_total", "", false, None, true).0, "requests");
        assert_eq!(metric_name("network.flow.bytes", "By", false, None, false), ("network_flow_bytes".into(), None));
        assert_eq!(metric_name("2xx", "", true, None, true).0, "_2xx");
    }

    #[test]
    fn labels_lose_dots_and_leading_digits() {
        assert_eq!(sanitize("k8s.src.namespace.name", false), "k8s_src_namespace_name");
        assert_eq!(sanitize("2fa", false), "key_2fa");
        assert_eq!(sanitize("a..b", false), "a_b");
    }
}
