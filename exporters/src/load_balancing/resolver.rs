//! Where the backends come from: a fixed list, a DNS name looked up again
//! and again, or a Kubernetes Service's endpoints. Each resolver sends the
//! current list (sorted `host:port`s) whenever it changes; an empty or
//! failed answer keeps the last list, so data waits for its backends
//! instead of having nowhere to go.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use flowtel_core::self_telemetry::{Counter, LogLimiter, MetricsRegistry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{DnsResolver, ResolverConfig, StaticResolver};

/// The port of a backend named without one.
const DEFAULT_PORT: u16 = 4317;

/// `host:port` as an endpoint: IPv6 addresses in brackets.
fn endpoint(address: SocketAddr) -> String {
    address.to_string()
}

/// Outcomes of lookups, for flowtel's own metrics.
#[derive(Clone)]
pub(super) struct Resolutions {
    succeeded: Counter,
    failed: Counter,
}

impl Resolutions {
    pub(super) fn new(registry: &MetricsRegistry, exporter: &str) -> Self {
        let counter = |result: &str| {
            registry.counter(
                "flowtel_load_balancing_resolutions_total",
                "Lookups of a load_balancing exporter's backends, by result.",
                &[("exporter", exporter), ("result", result)],
            )
        };
        Resolutions { succeeded: counter("success"), failed: counter("failure") }
    }

    /// Counts one lookup.
    pub(super) fn record(&self, succeeded: bool) {
        if succeeded { self.succeeded.inc() } else { self.failed.inc() }
    }
}

/// Publishes `found` unless it is empty or unchanged.
pub(super) fn publish(backends: &watch::Sender<Vec<String>>, found: BTreeSet<String>) {
    if found.is_empty() {
        return;
    }
    let found: Vec<String> = found.into_iter().collect();
    backends.send_if_modified(|current| {
        let changed = *current != found;
        if changed {
            current.clone_from(&found);
        }
        changed
    });
}

/// Runs the configured resolver until `stop`.
pub(super) async fn run(
    config: ResolverConfig,
    backends: watch::Sender<Vec<String>>,
    resolutions: Resolutions,
    stop: CancellationToken,
) {
    if let Some(list) = config.static_list {
        publish(&backends, static_backends(&list));
        resolutions.record(true);
    } else if let Some(dns) = config.dns {
        let warning = LogLimiter::default();
        loop {
            match lookup(&dns).await {
                Ok(found) => {
                    resolutions.record(true);
                    if found.is_empty() && warning.due() {
                        tracing::warn!(hostname = %dns.hostname, "The load_balancing exporter's name has no address; keeping the last backends.");
                    }
                    publish(&backends, found);
                }
                Err(error) => {
                    resolutions.record(false);
                    if warning.due() {
                        tracing::warn!(hostname = %dns.hostname, %error, "Cannot resolve the load_balancing exporter's backends; keeping the last ones.");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(dns.interval) => {}
                () = stop.cancelled() => return,
            }
        }
    } else if let Some(k8s) = config.k8s {
        super::k8s::watch(k8s, &backends, &resolutions, &stop).await;
        return;
    }
    stop.cancelled().await;
}

fn static_backends(list: &StaticResolver) -> BTreeSet<String> {
    list.hostnames
        .iter()
        .map(|host| if has_port(host) { host.clone() } else { format!("{host}:{DEFAULT_PORT}") })
        .collect()
}

/// Whether `host` ends in a port (`a:4317`, `[::1]:4317`, not `::1`).
fn has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        Some((before, port)) => port.parse::<u16>().is_ok() && (!before.contains(':') || before.ends_with(']')),
        None => false,
    }
}

async fn lookup(dns: &DnsResolver) -> Result<BTreeSet<String>, String> {
    let resolving = tokio::net::lookup_host((dns.hostname.as_str(), dns.port));
    match tokio::time::timeout(dns.timeout, resolving).await {
        Ok(Ok(addresses)) => Ok(addresses.map(endpoint).collect()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {:?}", dns.timeout)),
    }
}

/// The endpoints for `addresses` on every one of `ports`.
pub(super) fn endpoints_on(addresses: &[std::net::IpAddr], ports: &[u16]) -> BTreeSet<String> {
    addresses
        .iter()
        .flat_map(|address| ports.iter().map(move |port| endpoint(SocketAddr::new(*address, *port))))
        .collect()
}

/// How long to wait before watching again after the API server failed.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_hostnames_get_the_default_port() {
        let list = StaticResolver { hostnames: vec!["a".into(), "b:1234".into(), "[::1]:5".into(), "[::1]".into()] };
        let found: Vec<String> = static_backends(&list).into_iter().collect();
        assert_eq!(found, ["[::1]:4317", "[::1]:5", "a:4317", "b:1234"]);
    }
}
