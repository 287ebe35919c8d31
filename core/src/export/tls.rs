//! `tls` for exporters that connect out, and for the servers flowtel runs
//! (the Hubble API, the `prometheus` exporter's scrape endpoint).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::Validate;

/// `tls`: how an exporter secures its connection. As in the collector, an
/// endpoint without `http://` or `https://` uses TLS unless `insecure` is set.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsClientConfig {
    /// Plain text, no TLS.
    pub insecure: bool,
    /// PEM file of the CA that signed the server's certificate (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Server name to verify instead of the endpoint's host.
    pub server_name_override: Option<String>,
}

impl TlsClientConfig {
    /// Reads a configured file, saying which setting named it when it cannot.
    pub fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
        std::fs::read(path).map_err(|source| TlsFileError::Read { field, path: path.to_path_buf(), source })
    }
}

impl Validate for TlsClientConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => problems.push(("key_file".into(), "cert_file is set, so key_file is needed too".into())),
            (None, Some(_)) => {
                problems.push(("cert_file".into(), "key_file is set, so cert_file is needed too".into()))
            }
            _ => {}
        }
        let files = [
            ("ca_file", &self.ca_file, Pem::Certificates),
            ("cert_file", &self.cert_file, Pem::Certificates),
            ("key_file", &self.key_file, Pem::PrivateKey),
        ];
        for (field, path, kind) in files {
            if let Some(path) = path
                && let Err(error) = check_pem(path, kind)
            {
                problems.push((field.into(), error.to_string()));
            }
        }
        problems
    }
}

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file named by setting `field` cannot be read.
    #[error("tls::{field}: cannot read {}: {source}", path.display())]
    Read {
        /// The setting (`ca_file`, …).
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file cannot be read (checked before its setting is known).
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold what it should.
    #[error("{} is not {}: {why}", path.display(), wanted.description())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        wanted: Pem,
        /// What the PEM reader said.
        why: String,
    },
}

/// What a PEM file must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pem {
    /// One or more certificates.
    Certificates,
    /// A private key.
    PrivateKey,
}

impl Pem {
    fn description(self) -> &'static str {
        match self {
            Pem::Certificates => "PEM certificates",
            Pem::PrivateKey => "a PEM private key",
        }
    }
}

/// Checks that `path` is a readable PEM file holding what `kind` says, so a
/// wrong or garbled file is a startup error rather than a failure of every
/// connection later.
pub fn check_pem(path: &Path, kind: Pem) -> Result<(), TlsFileError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let bytes = std::fs::read(path).map_err(|source| TlsFileError::Unreadable { path: path.to_path_buf(), source })?;
    let found = match kind {
        Pem::Certificates => {
            let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
            certificates.map_err(|err| err.to_string()).and_then(|certificates| {
                if certificates.is_empty() { Err("no PEM certificate in it".to_owned()) } else { Ok(()) }
            })
        }
        Pem::PrivateKey => PrivateKeyDer::from_pem_slice(&bytes).map(|_| ()).map_err(|err| err.to_string()),
    };
    found.map_err(|why| TlsFileError::NotPem { path: path.to_path_buf(), wanted: kind, why })
}

/// Makes ring the process's TLS crypto provider (the TLS clients need one);
/// harmless when one is installed already.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server's `tls`: its certificate and key, and optionally the CA that
/// client certificates must chain to (mutual TLS).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTls {
    /// The problems of the files, each under `tls::<field>`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let files = [
            ("tls::cert_file", Some(&self.cert_file), Pem::Certificates),
            ("tls::key_file", Some(&self.key_file), Pem::PrivateKey),
            ("tls::client_ca_file", self.client_ca_file.as_ref(), Pem::Certificates),
        ];
        files
            .into_iter()
            .filter_map(|(field, path, kind)| {
                let path = path?;
                check_pem(path, kind).err().map(|message| (field.to_owned(), message.to_string()))
            })
            .collect()
    }

    /// A rustls server config of these files (HTTP/1.1).
    pub fn rustls_config(&self) -> Result<rustls::ServerConfig, String> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
        install_crypto_provider();
        let read = |field, path: &Path| TlsClientConfig::read(field, path).map_err(|err| err.to_string());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&read("tls::cert_file", &self.cert_file)?)
                .collect::<Result<_, _>>()
                .map_err(|err| format!("tls::cert_file: {err}"))?;
        let key = PrivateKeyDer::from_pem_slice(&read("tls::key_file", &self.key_file)?)
            .map_err(|err| format!("tls::key_file: {err}"))?;
        let builder = rustls::ServerConfig::builder();
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(&read("tls::client_ca_file", ca)?) {
                    let certificate = certificate.map_err(|err| format!("tls::client_ca_file: {err}"))?;
                    roots.add(certificate).map_err(|err| format!("tls::client_ca_file: {err}"))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
                    .build()
                    .map_err(|err| format!("tls::client_ca_file: {err}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|err| format!("tls: {err}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
