//! A config file's text, read as `flowtel validate` reads it: its size,
//! nesting and keys checked, parsed, `${env:…}` references expanded, and
//! its pipelines checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("4317".into()),
        "NESTED" => Some("${env:PORT}".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = flowtel_core::config::load_str_with_env(text, &env) {
        let _ = config.check_pipelines();
    }
});
