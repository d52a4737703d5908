//! Bad input gets a clear answer: the API server refuses it at admission with a message
//! naming the field, or, when only the rendered pod can be judged, the PetSet gets a
//! condition and a Warning event while every other PetSet keeps being served.

use kube::api::{Patch, PatchParams};
use petset_crd::PetSet;
use petset_tests::{
    TIMEOUT, TestNs,
    fixtures::{merge, pods_refused, stateless},
    in_namespace, wait_for, wait_until,
};
use serde_json::{Value, json};

/// Creates `web` with `change` merged into its JSON, and returns the refusal message.
async fn refused(ns: &TestNs, change: Value) -> anyhow::Result<String> {
    let mut body = serde_json::to_value(stateless("web", 1))?;
    merge(&mut body, change);
    match ns.create_raw(body).await {
        Ok(_) => anyhow::bail!("accepted"),
        Err(kube::Error::Api(e)) => {
            anyhow::ensure!(e.code == 422, "refused with {} instead of 422: {}", e.code, e.message);
            Ok(e.message)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn invalid_specs_are_refused_with_the_field_named() -> anyhow::Result<()> {
    in_namespace("admission", |ns| async move {
        let cases = [
            (json!({"spec": {"replicas": -1}}), "spec.replicas"),
            (json!({"spec": {"ordinals": {"start": -1}}}), "spec.ordinals.start"),
            (json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}}), "spec.selector.matchLabels must match spec.template.metadata.labels"),
            (json!({"spec": {"selector": {"matchLabels": null}}}), "spec.selector must not be empty"),
            (
                json!({"spec": {"selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}}),
                "spec.selector.matchExpressions must match",
            ),
            (json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}), "spec.template.spec.restartPolicy must be 'Always'"),
            (json!({"spec": {"template": {"spec": {"containers": "nginx"}}}}), "spec.template.spec.containers"),
            (json!({"spec": {"podManagementPolicy": "Sometimes"}}), "spec.podManagementPolicy"),
            (
                json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}}}),
                "maxUnavailable must be an integer of at least 1",
            ),
            (
                json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "x%"}}}}),
                "maxUnavailable must be an integer of at least 1",
            ),
            (
                json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "101%"}}}}),
                "a percentage from '1%' to '100%'",
            ),
            (
                json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "9223372036854775807%"}}}}),
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
            ),
            (json!({"metadata": {"name": "a".repeat(53)}}), "metadata.name must be at most 52 characters"),
            (json!({"metadata": {"name": "web.v2"}}), "metadata.name must be a DNS label"),
            (
                json!({"spec": {"serviceName": "web", "clustering": {"clusterDomain": "cluster.local\n0 evil.example ready leader"}}}),
                "spec.clustering.clusterDomain must be a DNS domain",
            ),
        ];
        for (change, expected) in cases {
            let message = refused(&ns, change.clone()).await.map_err(|e| anyhow::anyhow!("{change}: {e}"))?;
            assert!(message.contains(expected), "{change}: message {message:?} does not name {expected:?}");
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn immutable_fields_cannot_change() -> anyhow::Result<()> {
    in_namespace("immutable", |ns| async move {
        ns.create_petset(&stateless("web", 0)).await?;
        for (change, field) in [
            (json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}}}}), "spec.selector is immutable"),
            (json!({"spec": {"serviceName": "other"}}), "spec.serviceName is immutable"),
            (json!({"spec": {"podManagementPolicy": "Parallel"}}), "spec.podManagementPolicy is immutable"),
        ] {
            let result = ns.petsets().patch("web", &PatchParams::default(), &Patch::Merge(&change)).await;
            match result {
                Err(kube::Error::Api(e)) => assert!(e.message.contains(field), "{change}: {}", e.message),
                other => panic!("{change}: accepted: {other:?}"),
            }
        }
        // What a StatefulSet lets change may change.
        let ok = json!({"spec": {"replicas": 2, "minReadySeconds": 3, "revisionHistoryLimit": 2,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1, "maxUnavailable": "50%"}}}});
        ns.petsets().patch("web", &PatchParams::default(), &Patch::Merge(&ok)).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_statefulset_manifest_becomes_a_petset_by_changing_apiversion_and_kind() -> anyhow::Result<()> {
    in_namespace("converted", |ns| async move {
        // The upstream documentation's example, with only apiVersion and kind changed.
        let manifest = r#"
apiVersion: petset.dev/v1alpha1
kind: PetSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx
  serviceName: "nginx"
  replicas: 3
  minReadySeconds: 10
  template:
    metadata:
      labels:
        app: nginx
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      storageClassName: "my-storage-class"
      resources:
        requests:
          storage: 1Gi
"#;
        let set = ns.create::<PetSet>(manifest).await?;
        // The StatefulSet defaults are filled in, as the API server does for StatefulSets.
        let spec = set.spec;
        assert_eq!(spec.pod_management_policy, Some(petset_crd::PodManagementPolicy::OrderedReady));
        assert_eq!(spec.revision_history_limit, Some(10));
        let strategy = spec.update_strategy.unwrap();
        assert_eq!(strategy.type_, petset_crd::UpdateStrategyType::RollingUpdate);
        assert_eq!(strategy.rolling_update.unwrap().partition, Some(0));
        let retention = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_deleted, petset_crd::RetentionPolicyType::Retain);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_gives_a_condition_and_event_and_others_keep_working() -> anyhow::Result<()> {
    in_namespace("refused-pod", |ns| async move {
        let _op = ns.start_operator().await;
        ns.create_petset(&pods_refused("bad")).await?;
        ns.create_petset(&stateless("good", 2)).await?;

        let set = wait_for(&ns.petsets(), "bad", "a ReplicaFailure condition", TIMEOUT, |s| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "ReplicaFailure"))
        })
        .await?
        .unwrap();
        let condition = set.status.unwrap().conditions.into_iter().find(|c| c.type_ == "ReplicaFailure").unwrap();
        assert_eq!(condition.status, "True");
        assert!(condition.message.contains("spec.containers[0].name"), "{}", condition.message);
        wait_until("a FailedCreate Warning event", TIMEOUT, || async {
            let events = ns.events_about("bad").await?;
            anyhow::ensure!(
                events.iter().any(|(r, m)| r == "FailedCreate" && m.contains("spec.containers[0].name")),
                "{events:?}"
            );
            Ok(())
        })
        .await?;
        ns.wait_ready("good", 0..2).await?;

        // Fixing the template clears the condition.
        ns.patch_spec("bad", json!({"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}))
            .await?;
        ns.wait_ready("bad", [0]).await?;
        wait_for(&ns.petsets(), "bad", "no ReplicaFailure condition", TIMEOUT, |s| {
            s.and_then(|s| s.status.as_ref())
                .is_some_and(|st| st.conditions.iter().all(|c| c.type_ != "ReplicaFailure"))
        })
        .await?;
        Ok(())
    })
    .await
}
