//! The integration-test harness. Every test runs against the real local control plane
//! (`hack/cluster up`), in a namespace of its own that is removed afterwards, and
//! waits on conditions with a deadline, never on fixed sleeps.

use std::{fmt::Debug, future::Future, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config, Resource, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use petset_operator::{
    controller::{self, Settings},
    metrics::Metrics,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// How long a test waits for the cluster to reach a state before it fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The kubeconfig of the local plane: `KUBECONFIG`, else `.cluster/kubeconfig`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cluster/kubeconfig"))
}

pub async fn client() -> anyhow::Result<Client> {
    Ok(Client::try_from(config().await?)?)
}

/// The local plane's client configuration, to build a client of one's own.
pub async fn config() -> anyhow::Result<Config> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading {} (is the local plane up? run `hack/cluster up`)", path.display()))?;
    Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

/// One test's namespace and client.
#[derive(Clone)]
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

impl TestNs {
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn pods(&self) -> Api<Pod> {
        self.api()
    }

    /// Creates `obj` (YAML) in this namespace.
    pub async fn create<K>(&self, yaml: &str) -> anyhow::Result<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + serde::Serialize + Debug,
        K::DynamicType: Default,
    {
        let obj: K = serde_saphyr::from_str(yaml).context("parsing the test's YAML")?;
        Ok(self.api::<K>().create(&PostParams::default(), &obj).await?)
    }
}

/// The operator, running in this test's process and watching only its namespaces, so
/// tests are isolated and can stop, restart or inspect their own controller. Stops
/// when dropped.
pub struct Operator {
    handle: tokio::task::JoinHandle<()>,
    pub metrics: Arc<Metrics>,
    pub ready: watch::Receiver<bool>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A namespace every test's operator watches besides the test's own, so the core tests
/// run in the chart's `watchNamespaces` mode (`--namespaces a,b`): a second namespace's
/// lists and relists must never hide the test's objects. It holds no PetSet, so the
/// operators of concurrent tests never share work.
const COMPANION_NAMESPACE: &str = "petset-tests-companion";

async fn ensure_companion(client: &Client) -> anyhow::Result<()> {
    static CREATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    CREATED
        .get_or_try_init(|| async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns = Namespace {
                metadata: ObjectMeta { name: Some(COMPANION_NAMESPACE.into()), ..Default::default() },
                ..Default::default()
            };
            match namespaces.create(&PostParams::default(), &ns).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(anyhow::Error::from(e).context("creating the companion namespace")),
            }
        })
        .await?;
    Ok(())
}

impl TestNs {
    /// The operator of this test, watching its namespace and the companion namespace.
    pub async fn start_operator(&self) -> Operator {
        ensure_companion(&self.client).await.expect("the companion namespace");
        Operator::start(self.client.clone(), vec![self.name.clone(), COMPANION_NAMESPACE.into()], Arc::default())
    }

    /// The operator with another client (another identity's permissions).
    pub async fn start_operator_with(&self, client: Client) -> Operator {
        Operator::start(client, vec![self.name.clone()], Arc::default())
    }
}

/// One operator watching all of `namespaces` (`--namespaces a,b`), with the first's client.
pub async fn start_operator_in(namespaces: &[&TestNs]) -> Operator {
    let names = namespaces.iter().map(|ns| ns.name.clone()).collect();
    Operator::start(namespaces[0].client.clone(), names, Arc::default())
}

impl Operator {
    /// The operator of `namespaces`, with `client` (built with layers of the test's
    /// own, say), reporting to `metrics`.
    pub fn start(client: Client, namespaces: Vec<String>, metrics: Arc<Metrics>) -> Operator {
        let (ready_tx, ready) = watch::channel(false);
        let settings = Settings { namespaces, ..Settings::default() };
        let handle = tokio::spawn(controller::run(client, settings, metrics.clone(), ready_tx, std::future::pending()));
        Operator { handle, metrics, ready }
    }
}

/// Installs (or updates) the PetSet CRD and waits until it is served.
async fn ensure_crd(client: &Client) -> anyhow::Result<()> {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_try_init(|| async {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let crd = petset_crd::crd();
            let name = crd.name_any();
            crds.patch(&name, &PatchParams::apply("petset-tests").force(), &Patch::Apply(&crd)).await?;
            wait_for(&crds, &name, "Established", TIMEOUT, |c| {
                c.and_then(|c| c.status.as_ref())
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
            })
            .await?;
            anyhow::Ok(())
        })
        .await?;
    Ok(())
}

/// Runs `body` in a fresh namespace named after the test, and deletes the namespace
/// afterwards whether the body passed, failed or panicked.
pub async fn in_namespace<F, Fut>(test: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(TestNs) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    in_namespaces(&[test], |mut all| body(all.pop().expect("one namespace"))).await
}

/// Runs `body` with one fresh namespace per name in `tests`, and deletes them all
/// afterwards whether the body passed, failed or panicked.
pub async fn in_namespaces<F, Fut>(tests: &[&str], body: F) -> anyhow::Result<()>
where
    F: FnOnce(Vec<TestNs>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let client = client().await?;
    ensure_crd(&client).await?;
    let suffix: String = format!("{:x}", rand_u32());
    let names: Vec<String> = tests
        .iter()
        .map(|test| format!("{}-{suffix}", test.replace('_', "-").chars().take(50).collect::<String>()))
        .collect();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let created = futures::future::join_all(names.iter().map(|name| {
        let ns =
            Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        let (namespaces, client) = (namespaces.clone(), client.clone());
        async move {
            namespaces.create(&PostParams::default(), &ns).await.context("creating a test namespace")?;
            // Pods are refused until the namespace's default ServiceAccount exists.
            let accounts: Api<ServiceAccount> = Api::namespaced(client, &ns.name_any());
            wait_for(&accounts, "default", "created", TIMEOUT, |a| a.is_some()).await
        }
    }))
    .await;
    let result = match created.into_iter().collect::<anyhow::Result<Vec<_>>>() {
        Ok(_) => {
            let all = names.iter().map(|name| TestNs { client: client.clone(), name: name.clone() }).collect();
            std::panic::AssertUnwindSafe(body(all)).catch_unwind().await
        }
        Err(e) => Ok(Err(e)),
    };
    for name in &names {
        let _ = namespaces.delete(name, &DeleteParams::background()).await;
    }
    match result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

/// Waits until the object `name` satisfies `cond` (given `None` while it is absent),
/// for at most `timeout`. On failure the error says what it waited for and shows the
/// object as last seen.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Fn(Option<&K>) -> bool,
) -> anyhow::Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
{
    wait_until(&format!("{name}: {what}"), timeout, || async {
        let obj = api.get_opt(name).await?;
        if cond(obj.as_ref()) {
            return Ok(obj);
        }
        let shown = match &obj {
            Some(o) => serde_saphyr::to_string(o).unwrap_or_default(),
            None => "(absent)".into(),
        };
        bail!("not yet; the object as last seen:\n{shown}")
    })
    .await
}

/// Calls `check` until it returns Ok, backing off up to half a second between calls,
/// for at most `timeout`; the error carries the last complaint `check` made.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut backoff = Duration::from_millis(50);
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("timed out after {timeout:?} waiting for {what}; last: {e:#}")
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub mod audit;
pub mod faults;
pub mod fixtures;
pub mod history;
pub mod process;
pub mod timeline;

/// Runs a command (kubectl or helm from `hack/cluster env`'s PATH) with the local
/// plane's kubeconfig, feeding it `stdin`; fails with its output when it fails.
pub async fn run_tool(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {program} (is `hack/cluster env` on PATH?)"))?;
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await?;
    }
    drop(input);
    let out = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("{program} {}: {}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr), stdout);
    }
    Ok(stdout)
}

/// The chart's directory.
pub fn chart() -> String {
    format!("{}/../charts/petset-operator", env!("CARGO_MANIFEST_DIR"))
}
