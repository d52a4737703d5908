//! The Helm chart: lint, render, install, upgrade, and RBAC that is exactly enough for
//! the operator to do its job.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config, ResourceExt,
    api::{Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use petset_crd::{PersistentVolumeClaimRetentionPolicy, RetentionPolicyType};
use petset_tests::{TIMEOUT, chart, fixtures::web, in_namespace, kubeconfig_path, run_tool, wait_for, wait_until};
use serde_json::json;

const KUBE_VERSION: &str = "1.36.3";

#[tokio::test]
async fn chart_lints_clean_and_renders_what_the_api_server_accepts() -> anyhow::Result<()> {
    in_namespace("chart-render", |ns| async move {
        let lint = run_tool("helm", &["lint", "--strict", &chart()], None).await?;
        assert!(lint.contains("0 chart(s) failed"), "{lint}");
        let watched = format!("watchNamespaces={{{}}}", ns.name);
        let variants: [&[&str]; 4] = [
            &[],
            &["--set", &watched],
            &[
                "--set",
                "podDisruptionBudget.enabled=true",
                "--set",
                "leaderElection.enabled=false",
                "--set",
                "replicaCount=1",
            ],
            &[
                "--set",
                "crds.install=false",
                "--set",
                "serviceAccount.create=false",
                "--set",
                "metrics.service.enabled=false",
            ],
        ];
        for extra in variants {
            let chart_dir = chart();
            let mut args = vec!["template", "render", &chart_dir, "-n", &ns.name, "--kube-version", KUBE_VERSION];
            args.extend_from_slice(extra);
            let rendered = run_tool("helm", &args, None).await?;
            let applied = run_tool("kubectl", &["apply", "--dry-run=server", "-f", "-"], Some(&rendered)).await?;
            assert!(
                applied.contains("deployment.apps/render-petset-operator created (server dry run)"),
                "{extra:?}: {applied}"
            );
        }
        Ok(())
    })
    .await
}

/// `helm template` with no flag at all is how many people (and GitOps tools) first see a
/// chart; it renders for Helm's built-in Kubernetes version, which must not be refused.
#[tokio::test]
async fn helm_template_needs_no_flags_and_an_old_kubernetes_is_refused() -> anyhow::Result<()> {
    let chart_dir = chart();
    let rendered = run_tool("helm", &["template", &chart_dir], None).await?;
    let applied = run_tool("kubectl", &["apply", "--dry-run=server", "-f", "-"], Some(&rendered)).await?;
    assert!(applied.contains("deployment.apps/release-name-petset-operator created (server dry run)"), "{applied}");
    let old = run_tool("helm", &["template", &chart_dir, "--kube-version", "1.30.0"], None).await;
    let refused = old.expect_err("rendered for Kubernetes 1.30");
    assert!(refused.to_string().contains("petset needs Kubernetes 1.33 or newer, not v1.30.0"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn without_leader_election_the_chart_runs_one_replica_and_never_two_at_once() -> anyhow::Result<()> {
    let chart_dir = chart();
    let render = |extra: &'static [&'static str]| {
        let chart_dir = chart_dir.clone();
        async move {
            let mut args = vec!["template", "render", chart_dir.as_str(), "--kube-version", KUBE_VERSION];
            args.extend_from_slice(&[
                "--set",
                "leaderElection.enabled=false",
                "--show-only",
                "templates/deployment.yaml",
            ]);
            args.extend_from_slice(extra);
            run_tool("helm", &args, None).await
        }
    };
    // The default replicaCount (2) and an explicit 3: two writers, refused.
    for extra in [&[][..], &["--set", "replicaCount=3"][..]] {
        let refused = render(extra).await.expect_err("rendered several replicas without leader election");
        assert!(
            refused.to_string().contains("but leaderElection.enabled is false: every replica would write"),
            "{refused}"
        );
    }
    // One replica: replaced, never surged, on a rolling update.
    let deployment: Deployment = serde_saphyr::from_str(&render(&["--set", "replicaCount=1"]).await?)?;
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.and_then(|s| s.type_).as_deref(), Some("Recreate"));
    Ok(())
}

#[tokio::test]
async fn helm_install_and_upgrade_create_and_update_everything() -> anyhow::Result<()> {
    in_namespace("chart-install", |ns| async move {
        let release = "petset";
        let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
        // The CRD exists already (installed by the test harness): mark it for adoption
        // by this release, as someone moving an existing installation to the chart does.
        let adopt = json!({"metadata": {
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns.name}}});
        crds.patch("petsets.petset.dev", &PatchParams::default(), &Patch::Merge(&adopt)).await?;

        // An older chart whose CRD lacks the `Service` printer column.
        let old_chart = std::env::temp_dir().join(format!("petset-chart-{}", ns.name));
        run_tool("cp", &["-r", &chart(), old_chart.to_str().unwrap()], None).await?;
        let crd_file = old_chart.join("files/petset.crd.yaml");
        let text = std::fs::read_to_string(&crd_file)?;
        let older = text.replace(
            "    - jsonPath: .spec.serviceName\n      name: Service\n      priority: 1\n      type: string\n",
            "",
        );
        assert_ne!(text, older, "the column to remove was not found");
        std::fs::write(&crd_file, older)?;

        let install = ["install", release, old_chart.to_str().unwrap(), "-n", &ns.name, "--set", "replicaCount=1"];
        run_tool("helm", &install, None).await?;
        let deployments: Api<Deployment> = ns.api();
        let deployment = deployments.get("petset-petset-operator").await?;
        assert_eq!(deployment.spec.unwrap().replicas, Some(1));
        let columns = |crd: &CustomResourceDefinition| -> Vec<String> {
            crd.spec.versions[0].additional_printer_columns.iter().flatten().map(|c| c.name.clone()).collect()
        };
        assert!(!columns(&crds.get("petsets.petset.dev").await?).contains(&"Service".to_string()));

        // Upgrade to the current chart: the Deployment and the CRD follow.
        let upgrade =
            ["upgrade", release, &chart(), "-n", &ns.name, "--set", "replicaCount=2", "--set", "concurrency=4"];
        run_tool("helm", &upgrade, None).await?;
        let deployment = deployments.get("petset-petset-operator").await?;
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let env = spec.template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "PETSET_CONCURRENCY" && e.value.as_deref() == Some("4")));
        let crd = crds.get("petsets.petset.dev").await?;
        assert!(columns(&crd).contains(&"Service".to_string()), "helm upgrade did not upgrade the CRD");
        assert_eq!(crd.annotations().get("helm.sh/resource-policy").map(String::as_str), Some("keep"));

        // Uninstalling keeps the CRD, and with it every PetSet.
        run_tool("helm", &["uninstall", release, "-n", &ns.name], None).await?;
        wait_for(&deployments, "petset-petset-operator", "uninstalled", TIMEOUT, |d| d.is_none()).await?;
        assert!(crds.get_opt("petsets.petset.dev").await?.is_some(), "helm uninstall deleted the CRD");
        let _ = std::fs::remove_dir_all(old_chart);
        Ok(())
    })
    .await
}

/// The chart's RBAC, rendered for a release in `ns` and applied; returns the service
/// account's user name.
async fn install_rbac(ns: &str, release: &str, extra: &[&str]) -> anyhow::Result<String> {
    let chart_dir = chart();
    let mut args = vec![
        "template",
        release,
        chart_dir.as_str(),
        "-n",
        ns,
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "crds.install=false",
    ];
    args.extend_from_slice(extra);
    let rendered = run_tool("helm", &args, None).await?;
    let rbac: Vec<&str> = rendered
        .split("\n---")
        .filter(|doc| {
            ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
                .iter()
                .any(|k| doc.contains(&format!("\nkind: {k}\n")))
        })
        .collect();
    run_tool("kubectl", &["apply", "-f", "-"], Some(&rbac.join("\n---\n"))).await?;
    Ok(format!("system:serviceaccount:{ns}:{release}-petset-operator"))
}

async fn impersonating(user: &str) -> anyhow::Result<Client> {
    let mut kubeconfig = Kubeconfig::read_from(kubeconfig_path())?;
    for auth in &mut kubeconfig.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            info.impersonate = Some(user.to_string());
        }
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

#[tokio::test]
async fn the_charts_service_account_can_create_scale_update_and_delete() -> anyhow::Result<()> {
    in_namespace("chart-rbac", |ns| async move {
        let release = format!("rbac-{}", ns.name);
        let user = install_rbac(&ns.name, &release, &[]).await?;
        let _op = ns.start_operator_with(impersonating(&user).await?).await;

        let mut set = web("web", 2);
        set.spec.persistent_volume_claim_retention_policy =
            Some(PersistentVolumeClaimRetentionPolicy { when_deleted: RetentionPolicyType::Delete, when_scaled: RetentionPolicyType::Delete });
        ns.create_petset(&set).await?;
        ns.wait_ready("web", 0..2).await?;
        ns.patch_spec("web", json!({"replicas": 3})).await?;
        ns.wait_ready("web", 0..3).await?;
        ns.patch_spec("web", json!({"template": {"spec": {"containers": [{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.28"}]}}})).await?;
        ns.wait_rolled_out("web", 3).await?;
        ns.patch_spec("web", json!({"replicas": 1})).await?;
        ns.wait_ready("web", [0]).await?;
        ns.delete_petset("web").await?;
        wait_until("claims gone with the set", TIMEOUT, || async {
            let claims = ns.claims().await?;
            anyhow::ensure!(claims.is_empty(), "{claims:?}");
            Ok(())
        })
        .await?;
        let events = ns.events_about("web").await?;
        assert!(events.iter().all(|(reason, _)| !reason.starts_with("Failed")), "{events:?}");
        let _ = run_tool("kubectl", &["delete", "clusterrole,clusterrolebinding", &format!("{release}-petset-operator")], None).await;
        Ok(())
    })
    .await
}
