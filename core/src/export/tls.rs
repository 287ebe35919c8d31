//! `tls` for exporters that connect out.

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
