//! A real Prometheus server (Debian's package) for the tests: it scrapes
//! one target every second and answers its HTTP query API.

use std::{fs, path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::{free_port, http_get, process::Child, wait_for};

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running Prometheus server scraping one target every second, with
/// exemplar storage on.
pub struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:target` (keeping the target's
    /// own `job` and `instance` labels); waits until it is ready.
    pub fn start(target: u16) -> Prometheus {
        Self::launch(target, None)
    }

    /// [`Prometheus::start`] over HTTPS, trusting the CA in `ca_file`.
    pub fn start_https(target: u16, ca_file: &Path) -> Prometheus {
        Self::launch(target, Some(ca_file))
    }

    fn launch(target: u16, ca_file: Option<&Path>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = match ca_file {
            Some(ca) => format!("    scheme: https\n    tls_config: {{ca_file: '{}'}}\n", ca.display()),
            None => String::new(),
        };
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: flowtel\n    honor_labels: true\n{tls}    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        );
        fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage");
        let child = Child::spawn("prometheus", &mut command, &dir.path().join("prometheus.log"));
        let mut prometheus = Prometheus { child, port, _dir: dir };
        wait_for(Duration::from_secs(30), "Prometheus to be ready", || {
            prometheus.child.assert_running();
            http_get(port, "/-/ready").filter(|(status, _)| *status == 200)
        });
        prometheus
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http_get(self.port, path).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The value of an instant query that returns one sample.
    pub fn query(&self, query: &str) -> Option<f64> {
        let answer = self.get(&format!("/api/v1/query?query={}", percent_encode(query)));
        let result = answer["data"]["result"].as_array()?;
        let [sample] = result.as_slice() else { return None };
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Every series of an instant query's answer: its labels and value.
    pub fn query_vector(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let answer = self.get(&format!("/api/v1/query?query={}", percent_encode(query)));
        let result = answer["data"]["result"].as_array().cloned().unwrap_or_default();
        result
            .into_iter()
            .filter_map(|sample| {
                let value = sample["value"][1].as_str()?.parse().ok()?;
                Some((sample["metric"].clone(), value))
            })
            .collect()
    }

    /// The trace ids of the exemplars an exemplar query returns (the last 10 minutes).
    pub fn exemplar_trace_ids(&self, query: &str) -> Vec<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let answer = self.get(&format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            percent_encode(query),
            now - 600,
            now + 60
        ));
        answer["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|exemplar| exemplar["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect()
    }
}
