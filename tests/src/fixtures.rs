//! PetSets and helpers the PetSet tests share.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use petset_crd::PetSet;
use serde_json::{Value, json};

use crate::{TIMEOUT, TestNs, pod_ready, wait_for, wait_until};

/// The classic `web` set: nginx, one claim `www`, governed by Service `web`.
pub fn web(name: &str, replicas: i32) -> PetSet {
    let yaml = format!(
        r#"
apiVersion: petset.dev/v1alpha1
kind: PetSet
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  serviceName: web
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: nginx, image: registry.k8s.io/nginx-slim:0.27}}]
  volumeClaimTemplates:
  - metadata: {{name: www}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
    );
    serde_saphyr::from_str(&yaml).expect("valid PetSet")
}

/// The same without claims.
pub fn stateless(name: &str, replicas: i32) -> PetSet {
    let mut set = web(name, replicas);
    set.spec.volume_claim_templates.clear();
    set
}

/// A set the API server accepts and whose pods it refuses: container names must be DNS
/// labels, which only the pod's own validation checks.
pub fn pods_refused(name: &str) -> PetSet {
    let mut set = stateless(name, 1);
    set.spec.template.spec.as_mut().unwrap().containers[0].name = "Not_A_DNS_Label".into();
    set
}

/// Makes new pods of the set start not Ready (the node simulator holds them), as a
/// failing readiness probe would.
pub fn hold_not_ready(set: &mut PetSet) {
    set.spec
        .template
        .metadata
        .get_or_insert_default()
        .annotations
        .get_or_insert_default()
        .insert("petset.dev/sim-ready".into(), "false".into());
}

/// Merges `change` into `into`, as a JSON merge patch does (without its null-deletes).
pub fn merge(into: &mut Value, change: Value) {
    match (into, change) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

impl TestNs {
    pub fn petsets(&self) -> Api<PetSet> {
        self.api()
    }

    /// PetSets as JSON: what a typed PetSet cannot hold (a wrong type, a date beyond
    /// its range) still reaches the API server, and can be read back.
    pub fn raw_petsets(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.name, &ApiResource::erase::<PetSet>(&()))
    }

    /// Creates the PetSet given as JSON.
    pub async fn create_raw(&self, set: Value) -> Result<DynamicObject, kube::Error> {
        let set: DynamicObject = serde_json::from_value(set).map_err(kube::Error::SerdeError)?;
        self.raw_petsets().create(&PostParams::default(), &set).await
    }

    /// Claim name -> uid, as listed now.
    pub async fn claim_uids(&self) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
        let claims = self.api::<PersistentVolumeClaim>().list(&ListParams::default()).await?;
        Ok(claims.items.iter().map(|c| (c.name_any(), c.uid().unwrap_or_default())).collect())
    }

    pub async fn create_petset(&self, set: &PetSet) -> anyhow::Result<PetSet> {
        self.petsets().create(&PostParams::default(), set).await.context("creating the PetSet")
    }

    /// Merge-patches the PetSet's spec and waits until the operator has synced the new
    /// generation (so whatever that sync does is done when this returns).
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> anyhow::Result<PetSet> {
        let set = self.petsets().patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec}))).await?;
        self.wait_synced(name, set.metadata.generation.unwrap_or_default()).await
    }

    /// Waits for a rollout to finish: the latest spec synced, `replicas` pods updated
    /// and Ready, and currentRevision moved to the update revision.
    pub async fn wait_rolled_out(&self, name: &str, replicas: i32) -> anyhow::Result<PetSet> {
        let set = wait_for(&self.petsets(), name, "rollout complete", TIMEOUT, |s| {
            s.and_then(|s| s.status.as_ref()).is_some_and(|st| {
                st.updated_replicas == replicas
                    && st.ready_replicas == replicas
                    && st.current_revision == st.update_revision
                    && st.observed_generation == s.unwrap().metadata.generation
            })
        })
        .await?;
        Ok(set.expect("present"))
    }

    /// Deletes the PetSet in the foreground and waits until it is gone.
    pub async fn delete_petset(&self, name: &str) -> anyhow::Result<()> {
        self.petsets().delete(name, &DeleteParams::foreground()).await?;
        wait_for(&self.petsets(), name, "deleted", TIMEOUT, |s| s.is_none()).await?;
        Ok(())
    }

    /// Waits until status.observedGeneration reaches `generation`.
    pub async fn wait_synced(&self, name: &str, generation: i64) -> anyhow::Result<PetSet> {
        let set = wait_for(&self.petsets(), name, &format!("observedGeneration >= {generation}"), TIMEOUT, |s| {
            s.and_then(|s| s.status.as_ref()).and_then(|st| st.observed_generation).is_some_and(|g| g >= generation)
        })
        .await?;
        Ok(set.expect("present"))
    }

    /// Waits until the set has the condition `type_` True, with a message that says
    /// each of `parts`; returns the message.
    pub async fn wait_condition(&self, name: &str, type_: &str, parts: &[&str]) -> anyhow::Result<String> {
        let set = wait_for(&self.petsets(), name, &format!("condition {type_} saying {parts:?}"), TIMEOUT, |s| {
            condition(s, type_).is_some_and(|m| parts.iter().all(|p| m.contains(p)))
        })
        .await?;
        Ok(condition(set.as_ref(), type_).unwrap_or_default())
    }

    /// Waits until the set no longer has the condition `type_`.
    pub async fn wait_no_condition(&self, name: &str, type_: &str) -> anyhow::Result<()> {
        wait_for(&self.petsets(), name, &format!("no {type_} condition"), TIMEOUT, |s| {
            s.is_some() && condition(s, type_).is_none()
        })
        .await?;
        Ok(())
    }

    /// The set's pods (by the selector label `app=<name>`), in ordinal order.
    pub async fn pods_of(&self, set: &str) -> anyhow::Result<Vec<Pod>> {
        let mut pods = self.pods().list(&ListParams::default().labels(&format!("app={set}"))).await?.items;
        pods.sort_by_key(|p| ordinal(set, p));
        Ok(pods)
    }

    /// Waits until the set's pods satisfy `check`, which explains what is missing.
    pub async fn wait_pods(
        &self,
        set: &str,
        what: &str,
        check: impl Fn(&[Pod]) -> Result<(), String>,
    ) -> anyhow::Result<Vec<Pod>> {
        self.wait_pods_for(set, what, TIMEOUT, check).await
    }

    pub async fn wait_pods_for(
        &self,
        set: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[Pod]) -> Result<(), String>,
    ) -> anyhow::Result<Vec<Pod>> {
        wait_until(what, timeout, || async {
            let pods = self.pods_of(set).await?;
            check(&pods).map_err(|e| anyhow::anyhow!("{e}; pods: {}", summary(&pods)))?;
            Ok(pods)
        })
        .await
    }

    /// Waits until exactly the pods `<set>-<o>` for `ordinals` exist, all Running and Ready.
    pub async fn wait_ready(&self, set: &str, ordinals: impl IntoIterator<Item = i32>) -> anyhow::Result<Vec<Pod>> {
        let want: Vec<String> = ordinals.into_iter().map(|o| format!("{set}-{o}")).collect();
        self.wait_pods(set, &format!("exactly {want:?} Running and Ready"), |pods| {
            let live: Vec<_> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            let names: Vec<String> = live.iter().map(|p| p.name_any()).collect();
            if names != want || pods.len() != want.len() {
                return Err(format!("have {names:?}"));
            }
            if !live.iter().all(|p| pod_ready(p)) {
                return Err("not all Ready".into());
            }
            Ok(())
        })
        .await
    }

    /// Sets or clears the node simulator's not-ready hold on one pod, and waits until
    /// the pod's readiness follows.
    pub async fn set_ready(&self, pod: &str, ready: bool) -> anyhow::Result<()> {
        self.hold(pod, ready).await?;
        wait_for(&self.pods(), pod, &format!("Ready={ready}"), TIMEOUT, |p| p.is_some_and(|p| pod_ready(p) == ready))
            .await?;
        Ok(())
    }

    /// Sets or clears the not-ready hold without waiting; a pod already gone is fine.
    pub async fn hold(&self, pod: &str, ready: bool) -> anyhow::Result<()> {
        let value = if ready { serde_json::Value::Null } else { json!("false") };
        let patch = json!({"metadata": {"annotations": {"petset.dev/sim-ready": value}}});
        match self.pods().patch(pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    pub async fn claims(&self) -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .api::<PersistentVolumeClaim>()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .map(|c| c.name_any())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reasons and messages of the events about `object`, oldest first.
    pub async fn events_about(&self, object: &str) -> anyhow::Result<Vec<(String, String)>> {
        use k8s_openapi::api::events::v1::Event;
        let mut events = self.api::<Event>().list(&ListParams::default()).await?.items;
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        Ok(events
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
                    || e.related.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
            })
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect())
    }

    /// Waits for an event about `object` with `reason` whose note contains `note`
    /// (events are published beside the sync, not before it goes on).
    pub async fn wait_event(&self, object: &str, reason: &str, note: &str) -> anyhow::Result<()> {
        wait_until(&format!("a {reason} event about {object}"), TIMEOUT, || async {
            let events = self.events_about(object).await?;
            anyhow::ensure!(events.iter().any(|(r, m)| r == reason && m.contains(note)), "{events:?}");
            Ok(())
        })
        .await
    }
}

/// The message of the set's condition `type_`, while it is True.
pub fn condition(set: Option<&PetSet>, type_: &str) -> Option<String> {
    let conditions = &set?.status.as_ref()?.conditions;
    conditions.iter().find(|c| c.type_ == type_ && c.status == "True").map(|c| c.message.clone())
}

pub fn ordinal(set: &str, pod: &Pod) -> i64 {
    pod.name_any().strip_prefix(&format!("{set}-")).and_then(|o| o.parse().ok()).unwrap_or(i64::MAX)
}

pub fn summary(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            let gone = if p.metadata.deletion_timestamp.is_some() { " terminating" } else { "" };
            format!("{}({}{}{})", p.name_any(), crate::pod_phase(p), if pod_ready(p) { " ready" } else { "" }, gone)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
