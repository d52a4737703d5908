//! `kubectl petset rollout status|history|undo|restart|pause|resume`, with kubectl's
//! semantics for StatefulSets. Pausing is petset's own: kubectl refuses it for a
//! StatefulSet, and a PetSet pauses by holding its partition above every ordinal (the
//! partition it had is kept in an annotation and put back on resume).

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use petset_crd::{PetSet, UpdateStrategyType};
use petset_operator::{reconcile::status::PROGRESSING, revision};
use serde_json::json;

use crate::resource_name;

/// Where a paused set keeps the partition it had.
pub const PAUSED_PARTITION: &str = "petset.dev/paused-partition";
/// What kubectl records as the reason of a change.
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// How far a rollout is, in kubectl's words.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Waiting(String),
    Done(String),
    Failed(String),
}

/// kubectl's StatefulSet status viewer, plus the progress deadline petset reports.
pub fn progress(set: &PetSet) -> Progress {
    let status = set.status.clone().unwrap_or_default();
    if set.spec.update_strategy_type() != UpdateStrategyType::RollingUpdate {
        return Progress::Failed("rollout status is only available for RollingUpdate strategy type".into());
    }
    if status.observed_generation.unwrap_or(0) == 0 || set.metadata.generation > status.observed_generation {
        return Progress::Waiting("Waiting for petset spec update to be observed...".into());
    }
    if let Some(stuck) = status
        .conditions
        .iter()
        .find(|c| c.type_ == PROGRESSING && c.status == "False" && c.reason == "ProgressDeadlineExceeded")
    {
        return Progress::Failed(format!(
            "petset {:?} exceeded its progress deadline: {}",
            set.name_any(),
            stuck.message
        ));
    }
    let replicas = set.spec.replicas();
    if status.ready_replicas < replicas {
        return Progress::Waiting(format!("Waiting for {} pods to be ready...", replicas - status.ready_replicas));
    }
    if set.spec.rolling_update().is_some() {
        let wanted = replicas.saturating_sub(set.spec.partition()).max(0);
        if status.updated_replicas < wanted {
            return Progress::Waiting(format!(
                "Waiting for partitioned roll out to finish: {} out of {wanted} new pods have been updated...",
                status.updated_replicas
            ));
        }
        return Progress::Done(format!(
            "partitioned roll out complete: {} new pods have been updated...",
            status.updated_replicas
        ));
    }
    if status.update_revision != status.current_revision {
        return Progress::Waiting(format!(
            "waiting for petset rolling update to complete {} pods at revision {}...",
            status.updated_replicas,
            status.update_revision.unwrap_or_default()
        ));
    }
    Progress::Done(format!(
        "petset rolling update complete {} pods at revision {}...",
        status.current_replicas,
        status.current_revision.unwrap_or_default()
    ))
}

/// Prints the rollout's progress until it is done (or once, without `watch`); fails
/// when it failed or `timeout` passed.
pub async fn status(api: &Api<PetSet>, name: &str, watch: bool, timeout: Option<Duration>) -> anyhow::Result<()> {
    let follow = async {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut sets = watcher(api.clone(), config).applied_objects().boxed();
        let mut last = String::new();
        while let Some(set) = sets.try_next().await? {
            let (text, outcome) = match progress(&set) {
                Progress::Waiting(t) => (t, None),
                Progress::Done(t) => (t, Some(Ok(()))),
                Progress::Failed(t) => (t.clone(), Some(Err(anyhow::anyhow!(t)))),
            };
            if let Some(outcome) = outcome {
                return outcome.map(|()| println!("{text}"));
            }
            if text != last {
                println!("{text}");
                last = text;
            }
            if !watch {
                return Ok(());
            }
        }
        bail!("the watch of petset {name:?} ended")
    };
    api.get(name).await.with_context(|| format!("reading PetSet {name}"))?;
    match timeout {
        Some(limit) => tokio::time::timeout(limit, follow)
            .await
            .map_err(|_| anyhow::anyhow!("timed out waiting for the condition"))?,
        None => follow.await,
    }
}

/// The set's revisions, oldest first.
pub async fn revisions(client: &Client, set: &PetSet) -> anyhow::Result<Vec<ControllerRevision>> {
    let namespace = set.namespace().unwrap_or_default();
    let all = Api::<ControllerRevision>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await?;
    let uid = set.uid();
    let mut own: Vec<_> = all
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref()))
        .collect();
    own.sort_by_key(|r| r.revision);
    Ok(own)
}

/// `rollout history`: the revision numbers and their change causes, or one revision's
/// pod template.
pub fn history(name: &str, revisions: &[ControllerRevision], only: Option<i64>) -> anyhow::Result<String> {
    if let Some(number) = only {
        let found = revisions
            .iter()
            .find(|r| r.revision == number)
            .with_context(|| format!("unable to find the specified revision {number}"))?;
        let template = revision::template_of(found).context("the revision holds no pod template")?;
        let yaml = serde_saphyr::to_string(&template)?;
        return Ok(format!("{} with revision #{number}\nPod Template:\n{}", resource_name(name), indent(&yaml)));
    }
    let mut out = format!("{}\nREVISION  CHANGE-CAUSE\n", resource_name(name));
    for r in revisions {
        let cause = r.annotations().get(CHANGE_CAUSE).map_or("<none>", String::as_str);
        out.push_str(&format!("{:<9} {cause}\n", r.revision));
    }
    Ok(out)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// `rollout undo`: the template of revision `to` (0: the one before the latest) put
/// back, whole, as the set's template.
pub async fn undo(api: &Api<PetSet>, client: &Client, name: &str, to: i64) -> anyhow::Result<String> {
    let set = api.get(name).await?;
    let revisions = revisions(client, &set).await?;
    let target = if to == 0 {
        revisions.iter().rev().nth(1).context("no rollout history found: no last revision to roll back to")?
    } else {
        revisions
            .iter()
            .find(|r| r.revision == to)
            .with_context(|| format!("unable to find specified revision {to} in history"))?
    };
    let template = revision::template_of(target).context("the revision holds no pod template")?;
    if template == set.spec.template {
        return Ok(format!(
            "{} skipped rollback (current template already matches revision {})",
            resource_name(name),
            target.revision
        ));
    }
    // A JSON patch replaces the template whole; a merge patch would keep fields the
    // revision does not have. The resourceVersion test refuses a set changed meanwhile.
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": set.resource_version()},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(patch)?)).await?;
    Ok(format!("{} rolled back", resource_name(name)))
}

/// `rollout restart`: every pod replaced in rollout order, through a template annotation.
pub async fn restart(api: &Api<PetSet>, name: &str, now: jiff::Timestamp) -> anyhow::Result<String> {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now.to_string()}}}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(format!("{} restarted", resource_name(name)))
}

/// `rollout pause`: no pod moves to a newer revision until `resume`.
pub async fn pause(api: &Api<PetSet>, name: &str) -> anyhow::Result<String> {
    let set = api.get(name).await?;
    if set.spec.update_strategy_type() != UpdateStrategyType::RollingUpdate {
        bail!("{} pausing is only available for the RollingUpdate strategy type", resource_name(name));
    }
    if set.annotations().contains_key(PAUSED_PARTITION) {
        bail!("{} is already paused", resource_name(name));
    }
    let patch = json!({
        "metadata": {"resourceVersion": set.resource_version(), "annotations": {PAUSED_PARTITION: set.spec.partition().to_string()}},
        "spec": {"updateStrategy": {"rollingUpdate": {"partition": i32::MAX}}},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(format!("{} paused", resource_name(name)))
}

/// `rollout resume`: the partition the set had before `pause`.
pub async fn resume(api: &Api<PetSet>, name: &str) -> anyhow::Result<String> {
    let set = api.get(name).await?;
    let Some(kept) = set.annotations().get(PAUSED_PARTITION) else {
        bail!("{} is not paused", resource_name(name));
    };
    let partition: i32 =
        kept.parse().with_context(|| format!("annotation {PAUSED_PARTITION} is {kept:?}, not a partition"))?;
    let patch = json!({
        "metadata": {"resourceVersion": set.resource_version(), "annotations": {PAUSED_PARTITION: null}},
        "spec": {"updateStrategy": {"rollingUpdate": {"partition": partition}}},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(format!("{} resumed", resource_name(name)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use petset_crd::PetSetStatus;

    use super::*;

    fn set(replicas: i32, partition: i32, status: PetSetStatus) -> PetSet {
        let mut set: PetSet = serde_json::from_value(json!({
            "apiVersion": "petset.dev/v1alpha1", "kind": "PetSet",
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        }))
        .unwrap();
        set.status = Some(status);
        set
    }

    fn observed(ready: i32, updated: i32) -> PetSetStatus {
        PetSetStatus {
            observed_generation: Some(2),
            ready_replicas: ready,
            updated_replicas: updated,
            ..Default::default()
        }
    }

    #[test]
    fn reads_like_kubectl_for_a_statefulset() {
        let unobserved = PetSetStatus { observed_generation: Some(1), ..Default::default() };
        assert_eq!(
            progress(&set(3, 0, unobserved)),
            Progress::Waiting("Waiting for petset spec update to be observed...".into())
        );
        assert_eq!(progress(&set(3, 0, observed(1, 0))), Progress::Waiting("Waiting for 2 pods to be ready...".into()));
        assert_eq!(
            progress(&set(3, 1, observed(3, 1))),
            Progress::Waiting(
                "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...".into()
            )
        );
        assert_eq!(
            progress(&set(3, 1, observed(3, 2))),
            Progress::Done("partitioned roll out complete: 2 new pods have been updated...".into())
        );
        // Paused: a partition above every ordinal waits for nothing.
        assert_eq!(
            progress(&set(3, i32::MAX, observed(3, 0))),
            Progress::Done("partitioned roll out complete: 0 new pods have been updated...".into())
        );
    }

    #[test]
    fn a_rollout_past_its_deadline_failed() {
        let mut status = observed(2, 1);
        status.conditions.push(Condition {
            type_: PROGRESSING.into(),
            status: "False".into(),
            reason: "ProgressDeadlineExceeded".into(),
            message: "web-2 has not been Ready for 600s".into(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        });
        let Progress::Failed(text) = progress(&set(3, 0, status)) else { panic!("not failed") };
        assert!(text.contains("exceeded its progress deadline: web-2 has not been Ready"), "{text}");
    }
}
