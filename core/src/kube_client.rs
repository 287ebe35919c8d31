//! A client for the Kubernetes API server, reached as the collector's
//! Kubernetes components configure it (`auth_type`, `kubeconfig`,
//! `context`): shared by `k8s_attributes` and the `load_balancing`
//! exporter's `k8s` resolver.

use std::path::Path;

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::Deserialize;

/// `auth_type`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum AuthType {
    /// In-cluster address, no credentials.
    #[serde(rename = "none")]
    None,
    /// In-cluster address and the pod's service account token.
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// A kubeconfig file.
    #[serde(rename = "kubeConfig")]
    KubeConfig,
}

/// A client for the API server, reached as `auth_type` says.
pub async fn client(
    auth_type: AuthType,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, ClientError> {
    let kube_config = match auth_type {
        AuthType::ServiceAccount => kube::Config::incluster().map_err(ClientError::NotInPod)?,
        AuthType::None => {
            let mut in_cluster = kube::Config::incluster_env().map_err(ClientError::NotInPod)?;
            in_cluster.auth_info = Default::default();
            in_cluster
        }
        AuthType::KubeConfig => {
            let file = match kubeconfig {
                Some(path) => Kubeconfig::read_from(path)
                    .map_err(|source| ClientError::ReadKubeconfig { path: format!(" {}", path.display()), source })?,
                None => {
                    Kubeconfig::read().map_err(|source| ClientError::ReadKubeconfig { path: String::new(), source })?
                }
            };
            let options = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
            kube::Config::from_custom_kubeconfig(file, &options).await.map_err(ClientError::UseKubeconfig)?
        }
    };
    Client::try_from(kube_config).map_err(ClientError::Build)
}

/// Why no API server client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `service_account` or `none` outside a pod.
    #[error("not running in a Kubernetes pod: {0}")]
    NotInPod(kube::config::InClusterError),
    /// The kubeconfig cannot be read (` <path>` when one was named).
    #[error("cannot read the kubeconfig{path}: {source}")]
    ReadKubeconfig {
        /// ` <path>`, or empty for the default.
        path: String,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig cannot be used (context, credentials).
    #[error("cannot use the kubeconfig: {0}")]
    UseKubeconfig(kube::config::KubeconfigError),
    /// The client cannot be built from the config.
    #[error("cannot build a Kubernetes client: {0}")]
    Build(kube::Error),
}
