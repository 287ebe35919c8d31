//! A real Kubernetes API server for tests: Debian's etcd and the
//! kube-apiserver that `cargo xtask setup` builds from Debian's source, both
//! on free loopback ports, stopped (and their data removed) on drop. No
//! controllers run, so a test creates every object itself.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{DaemonSet, ReplicaSet},
        core::v1::{ConfigMap, Namespace, Node, Pod, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    serde::{Serialize, de::DeserializeOwned},
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::{Value, json};

use crate::{free_port, process::Child, tls::TestPki, wait_for};

/// The kube-apiserver `cargo xtask setup` builds.
pub fn kube_apiserver_bin() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let path = home.join(".cache/flowtel/kubernetes/kube-apiserver");
    assert!(path.exists(), "{} is missing: run `cargo xtask setup`", path.display());
    path
}

/// A pod to create: where it runs, its address and its controller.
pub struct TestPod<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// `spec.nodeName`.
    pub node: &'a str,
    /// `status.podIP`.
    pub ip: &'a str,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// The controller's kind and name.
    pub owner: Option<(&'a str, &'a str)>,
    /// `metadata.labels`.
    pub labels: Value,
}

/// A YAML manifest file as JSON.
pub fn read_manifest(file: &Path) -> Value {
    figment::Figment::from(<figment::providers::Yaml as figment::providers::Format>::file_exact(file))
        .extract()
        .unwrap_or_else(|err| panic!("{}: {err}", file.display()))
}

/// The id of the one container of a pod made by [`KubeApiServer::create_pod`]:
/// 64 hex digits, as runtimes make them, from the pod's name.
pub fn container_id_of(pod: &str) -> String {
    let hex: String = pod.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0<64}")[..64].to_owned()
}

/// etcd and an API server, with a kubeconfig for an all-powerful test user.
pub struct KubeApiServer {
    /// The kubeconfig flowtel and the test use: a user who may do anything.
    pub kubeconfig: PathBuf,
    /// A kubeconfig of the service account `flowtel/flowtel`, which may do
    /// only what RBAC objects grant it.
    pub service_account_kubeconfig: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: Client,
    server_args: Vec<String>,
    starts: usize,
    // Dropped in this order: the server before its store.
    apiserver: Option<Child>,
    etcd: Child,
    dir: tempfile::TempDir,
}

const TOKEN: &str = "flowtel-test-token";

/// The token of the service account `flowtel/flowtel`, which may do only
/// what RBAC objects grant it.
const SERVICE_ACCOUNT_TOKEN: &str = "flowtel-service-account-token";

/// A kubeconfig for `server` with the CA at `ca` and a bearer `token`.
fn kubeconfig(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {}\n\
         users:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n",
        ca.display()
    )
}

impl KubeApiServer {
    /// Starts etcd and the API server and waits until the server answers.
    pub fn start() -> KubeApiServer {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Child::spawn(
            "etcd",
            Command::new("etcd")
                .args(["--name", "flowtel-test", "--data-dir"])
                .arg(path("etcd"))
                .args(["--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("flowtel-test={peer_url}")]),
            &path("etcd.log"),
        );
        let pki = TestPki::new(dir.path());
        // The key service account tokens are signed with, and its public half.
        let service_account = rcgen::KeyPair::generate().unwrap();
        std::fs::write(path("sa.key"), service_account.serialize_pem()).unwrap();
        std::fs::write(path("sa.pub"), service_account.public_key_pem()).unwrap();
        std::fs::write(
            path("tokens.csv"),
            format!(
                "{TOKEN},flowtel-test,1,\"system:masters\"\n\
                 {SERVICE_ACCOUNT_TOKEN},system:serviceaccount:flowtel:flowtel,2,\"system:serviceaccounts,system:serviceaccounts:flowtel\"\n"
            ),
        )
        .unwrap();
        let flag = |name: &str, value: &Path| format!("--{name}={}", value.display());
        let server_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            "--insecure-port=0".into(),
            format!("--secure-port={api_port}"),
            flag("cert-dir", &path("certs")),
            flag("tls-cert-file", &pki.server_cert),
            flag("tls-private-key-file", &pki.server_key),
            flag("token-auth-file", &path("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            flag("service-account-key-file", &path("sa.pub")),
            flag("service-account-signing-key-file", &path("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            // Without controllers the default would loop on loopback endpoints,
            // and nothing would create the `default` service account.
            "--endpoint-reconciler-type=none".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            // As clusters run it: node agents (flowtel's DaemonSet) are privileged.
            "--allow-privileged=true".into(),
        ];
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig_path = path("kubeconfig.yaml");
        std::fs::write(&kubeconfig_path, kubeconfig(&server, &pki.ca, TOKEN)).unwrap();
        let service_account_kubeconfig = path("service-account-kubeconfig.yaml");
        std::fs::write(&service_account_kubeconfig, kubeconfig(&server, &pki.ca, SERVICE_ACCOUNT_TOKEN)).unwrap();
        let kubeconfig = kubeconfig_path;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = runtime.block_on(async {
            let file = Kubeconfig::read_from(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.unwrap();
            Client::try_from(config).unwrap()
        });
        let mut server = KubeApiServer {
            kubeconfig,
            service_account_kubeconfig,
            runtime,
            client,
            server_args,
            starts: 0,
            apiserver: None,
            etcd,
            dir,
        };
        server.start_server();
        server
    }

    /// Starts the API server (again, after [`KubeApiServer::kill_server`]:
    /// same port, same store) and waits until it answers.
    pub fn start_server(&mut self) {
        self.starts += 1;
        let log = self.dir.path().join(format!("kube-apiserver-{}.log", self.starts));
        self.apiserver =
            Some(Child::spawn("kube-apiserver", Command::new(kube_apiserver_bin()).args(&self.server_args), &log));
        wait_for(Duration::from_secs(60), "the API server to answer", || {
            self.etcd.assert_running();
            self.apiserver.as_mut()?.assert_running();
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            self.runtime.block_on(namespaces.get_opt("default")).ok().flatten().map(|_| ())
        });
    }

    /// Kills the API server, as a crash or a lost node would (etcd keeps
    /// the objects; a graceful stop would wait for open watches).
    pub fn kill_server(&mut self) {
        if let Some(mut server) = self.apiserver.take() {
            server.kill();
        }
    }

    /// Creates an object from its JSON through `api`, failing the test with
    /// the server's answer when it is refused.
    fn create_with<K>(&self, api: Api<K>, object: Value)
    where
        K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let typed: K = serde_json::from_value(object.clone()).unwrap_or_else(|err| panic!("{object}: {err}"));
        if let Err(err) = self.runtime.block_on(api.create(&PostParams::default(), &typed)) {
            panic!("creating {object}: {err}");
        }
    }

    /// Creates a namespaced object (in `metadata.namespace`, else `default`) from its JSON.
    pub fn create<K>(&self, object: Value)
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
        self.create_with(Api::<K>::namespaced(self.client.clone(), &namespace), object);
    }

    /// Creates a namespaced object of any kind the server serves, by its
    /// `apiVersion` and `kind` (the plural guessed as the API does:
    /// `deployments`, `poddisruptionbudgets`); the server validates it.
    pub fn create_dynamic(&self, object: Value) {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or_default();
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(group, version, kind));
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_owned();
        let api = Api::<kube::api::DynamicObject>::namespaced_with(self.client.clone(), &namespace, &resource);
        let typed: kube::api::DynamicObject =
            serde_json::from_value(object.clone()).unwrap_or_else(|err| panic!("{object}: {err}"));
        if let Err(err) = self.runtime.block_on(api.create(&PostParams::default(), &typed)) {
            panic!("creating {object}: {err}");
        }
    }

    /// Creates the objects of a `kind: List` YAML or JSON file, as `kubectl
    /// apply` would.
    pub fn apply_list(&self, file: &Path) {
        let list = read_manifest(file);
        for item in list["items"].as_array().unwrap() {
            let (client, item) = (self.client.clone(), item.clone());
            match item["kind"].as_str().unwrap() {
                "Namespace" => self.create_with(Api::<Namespace>::all(client), item),
                "ServiceAccount" => self.create::<ServiceAccount>(item),
                "ClusterRole" => self.create_with(Api::<ClusterRole>::all(client), item),
                "ClusterRoleBinding" => self.create_with(Api::<ClusterRoleBinding>::all(client), item),
                "ConfigMap" => self.create::<ConfigMap>(item),
                "DaemonSet" => self.create::<DaemonSet>(item),
                _ => self.create_dynamic(item),
            }
        }
    }

    /// Creates a namespace.
    pub fn create_namespace(&self, name: &str, labels: Value) {
        self.create_with(
            Api::<Namespace>::all(self.client.clone()),
            json!({"metadata": {"name": name, "labels": labels}}),
        );
    }

    /// Creates ReplicaSet `name` of Deployment `deployment` in `namespace`,
    /// selecting (and templating) pods labelled `app=<app>`.
    pub fn create_replica_set(&self, namespace: &str, name: &str, deployment: &str, app: &str) {
        let template =
            json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "main", "image": "app:1"}]}});
        self.create::<ReplicaSet>(json!({
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "Deployment", "name": deployment, "uid": format!("uid-{deployment}"), "controller": true}]},
            "spec": {"selector": {"matchLabels": {"app": app}}, "template": template},
        }));
    }

    /// Creates a node with these InternalIP addresses (nodes keep the
    /// status they are created with).
    pub fn create_node(&self, name: &str, addresses: &[&str]) {
        let addresses: Vec<Value> = addresses.iter().map(|a| json!({"type": "InternalIP", "address": a})).collect();
        let node = json!({"metadata": {"name": name}, "status": {"addresses": addresses}});
        self.create_with(Api::<Node>::all(self.client.clone()), node);
    }

    /// Creates a running pod as `pod` describes; its status is written
    /// through `/status`, as a kubelet would. Returns the uid the server gave it.
    pub fn create_pod(&self, pod: &TestPod<'_>) -> String {
        let TestPod { namespace, name, node, ip, host_network, owner, labels } = pod;
        let owners: Vec<Value> = owner
            .map(|(kind, owner)| {
                let api_version = if kind == "ReplicaSet" || kind == "DaemonSet" { "apps/v1" } else { "v1" };
                json!({"apiVersion": api_version, "kind": kind, "name": owner, "uid": format!("uid-{owner}"), "controller": true})
            })
            .into_iter()
            .collect();
        self.create::<Pod>(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owners},
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [{"name": "main", "image": "app:1"}]},
        }));
        // Its one container's id is `container_id_of(<pod>)`.
        let container = json!({"name": "main", "containerID": format!("containerd://{}", container_id_of(name)), "image": "app:1",
            "imageID": "", "ready": true, "restartCount": 0});
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": ip,
            "containerStatuses": [container]}});
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let pod = self.runtime.block_on(pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)));
        pod.unwrap().metadata.uid.unwrap_or_default()
    }

    /// Changes a namespaced object of kind `K` with a JSON merge patch
    /// (lists in it replace the object's).
    pub fn merge_patch<K>(&self, namespace: &str, name: &str, patch: Value)
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        if let Err(err) = self.runtime.block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))) {
            panic!("patching {namespace}/{name} with {patch}: {err}");
        }
    }

    /// Deletes a node.
    pub fn delete_node(&self, name: &str) {
        self.runtime.block_on(Api::<Node>::all(self.client.clone()).delete(name, &DeleteParams::default())).unwrap();
    }

    /// Deletes a pod at once.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace);
        self.runtime
            .block_on(pods.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }))
            .unwrap();
    }
}
