use std::collections::BTreeMap;

use super::*;

fn matches(condition: &str, attributes: &[(&str, &str)]) -> bool {
    let map: BTreeMap<&str, &str> = attributes.iter().copied().collect();
    parse(condition).unwrap().matches(&|path| map.get(path).map(|v| (*v).to_owned()))
}

#[test]
fn comparisons_cidrs_ranges_lists_and_regexes() {
    let flow = [
        ("network.transport", "udp"),
        ("source.address", "10.1.2.3"),
        ("destination.address", "fd00::1"),
        ("destination.port", "8053"),
        ("k8s.src.namespace.name", "kube-system"),
    ];
    assert!(matches(r#"network.transport == "udp""#, &flow));
    assert!(!matches(r#"network.transport != "udp""#, &flow));
    assert!(matches("destination.port == 8053", &flow));
    assert!(matches("destination.port >= 8000 and destination.port < 9000", &flow));
    assert!(matches("destination.port in 8000..8100", &flow));
    assert!(!matches("destination.port in 1..1024", &flow));
    assert!(matches("source.address in 10.0.0.0/8", &flow));
    assert!(matches("destination.address in fd00::/8", &flow));
    assert!(matches("destination.address == fd00:0::1", &flow), "addresses compare as addresses");
    assert!(matches(r#"network.transport in ["tcp", "udp"]"#, &flow));
    assert!(matches(r#"k8s.src.namespace.name matches "^kube-""#, &flow));
    assert!(matches("source.address", &flow), "a bare name tests presence");
    assert!(!matches("process.pid", &flow));
    assert!(matches(r#"process.pid != "1""#, &flow), "a missing attribute differs from everything");
    assert!(!matches("process.pid < 10", &flow));
}

#[test]
fn and_binds_tighter_than_or_and_not_negates() {
    let a = [("a", "1"), ("b", "2")];
    assert!(matches("a == 1 or b == 9 and b == 8", &a));
    assert!(!matches("(a == 1 or b == 9) and b == 8", &a));
    assert!(matches("not b == 9", &a));
    assert!(!matches("not (a == 1 and b == 2)", &a));
    assert!(matches(r#"a == "1" and not a == "2""#, &a));
}

#[test]
fn syntax_errors_name_their_column() {
    let error = |text: &str| parse(text).unwrap_err();
    assert_eq!(error("a == ").column, 6);
    assert!(error("a == ").message.contains("expected a value"));
    let e = error(r#"network.transport = "udp""#);
    assert_eq!(e.column, 19);
    let e = error("a in 10.0.0.0/99");
    assert_eq!((e.column, e.message.as_str()), (6, "`10.0.0.0/99` is not a CIDR"));
    let e = error("a in 9..1");
    assert!(e.message.contains("empty"), "{e}");
    let e = error(r#"a matches "(""#);
    assert_eq!(e.column, 11);
    assert!(e.message.contains("regular expression"));
    let e = error("(a == 1");
    assert!(e.message.contains("`)`") && e.column == 8, "{e}");
    let e = error("a == 1 b == 2");
    assert!(e.message.contains("expected `and`, `or`"), "{e}");
    assert_eq!(error("a == udp").message, "`udp` is not a value (quote text: \"udp\")");
    assert!(error(r#"a == "open"#).message.contains("unclosed string"));
    assert!(error("a < \"x\"").message.contains("compares numbers"));
    assert!(error("").message.contains("found the end"));
}

#[test]
fn the_collectors_condition_forms_are_read() {
    let flow = [
        ("destination.port", "53"),
        ("resource.host.name", "noisy"),
        ("severity_number", "9"),
        ("body", "GET /healthz"),
    ];
    assert!(matches(r#"attributes["destination.port"] == 53"#, &flow));
    assert!(matches(r#"log.attributes["destination.port"] in 1..1024"#, &flow));
    assert!(matches(r#"resource.attributes["host.name"] == "noisy""#, &flow));
    assert!(matches(r#"attributes["process.pid"] == nil"#, &flow));
    assert!(!matches(r#"attributes["destination.port"] == nil"#, &flow));
    assert!(matches(r#"attributes["destination.port"] != nil"#, &flow));
    assert!(matches(r#"IsMatch(log.body, "^GET /health")"#, &flow));
    assert!(matches(r#"IsMatch(attributes["destination.port"], "5.") and not IsMatch(body, "POST")"#, &flow));
    assert!(matches("severity_number < SEVERITY_NUMBER_WARN", &flow));
    assert!(!matches("log.severity_number >= SEVERITY_NUMBER_ERROR", &flow));
    let e = parse(r#"scope.attributes["x"] == 1"#).unwrap_err();
    assert_eq!(e.column, 1);
    assert!(e.message.contains("`scope.attributes` cannot be read here"), "{e}");
    let e = parse(r#"x == 1 or Concat(["a"], "") == "a""#).unwrap_err();
    assert_eq!(e.column, 11);
    assert!(e.message.contains("`Concat(…)` is not known"), "{e}");
    let e = parse(r#"IsMatch(body "x")"#).unwrap_err();
    assert!(e.message.contains("expected `,`"), "{e}");
}
