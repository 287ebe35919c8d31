//! Value types that rule out bad config at decode time.

use std::{fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A listen address, `host:port`: `127.0.0.1:4317`, `[::1]:4317`,
/// `localhost:8888`, or `:4317` for every interface.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// A host and port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort { host: host.into(), port }
    }

    /// The host part, without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves to socket addresses (an empty host means every IPv4 interface).
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let host = if self.host.is_empty() { "0.0.0.0" } else { &self.host };
        Ok(tokio::net::lookup_host((host, self.port)).await?.collect())
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected = "expected `host:port`, e.g. `127.0.0.1:4317` or `[::1]:4317`";
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("{text:?} has no port; {expected}"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                inner.strip_suffix(']').ok_or_else(|| format!("{text:?} has an unclosed `[`; {expected}"))?
            }
            None if host.contains(':') => {
                return Err(format!("{text:?}: an IPv6 host needs brackets; {expected}"));
            }
            None => host,
        };
        if host.contains(['/', ' ', '@']) {
            return Err(format!("{text:?} is not a host name or IP address; {expected}"));
        }
        let port = port.parse::<u16>().map_err(|_| format!("{text:?} has no valid port (0-65535); {expected}"))?;
        Ok(HostPort::new(host, port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!("127.0.0.1:4317".parse(), Ok(HostPort::new("127.0.0.1", 4317)));
        assert_eq!("[::1]:4318".parse(), Ok(HostPort::new("::1", 4318)));
        assert_eq!(":8888".parse(), Ok(HostPort::new("", 8888)));
        assert_eq!(HostPort::new("::1", 1).to_string(), "[::1]:1");
        for bad in ["localhost", "host:99999", "::1:80", "[::1:80", "http://x:1", "h:"] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad} should be refused");
        }
    }
}
