//! `kubectl petset migrate`: a running StatefulSet becomes a PetSet, or a PetSet a
//! StatefulSet, with no pod deleted or restarted and every claim kept.
//!
//! The old owner is deleted with `propagationPolicy: Orphan`, so the garbage collector
//! takes its owner references off the pods, claims and ControllerRevisions, and the new
//! owner adopts them. No pod changes but its owner (and, on the way back, its revision
//! label): the same names, uids, volumes and containers.
//!
//! - To a PetSet: petset reuses the StatefulSet's revisions (it looks for a revision
//!   with an equal template before making one), and the revision the rollout started
//!   from goes in an annotation, so a partitioned rollout stays where it was.
//! - To a StatefulSet: its controller names revisions by a hash of its own, so it is
//!   created with `OnDelete` (which never replaces a pod), the pods are relabelled with
//!   the revision it made for the same template, and then the strategy is put back.
//!
//! Before the old owner is deleted, its manifest is saved in a ConfigMap, so a
//! migration cut short (a lost connection, a killed terminal) is finished by running
//! the same command again.

use std::{collections::BTreeMap, future::Future, time::Duration};

use anyhow::{Context as _, bail};
use k8s_openapi::api::{
    apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy},
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions},
    core::Selector,
};
use petset_crd::{PetSet, PetSetSpec};
use petset_operator::{
    identity::REVISION_LABEL,
    revision::{CURRENT_REVISION_ANNOTATION, template_of},
};
use serde_json::{Value, json};

/// How long each step may take before the command gives up (it can be run again).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// kubectl's copy of the last applied manifest: it describes the old kind.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    PetSet,
    StatefulSet,
}

impl Target {
    fn source(self) -> &'static str {
        match self {
            Target::PetSet => "statefulset.apps",
            Target::StatefulSet => "petset.petset.dev",
        }
    }
    fn target(self) -> &'static str {
        match self {
            Target::PetSet => "petset.petset.dev",
            Target::StatefulSet => "statefulset.apps",
        }
    }
}

/// Where a migration keeps the manifest of the object it deletes.
fn saved_name(name: &str) -> String {
    format!("petset-migration-{name}")
}

/// What a migration will do, for `--dry-run` and as the command's log.
pub struct Plan {
    pub target: Target,
    pub name: String,
    pub pods: Vec<String>,
    pub claims: Vec<String>,
    pub revisions: Vec<String>,
    /// Fields of the source the target kind does not have.
    pub dropped: Vec<String>,
    pub manifest: Value,
}

impl Plan {
    pub fn render(&self) -> String {
        let (from, to, name) = (self.target.source(), self.target.target(), &self.name);
        let list = |items: &[String]| if items.is_empty() { "none".to_string() } else { items.join(", ") };
        let mut out = format!("Migrating {from}/{name} to {to}/{name}, with no pod deleted or restarted:\n");
        out.push_str(&format!(
            "  1. save the {to} manifest below in ConfigMap {} (a cut-short run resumes from it)\n",
            saved_name(name)
        ));
        out.push_str(&format!(
            "  2. delete {from}/{name} with --cascade=orphan: its pods, claims and revisions stay\n"
        ));
        out.push_str(&format!("  3. create {to}/{name}, which adopts them\n"));
        if self.target == Target::StatefulSet {
            out.push_str("     (with updateStrategy OnDelete until its pods carry the revision label it computes, then the strategy below)\n");
        }
        out.push_str(&format!(
            "  4. wait until {to}/{name} controls every pod and reports them, then delete the ConfigMap\n"
        ));
        out.push_str(&format!("Pods ({}): {}\n", self.pods.len(), list(&self.pods)));
        out.push_str(&format!("Claims ({}): {}\n", self.claims.len(), list(&self.claims)));
        out.push_str(&format!("Revisions kept ({}): {}\n", self.revisions.len(), list(&self.revisions)));
        for field in &self.dropped {
            out.push_str(&format!("Not carried over: {field}\n"));
        }
        out.push_str(&format!("The new object:\n{}", serde_saphyr::to_string(&self.manifest).unwrap_or_default()));
        out
    }
}

/// Plans the migration of `name` to `target`; refuses, with the reason, what is not safe.
pub async fn plan(client: &Client, namespace: &str, name: &str, target: Target) -> anyhow::Result<Plan> {
    let saved = Api::<ConfigMap>::namespaced(client.clone(), namespace).get_opt(&saved_name(name)).await?;
    let source = match target {
        Target::PetSet => {
            Api::<StatefulSet>::namespaced(client.clone(), namespace).get_opt(name).await?.map(Source::StatefulSet)
        }
        Target::StatefulSet => {
            Api::<PetSet>::namespaced(client.clone(), namespace).get_opt(name).await?.map(Source::PetSet)
        }
    };
    let source = match (source, saved) {
        (Some(source), _) => source,
        (None, Some(saved)) => Source::saved(&saved, target)?,
        (None, None) => bail!("{}/{name} not found in namespace {namespace}", target.source()),
    };
    if source.live() {
        source.check_settled()?;
        let exists = match target {
            Target::PetSet => Api::<PetSet>::namespaced(client.clone(), namespace).get_opt(name).await?.is_some(),
            Target::StatefulSet => {
                Api::<StatefulSet>::namespaced(client.clone(), namespace).get_opt(name).await?.is_some()
            }
        };
        if exists {
            bail!("{}/{name} already exists: delete it or choose another namespace", target.target());
        }
    }
    let selector = source.selector()?;
    let pods =
        Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default().labels_from(&selector)).await?;
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels_from(&selector))
        .await?;
    let (manifest, dropped) = source.converted(&revisions.items)?;
    let claim_names = source.claim_templates();
    let claims =
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?;
    let prefix_of = |claim: &str| claim_names.iter().any(|t| claim.starts_with(&format!("{t}-{name}-")));
    Ok(Plan {
        target,
        name: name.to_string(),
        pods: pods.items.iter().map(|p| p.name_any()).collect(),
        claims: claims.items.iter().map(|c| c.name_any()).filter(|c| prefix_of(c)).collect(),
        revisions: revisions.items.iter().map(|r| format!("{} (#{})", r.name_any(), r.revision)).collect(),
        dropped,
        manifest,
    })
}

/// Carries out `plan`, printing each step.
pub async fn run(client: &Client, namespace: &str, plan: &Plan) -> anyhow::Result<String> {
    let name = &plan.name;
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    let (from, to) = (plan.target.source(), plan.target.target());
    let source_uid = match plan.target {
        Target::PetSet => {
            Api::<StatefulSet>::namespaced(client.clone(), namespace).get_opt(name).await?.and_then(|s| s.uid())
        }
        Target::StatefulSet => {
            Api::<PetSet>::namespaced(client.clone(), namespace).get_opt(name).await?.and_then(|s| s.uid())
        }
    };
    if let Some(uid) = source_uid {
        let saved = ConfigMap {
            metadata: ObjectMeta { name: Some(saved_name(name)), ..Default::default() },
            data: Some(BTreeMap::from([
                ("to".to_string(), to.to_string()),
                ("manifest".to_string(), serde_json::to_string(&plan.manifest)?),
            ])),
            ..Default::default()
        };
        match configmaps.create(&PostParams::default(), &saved).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => {
                other.context("saving the manifest")?;
            }
        }
        println!("saved the {to} manifest in ConfigMap {}", saved_name(name));
        let orphan = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        match plan.target {
            Target::PetSet => orphan_delete::<StatefulSet>(client, namespace, name, &orphan).await?,
            Target::StatefulSet => orphan_delete::<PetSet>(client, namespace, name, &orphan).await?,
        }
        println!("deleted {from}/{name} with --cascade=orphan; its pods, claims and revisions are kept");
    }
    let manifest = match configmaps.get_opt(&saved_name(name)).await? {
        Some(saved) => saved_manifest(&saved)?,
        None => plan.manifest.clone(),
    };
    match plan.target {
        Target::PetSet => create_petset(client, namespace, name, manifest).await?,
        Target::StatefulSet => create_statefulset(client, namespace, name, manifest).await?,
    }
    configmaps.delete(&saved_name(name), &DeleteParams::default()).await.map(|_| ()).or_else(not_found)?;
    Ok(format!(
        "{from}/{name} migrated to {to}/{name}: {} pods and {} claims adopted, no pod restarted",
        plan.pods.len(),
        plan.claims.len()
    ))
}

async fn orphan_delete<K>(client: &Client, namespace: &str, name: &str, params: &DeleteParams) -> anyhow::Result<()>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    api.delete(name, params).await.map(|_| ()).or_else(not_found)?;
    // The garbage collector takes the owner references off the dependents before it
    // removes the object: once it is gone, they are orphans.
    wait(&format!("{name} to be deleted"), || async { Ok(api.get_opt(name).await?.is_none()) }).await
}

async fn create_petset(client: &Client, namespace: &str, name: &str, manifest: Value) -> anyhow::Result<()> {
    let api = Api::<PetSet>::namespaced(client.clone(), namespace);
    let set: PetSet = serde_json::from_value(manifest).context("the saved PetSet manifest")?;
    create_once(&api, &set).await?;
    println!("created petset.petset.dev/{name}");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    wait("the PetSet to adopt every pod and report them", || async {
        let set = api.get(name).await?;
        let status = set.status.clone().unwrap_or_default();
        let synced = status.observed_generation >= set.metadata.generation;
        Ok(synced
            && status.replicas == set.spec.replicas()
            && controls_all(&pods, &set.spec.selector, set.uid(), set.spec.replicas()).await?)
    })
    .await
}

async fn create_statefulset(client: &Client, namespace: &str, name: &str, manifest: Value) -> anyhow::Result<()> {
    let api = Api::<StatefulSet>::namespaced(client.clone(), namespace);
    let wanted: StatefulSet = serde_json::from_value(manifest).context("the saved StatefulSet manifest")?;
    let spec = wanted.spec.clone().context("the saved StatefulSet has no spec")?;
    let strategy = spec.update_strategy.clone();
    let mut on_delete = wanted.clone();
    on_delete.spec.as_mut().expect("checked").update_strategy =
        Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    create_once(&api, &on_delete).await?;
    println!("created statefulset.apps/{name} with updateStrategy OnDelete");
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let replicas = spec.replicas.unwrap_or(1);
    let revision = wait("the StatefulSet to adopt every pod and record its revision", || async {
        let set = api.get(name).await?;
        let status = set.status.clone().unwrap_or_default();
        let synced = status.observed_generation >= set.metadata.generation;
        let adopted = controls_all(&pods, &spec.selector, set.uid(), replicas).await?;
        Ok(status.update_revision.filter(|_| synced && adopted))
    })
    .await?;
    // The template is the one every pod runs (the migration refuses a set in the middle
    // of a rollout), so relabelling them restarts nothing.
    let selector: Selector = spec.selector.clone().try_into()?;
    for pod in pods.list(&ListParams::default().labels_from(&selector)).await? {
        if pod.labels().get(REVISION_LABEL) != Some(&revision) {
            let patch = json!({"metadata": {"labels": {REVISION_LABEL: revision}}});
            pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
    }
    println!("relabelled the pods with revision {revision}");
    let patch = json!({"spec": {"updateStrategy": strategy}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    wait("the StatefulSet to report every pod at its revision", || async {
        let set = api.get(name).await?;
        let status = set.status.unwrap_or_default();
        Ok(status.observed_generation >= set.metadata.generation
            && status.updated_replicas == Some(replicas)
            && status.current_revision == status.update_revision)
    })
    .await?;
    println!("put back the update strategy");
    Ok(())
}

async fn create_once<K>(api: &Api<K>, object: &K) -> anyhow::Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Whether the `replicas` pods the selector finds are all controlled by `uid`.
async fn controls_all(
    pods: &Api<Pod>,
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    uid: Option<String>,
    replicas: i32,
) -> anyhow::Result<bool> {
    let selector: Selector = selector.clone().try_into()?;
    let listed = pods.list(&ListParams::default().labels_from(&selector)).await?.items;
    let controlled = listed
        .iter()
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref()))
        .count();
    Ok(controlled == listed.len() && listed.len() == usize::try_from(replicas).unwrap_or(0))
}

/// Polls `check` until it gives a value (or true), for at most [`STEP_TIMEOUT`].
async fn wait<T: Settled, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T::Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut pause = Duration::from_millis(100);
    loop {
        if let Some(v) = check().await?.settled() {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {STEP_TIMEOUT:?} waiting for {what}; run the same command again to go on");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// A check's answer: `true`, or a value once there is one.
trait Settled {
    type Value;
    fn settled(self) -> Option<Self::Value>;
}

impl Settled for bool {
    type Value = ();
    fn settled(self) -> Option<()> {
        self.then_some(())
    }
}

impl Settled for Option<String> {
    type Value = String;
    fn settled(self) -> Option<String> {
        self
    }
}

fn not_found(e: kube::Error) -> anyhow::Result<()> {
    match e {
        kube::Error::Api(e) if e.code == 404 => Ok(()),
        e => Err(e.into()),
    }
}

fn saved_manifest(saved: &ConfigMap) -> anyhow::Result<Value> {
    let text = saved.data.as_ref().and_then(|d| d.get("manifest")).context("the saved migration has no manifest")?;
    serde_json::from_str(text).context("the saved manifest")
}

/// The object a migration starts from: live, or saved by a run cut short after it
/// deleted it.
enum Source {
    StatefulSet(StatefulSet),
    PetSet(PetSet),
    Saved(Value),
}

impl Source {
    fn saved(saved: &ConfigMap, target: Target) -> anyhow::Result<Source> {
        let to = saved.data.as_ref().and_then(|d| d.get("to")).map(String::as_str);
        anyhow::ensure!(
            to == Some(target.target()),
            "ConfigMap {} holds a migration to {to:?}, not to {}",
            saved.name_any(),
            target.target()
        );
        Ok(Source::Saved(saved_manifest(saved)?))
    }

    fn live(&self) -> bool {
        !matches!(self, Source::Saved(..))
    }

    /// Refuses a set whose controller is still at work: it would be cut off mid-way.
    fn check_settled(&self) -> anyhow::Result<()> {
        let (generation, observed, wanted, replicas, ready) = match self {
            Source::StatefulSet(s) => {
                let status = s.status.clone().unwrap_or_default();
                let spec = s.spec.clone().unwrap_or_default();
                (
                    s.metadata.generation,
                    status.observed_generation,
                    spec.replicas.unwrap_or(1),
                    status.replicas,
                    status.ready_replicas.unwrap_or(0),
                )
            }
            Source::PetSet(s) => {
                let status = s.status.clone().unwrap_or_default();
                if status.current_revision != status.update_revision {
                    bail!(
                        "petset {:?} is in the middle of a rollout (from {} to {}): StatefulSet's controller cannot take it over without restarting pods; finish it (partition 0) or undo it first",
                        s.name_any(),
                        status.current_revision.unwrap_or_default(),
                        status.update_revision.unwrap_or_default()
                    );
                }
                if s.spec.clustering.is_some() {
                    bail!(
                        "petset {:?} uses spec.clustering, which StatefulSet does not have: pods it re-creates would lose the peers file and the identity environment; remove spec.clustering first",
                        s.name_any()
                    );
                }
                (
                    s.metadata.generation,
                    status.observed_generation,
                    s.spec.replicas(),
                    status.replicas,
                    status.ready_replicas,
                )
            }
            Source::Saved(..) => return Ok(()),
        };
        if observed < generation {
            bail!(
                "its controller has not yet acted on the latest spec (generation {generation:?}, observed {observed:?}): wait and try again"
            );
        }
        if replicas != wanted {
            bail!("it is still scaling ({replicas} pods, {wanted} wanted): wait until it is done");
        }
        if ready < wanted {
            bail!("{} of {wanted} pods are not Ready: wait until every pod is Ready", wanted - ready);
        }
        Ok(())
    }

    fn selector(&self) -> anyhow::Result<Selector> {
        let selector = match self {
            Source::StatefulSet(s) => s.spec.clone().unwrap_or_default().selector,
            Source::PetSet(s) => s.spec.selector.clone(),
            Source::Saved(manifest) => serde_json::from_value(manifest["spec"]["selector"].clone())?,
        };
        Ok(selector.try_into()?)
    }

    fn claim_templates(&self) -> Vec<String> {
        let templates = match self {
            Source::StatefulSet(s) => s.spec.clone().unwrap_or_default().volume_claim_templates.unwrap_or_default(),
            Source::PetSet(s) => s.spec.volume_claim_templates.clone(),
            Source::Saved(manifest) => {
                serde_json::from_value(manifest["spec"]["volumeClaimTemplates"].clone()).unwrap_or_default()
            }
        };
        templates.iter().map(|t| t.name_any()).collect()
    }

    /// The target object, and the fields of the source it cannot carry.
    fn converted(&self, revisions: &[ControllerRevision]) -> anyhow::Result<(Value, Vec<String>)> {
        match self {
            Source::Saved(manifest) => Ok((manifest.clone(), Vec::new())),
            Source::StatefulSet(s) => {
                let mut spec: PetSetSpec = serde_json::from_value(serde_json::to_value(&s.spec)?)?;
                // The template exactly as the update revision holds it: the StatefulSet
                // controller judged the two equal, and petset, finding that revision
                // equal to its template, takes it over instead of rolling every pod.
                let update = s.status.as_ref().and_then(|st| st.update_revision.as_deref());
                let revision = revisions.iter().find(|r| r.metadata.name.as_deref() == update);
                if let Some(template) = revision.and_then(template_of) {
                    spec.template = template;
                }
                let mut set = PetSet::new(&s.name_any(), spec);
                set.metadata.namespace = s.namespace();
                set.metadata.labels = s.metadata.labels.clone();
                let mut annotations = s.annotations().clone();
                annotations.remove(LAST_APPLIED);
                if let Some(current) = s.status.as_ref().and_then(|st| st.current_revision.clone()) {
                    annotations.insert(CURRENT_REVISION_ANNOTATION.into(), current);
                }
                set.metadata.annotations = Some(annotations);
                Ok((serde_json::to_value(&set)?, Vec::new()))
            }
            Source::PetSet(s) => {
                let mut dropped = Vec::new();
                if s.spec.progress_deadline_seconds.is_some() {
                    dropped.push("spec.progressDeadlineSeconds (StatefulSet reports no progress deadline)".to_string());
                }
                if s.spec.rolling_update().and_then(|r| r.replace_unhealthy_after_seconds).is_some() {
                    dropped.push("spec.updateStrategy.rollingUpdate.replaceUnhealthyAfterSeconds (StatefulSet waits for unhealthy pods forever)".to_string());
                }
                let mut spec = serde_json::to_value(&s.spec)?;
                if let Value::Object(fields) = &mut spec {
                    fields.remove("clustering");
                    fields.remove("progressDeadlineSeconds");
                }
                if let Some(rolling) = spec.pointer_mut("/updateStrategy/rollingUpdate").and_then(Value::as_object_mut)
                {
                    rolling.remove("replaceUnhealthyAfterSeconds");
                }
                let spec: StatefulSetSpec = serde_json::from_value(spec)?;
                let mut annotations = s.annotations().clone();
                annotations.remove(LAST_APPLIED);
                annotations.remove(CURRENT_REVISION_ANNOTATION);
                let set = StatefulSet {
                    metadata: ObjectMeta {
                        name: Some(s.name_any()),
                        namespace: s.namespace(),
                        labels: s.metadata.labels.clone(),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    spec: Some(spec),
                    status: None,
                };
                let mut value = serde_json::to_value(&set)?;
                value["apiVersion"] = json!("apps/v1");
                value["kind"] = json!("StatefulSet");
                Ok((value, dropped))
            }
        }
    }
}
