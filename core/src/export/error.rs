//! Why an exporter could not be built from its (validated) config.

use std::path::PathBuf;

use super::tls::TlsFileError;

/// An exporter that cannot be built, saying which setting and why.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `endpoint` does not parse as a URI.
    #[error("{endpoint:?} is not a valid endpoint: {why}")]
    Unparsable {
        /// As configured.
        endpoint: String,
        /// The parser's words.
        why: String,
    },
    /// `endpoint` names a scheme other than http or https.
    #[error("{endpoint:?}: the scheme must be http or https")]
    Scheme {
        /// As configured.
        endpoint: String,
    },
    /// `endpoint` has no host.
    #[error("{endpoint:?} has no host; expected e.g. `collector:4317`")]
    NoHost {
        /// As configured.
        endpoint: String,
    },
    /// A URL setting does not parse.
    #[error("{url:?} is not a valid URL: {why}")]
    UnparsableUrl {
        /// As configured (or derived from `endpoint`).
        url: String,
        /// The parser's words.
        why: String,
    },
    /// A URL that is not http(s) or has no host.
    #[error("{url:?}: expected an http:// or https:// URL with a host")]
    NotHttpUrl {
        /// As configured (or derived from `endpoint`).
        url: String,
    },
    /// A TLS file cannot be read.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// The TLS client refused the settings (`setting` is `tls` or `tls::<file>`).
    #[error("{setting}: {why}")]
    Tls {
        /// Which setting.
        setting: &'static str,
        /// The TLS library's words.
        why: String,
    },
    /// A header name or value is not valid in a request.
    #[error("headers::{name}: {why}")]
    Header {
        /// The header.
        name: String,
        /// Why it is not valid.
        why: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    /// The output file cannot be opened.
    #[error("cannot open {} for writing: {source}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
