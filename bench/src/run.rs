//! The runs: the ceiling once, then for each budget each controller in turn through the
//! five scenarios, each scenario measured over its own window.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, ObjectMeta, PostParams},
};
use serde::Serialize;
use serde_json::json;

use crate::{
    apiserver::{AuditLog, AuditMark, request_latency},
    controllers::{Binaries, Budget, Controller, Running},
    observe::{Observer, Timeline},
    stats::{Histogram, percentile},
    workload,
};

/// How many sets and pods each creation scenario makes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sizes {
    pub burst_sets: u32,
    pub burst_pods: u32,
    pub ordered_sets: u32,
    pub ordered_pods: u32,
}

impl Sizes {
    fn burst(&self) -> usize {
        (self.burst_sets * self.burst_pods) as usize
    }
    fn ordered(&self) -> usize {
        (self.ordered_sets * self.ordered_pods) as usize
    }
}

pub struct Plane {
    pub admin: Client,
    /// The identity of the ceiling's plain client (its own user in the audit log).
    pub plain_client: Client,
    pub audit: AuditLog,
    pub binaries: Binaries,
}

pub const PLAIN_CLIENT: &str = "bench-client";
/// How many requests the plain client keeps in flight.
const PLAIN_CONCURRENCY: usize = 64;

/// One scenario's figures for one controller at one budget.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub scenario: &'static str,
    pub controller: &'static str,
    pub budget: Option<Budget>,
    /// Whether it reached its end; if not, `error` says where it stopped.
    pub done: bool,
    pub error: Option<String>,
    pub seconds: f64,
    /// Pods made Ready (creation), replaced (update) or removed (scale to zero).
    pub pods: u64,
    pub pods_per_second: Option<f64>,
    pub step_ms: Option<Steps>,
    pub writes: u64,
    pub writes_per_pod: Option<f64>,
    pub writes_by_request: BTreeMap<String, u64>,
    pub api_p99_ms: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub peak_memory_mb: Option<f64>,
    /// (seconds since the start, Ready pods of the scenario), for the picture.
    pub ready_over_time: Vec<(f64, u64)>,
}

/// OrderedReady's step: a pod turning Ready to its successor's creation, as seen by
/// one watch.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Steps {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The start of a measurement.
struct Window {
    started: Instant,
    audit: AuditMark,
    latency: Histogram,
    cpu: f64,
}

impl Plane {
    async fn open(&self, controller: Option<&Running>) -> anyhow::Result<Window> {
        let cpu = match controller {
            Some(c) => {
                c.reset_peak();
                c.usage()?.cpu_seconds
            }
            None => 0.0,
        };
        Ok(Window {
            started: Instant::now(),
            audit: self.audit.mark()?,
            latency: request_latency(&self.admin).await?,
            cpu,
        })
    }

    /// Closes a window: the figures every scenario reports, for `user`'s requests.
    async fn close(
        &self,
        window: Window,
        scenario: &'static str,
        controller: &'static str,
        user: &str,
        budget: Option<Budget>,
        running: Option<&Running>,
        outcome: anyhow::Result<()>,
    ) -> anyhow::Result<Measured> {
        let seconds = window.started.elapsed().as_secs_f64();
        let writes_by_request = self.trailing_writes(window.audit, user).await?;
        let latency = request_latency(&self.admin).await?.since(&window.latency);
        let usage = running.map(|r| r.usage()).transpose()?;
        Ok(Measured {
            scenario,
            controller,
            budget,
            done: outcome.is_ok(),
            error: outcome.err().map(|e| format!("{e:#}")),
            seconds,
            pods: 0,
            pods_per_second: None,
            step_ms: None,
            writes: writes_by_request.values().sum(),
            writes_per_pod: None,
            writes_by_request,
            api_p99_ms: latency.quantile(0.99).map(|s| s * 1000.0),
            cpu_seconds: usage.map(|u| u.cpu_seconds - window.cpu),
            peak_memory_mb: usage.map(|u| u.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
            ready_over_time: Vec::new(),
        })
    }
}

impl Plane {
    /// `user`'s writes since `mark`, once they have stopped: controllers send events
    /// (and some status) after the work they report, and those count too.
    async fn trailing_writes(&self, mark: AuditMark, user: &str) -> anyhow::Result<BTreeMap<String, u64>> {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (mut last, mut changed) = (self.audit.writes_since(mark, user)?, Instant::now());
        while changed.elapsed() < QUIET && started.elapsed() < MAX_SETTLE {
            tick.tick().await;
            let now = self.audit.writes_since(mark, user)?;
            if now != last {
                (last, changed) = (now, Instant::now());
            }
        }
        Ok(last)
    }
}

/// How long a controller must send nothing for its writes to count as finished, and
/// how long that is waited for at most.
const QUIET: Duration = Duration::from_secs(2);
const MAX_SETTLE: Duration = Duration::from_secs(30);

impl Measured {
    fn with_pods(mut self, pods: u64) -> Self {
        self.pods = pods;
        if self.seconds > 0.0 && pods > 0 {
            self.pods_per_second = Some(pods as f64 / self.seconds);
            self.writes_per_pod = Some(self.writes as f64 / pods as f64);
        }
        self
    }
}

/// The same pods and claims as the burst scenario, created by a plain client at full
/// speed with no controller running: what this plane can do at most.
pub async fn ceiling(plane: &Plane, sizes: Sizes, timeout: Duration) -> anyhow::Result<Measured> {
    let ns = "bench-ceiling";
    create_namespace(&plane.admin, ns).await?;
    let mut observer = Observer::start(plane.admin.clone(), ns).await?;
    let pods: Api<Pod> = Api::namespaced(plane.plain_client.clone(), ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(plane.plain_client.clone(), ns);
    let window = plane.open(None).await?;
    let n = sizes.burst();
    let names: Vec<(u32, u32)> =
        (0..sizes.burst_sets).flat_map(|s| (0..sizes.burst_pods).map(move |p| (s, p))).collect();
    let created = stream::iter(names)
        .map(|(s, p)| {
            let (pods, claims) = (pods.clone(), claims.clone());
            async move {
                let (pod, claim) = plain_pod(&format!("ceiling-{s}"), p);
                claims.create(&PostParams::default(), &claim).await?;
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(PLAIN_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await;
    let outcome = match created {
        Ok(_) => wait_ready(&mut observer, "ceiling", "1", n, timeout).await,
        Err(e) => Err(e),
    };
    let measured = plane.close(window, "ceiling", "plain client", PLAIN_CLIENT, None, None, outcome).await?;
    let ready = observer.with(|t| t.ready(Some("ceiling"), "1"));
    let measured =
        Measured { ready_over_time: ready_over_time(&observer, "ceiling"), ..measured.with_pods(ready as u64) };
    drop(observer);
    delete_namespace(&plane.admin, ns, timeout).await?;
    Ok(measured)
}

/// A pod and its claim, as a StatefulSet would make them, without a controller.
fn plain_pod(set: &str, ordinal: u32) -> (Pod, PersistentVolumeClaim) {
    let name = format!("{set}-{ordinal}");
    let template = workload::spec("ceiling", set, 1, "Parallel");
    let mut pod_spec = template["template"]["spec"].clone();
    pod_spec["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}}]);
    let pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": template["template"]["metadata"]["labels"], "annotations": template["template"]["metadata"]["annotations"]},
        "spec": pod_spec,
    }))
    .expect("a valid pod");
    let claim = serde_json::from_value(json!({
        "metadata": {"name": format!("data-{name}")},
        "spec": template["volumeClaimTemplates"][0]["spec"],
    }))
    .expect("a valid claim");
    (pod, claim)
}

/// The five scenarios for one controller at one budget, in their own namespace.
pub async fn scenarios(
    plane: &Plane,
    controller: Controller,
    budget: Budget,
    sizes: Sizes,
    timeout: Duration,
) -> anyhow::Result<Vec<Measured>> {
    let mut run = Run::start(plane, controller, budget, sizes, timeout).await?;
    let mut results = Vec::new();
    // Each scenario starts from where the one before left off; after a failure the
    // rest would measure a broken state, so they are not run.
    for step in [Step::Burst, Step::Ordered, Step::Update, Step::Restart, Step::ScaleToZero] {
        let measured = run.step(step).await?;
        tracing::info!(
            scenario = measured.scenario,
            controller = controller.name(),
            %budget,
            seconds = format!("{:.1}", measured.seconds),
            done = measured.done,
            "scenario finished"
        );
        let done = measured.done;
        results.push(measured);
        if !done {
            break;
        }
    }
    run.finish().await?;
    Ok(results)
}

/// Only the burst scenario, at the size given, until done or `timeout`; what it made
/// is left in place.
pub async fn burst_only(
    plane: &Plane,
    controller: Controller,
    budget: Budget,
    sizes: Sizes,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let mut run = Run::start(plane, controller, budget, sizes, timeout).await?;
    let measured = run.step(Step::Burst).await?;
    // Deleting tens of thousands of pods takes longer than making them; the plane is
    // taken down after this run anyway.
    if let Some(running) = run.running.take() {
        running.stop().await?;
    }
    Ok(measured)
}

#[derive(Clone, Copy)]
enum Step {
    Burst,
    Ordered,
    Update,
    Restart,
    ScaleToZero,
}

struct Run<'a> {
    plane: &'a Plane,
    namespace: String,
    controller: Controller,
    budget: Budget,
    sizes: Sizes,
    timeout: Duration,
    observer: Observer,
    sets: (Api<kube::api::DynamicObject>, kube::api::ApiResource),
    /// Every set created so far.
    names: Vec<String>,
    running: Option<Running>,
}

impl<'a> Run<'a> {
    /// A namespace of its own, its pod watch, and the controller started.
    async fn start(
        plane: &'a Plane,
        controller: Controller,
        budget: Budget,
        sizes: Sizes,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let namespace = format!("bench-{}-{}", controller.name(), budget.qps);
        create_namespace(&plane.admin, &namespace).await?;
        Ok(Run {
            plane,
            controller,
            budget,
            sizes,
            timeout,
            observer: Observer::start(plane.admin.clone(), &namespace).await?,
            sets: workload::sets(&plane.admin, &namespace, controller),
            namespace,
            names: Vec::new(),
            running: Some(Running::start(controller, budget, &plane.binaries).await?),
        })
    }

    /// Stops the controller and removes everything the run made.
    async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.take() {
            running.stop().await?;
        }
        delete_namespace(&self.plane.admin, &self.namespace, self.timeout).await
    }

    async fn step(&mut self, step: Step) -> anyhow::Result<Measured> {
        let user = self.controller.user();
        let (name, window, outcome, pods) = match step {
            Step::Burst | Step::Ordered => {
                let (scenario, sets, pods, policy) = match step {
                    Step::Burst => ("burst", self.sizes.burst_sets, self.sizes.burst_pods, "Parallel"),
                    _ => ("ordered", self.sizes.ordered_sets, self.sizes.ordered_pods, "OrderedReady"),
                };
                let window = self.plane.open(self.running.as_ref()).await?;
                let outcome = self.create(scenario, sets, pods, policy).await;
                let ready = self.observer.with(|t| t.ready(Some(scenario), "1"));
                (scenario, window, outcome, ready)
            }
            Step::Update => {
                let window = self.plane.open(self.running.as_ref()).await?;
                let outcome = self.update().await;
                let replaced = self.observer.with(|t| t.ready(None, "2"));
                ("rolling update", window, outcome, replaced)
            }
            Step::Restart => {
                if let Some(running) = self.running.take() {
                    running.stop().await?;
                }
                let window = self.plane.open(None).await?;
                let outcome = self.restart().await;
                ("cold restart", window, outcome, 0)
            }
            Step::ScaleToZero => {
                let before = self.observer.with(|t| t.live().count());
                let window = self.plane.open(self.running.as_ref()).await?;
                let outcome = self.scale_to_zero().await;
                let removed = before.saturating_sub(self.observer.with(|t| t.live().count()));
                ("scale to zero", window, outcome, removed)
            }
        };
        let measured = self
            .plane
            .close(window, name, self.controller.name(), &user, Some(self.budget), self.running.as_ref(), outcome)
            .await?
            .with_pods(pods as u64);
        Ok(match step {
            Step::Burst => Measured { ready_over_time: ready_over_time(&self.observer, "burst"), ..measured },
            Step::Ordered => Measured {
                ready_over_time: ready_over_time(&self.observer, "ordered"),
                step_ms: self.observer.with(|t| steps(t, "ordered")),
                ..measured
            },
            _ => measured,
        })
    }

    async fn create(&mut self, scenario: &str, sets: u32, pods: u32, policy: &str) -> anyhow::Result<()> {
        let (api, resource) = &self.sets;
        let names: Vec<String> = (0..sets).map(|i| format!("{scenario}-{i}")).collect();
        stream::iter(names.iter())
            .map(|name| workload::create(api, resource, name, workload::spec(scenario, name, pods, policy)))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .context("creating the sets")?;
        self.names.extend(names);
        let want = (sets * pods) as usize;
        wait_ready(&mut self.observer, scenario, "1", want, self.timeout).await
    }

    async fn update(&mut self) -> anyhow::Result<()> {
        self.patch_all(workload::new_revision("2")).await?;
        let want = self.sizes.burst() + self.sizes.ordered();
        self.observer
            .wait_until(
                "every pod replaced at the new revision and Ready",
                self.timeout,
                |t| t.ready(None, "2") == want && t.live().count() == want,
                |t| format!("{} of {want} pods Ready at revision 2", t.ready(None, "2")),
            )
            .await
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        let running = Running::start(self.controller, self.budget, &self.plane.binaries).await?;
        let sets = self.names.len();
        let deadline = Instant::now() + self.timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let outcome = loop {
            tick.tick().await;
            match running.caught_up(sets).await {
                Ok(true) => break Ok(()),
                Ok(false) | Err(_) if Instant::now() < deadline => continue,
                Ok(false) => break Err(anyhow::anyhow!("not caught up with {sets} sets after {:?}", self.timeout)),
                Err(e) => break Err(e),
            }
        };
        self.running = Some(running);
        outcome
    }

    async fn scale_to_zero(&mut self) -> anyhow::Result<()> {
        self.patch_all(workload::replicas(0)).await?;
        self.observer
            .wait_until(
                "every pod removed",
                self.timeout,
                |t| t.live().count() == 0,
                |t| format!("{} pods left", t.live().count()),
            )
            .await
    }

    async fn patch_all(&self, spec: serde_json::Value) -> anyhow::Result<()> {
        let (api, _) = &self.sets;
        stream::iter(self.names.iter())
            .map(|name| workload::patch_spec(api, name, spec.clone()))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .context("patching the sets")?;
        Ok(())
    }
}

async fn wait_ready(
    observer: &mut Observer,
    scenario: &str,
    revision: &str,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    observer
        .wait_until(
            &format!("{want} {scenario} pods Ready"),
            timeout,
            |t| t.ready(Some(scenario), revision) == want,
            |t| format!("{} Ready", t.ready(Some(scenario), revision)),
        )
        .await
}

/// Ready pods of `scenario` over time since its first pod, at most ~200 points.
fn ready_over_time(observer: &Observer, scenario: &str) -> Vec<(f64, u64)> {
    observer.with(|t| {
        let pods: Vec<_> = t.pods.values().filter(|p| p.scenario == scenario).collect();
        let Some(origin) = pods.iter().map(|p| p.created).min() else { return Vec::new() };
        let mut times: Vec<f64> =
            pods.iter().filter_map(|p| p.ready).map(|r| r.duration_since(origin).as_secs_f64()).collect();
        times.sort_by(f64::total_cmp);
        let every = times.len().div_ceil(200).max(1);
        let mut points: Vec<(f64, u64)> = vec![(0.0, 0)];
        points.extend(
            times
                .iter()
                .enumerate()
                .filter(|(i, _)| (i + 1) % every == 0 || i + 1 == times.len())
                .map(|(i, t)| (*t, i as u64 + 1)),
        );
        points
    })
}

/// OrderedReady steps: for each pod after the first, its creation minus the moment
/// its predecessor was seen Ready.
fn steps(timeline: &Timeline, scenario: &str) -> Option<Steps> {
    let mut by_set: BTreeMap<(&str, u32), &crate::observe::PodRecord> = BTreeMap::new();
    for pod in timeline.pods.values().filter(|p| p.scenario == scenario) {
        if let Some(ordinal) = pod.ordinal() {
            by_set.entry((pod.set.as_str(), ordinal)).or_insert(pod);
        }
    }
    let samples: Vec<f64> = by_set
        .iter()
        .filter_map(|(&(set, ordinal), pod)| {
            let before = by_set.get(&(set, ordinal.checked_sub(1)?))?;
            Some(pod.created.checked_duration_since(before.ready?)?.as_secs_f64() * 1000.0)
        })
        .collect();
    Some(Steps {
        count: samples.len(),
        p50: percentile(&samples, 0.5)?,
        p99: percentile(&samples, 0.99)?,
        max: samples.iter().copied().fold(0.0, f64::max),
    })
}

async fn create_namespace(admin: &Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(admin.clone());
    if api.get_opt(name).await?.is_some() {
        bail!("namespace {name} exists: a run before this one did not finish its clean-up");
    }
    let ns = Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

/// Deletes a namespace and waits until it and every volume of the plane are gone (the
/// plane runs nothing but the benchmark), so the next run starts on an idle plane.
async fn delete_namespace(admin: &Client, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let volumes: Api<PersistentVolume> = Api::all(admin.clone());
    namespaces.delete(name, &DeleteParams::default()).await?;
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let left = volumes.list_metadata(&ListParams::default()).await?.items.len();
        let ns_left = namespaces.get_opt(name).await?.is_some();
        if !ns_left && left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("namespace {name} still being deleted after {timeout:?} ({left} volumes left)");
        }
    }
}
