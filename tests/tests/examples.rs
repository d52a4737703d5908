//! The examples: their scripts run here with exactly what a pod would get (the PETSET_*
//! environment and a peers file), and their manifests come up on the local plane.

use std::{collections::BTreeMap, path::Path, process::Command};

use petset_tests::{TIMEOUT, in_namespace, pod_ready, run_tool, wait_until};

fn examples() -> String {
    format!("{}/../examples", env!("CARGO_MANIFEST_DIR"))
}

/// A pod's world in a temporary directory: the environment and the peers file.
struct Pod {
    dir: std::path::PathBuf,
    env: BTreeMap<String, String>,
}

impl Pod {
    fn new(set: &str, ordinal: i32, bootstrap: bool, peers: &[(i32, &str, &str)]) -> Pod {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("petset-example-{set}-{ordinal}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let fqdn = |o: i32| format!("{set}-{o}.{set}.db.svc.cluster.local");
        let text: String = peers.iter().map(|(o, state, role)| format!("{o} {} {state} {role}\n", fqdn(*o))).collect();
        std::fs::write(dir.join("peers"), text).unwrap();
        let env = [
            ("PETSET_NAME", set.to_string()),
            ("PETSET_NAMESPACE", "db".into()),
            ("PETSET_ORDINAL", ordinal.to_string()),
            ("PETSET_SERVICE", set.to_string()),
            ("PETSET_FQDN", fqdn(ordinal)),
            ("PETSET_SEED_FQDN", fqdn(0)),
            ("PETSET_BOOTSTRAP", bootstrap.to_string()),
            ("PETSET_PEERS_FILE", dir.join("peers").display().to_string()),
        ];
        Pod { dir, env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect() }
    }

    /// A stand-in for a command the script calls: records its arguments, prints `out`.
    fn stub(&self, name: &str, out: &str) {
        let path = self.dir.join("bin").join(name);
        let log = self.dir.join(format!("{name}.calls"));
        std::fs::write(&path, format!("#!/bin/sh\necho \"$*\" >> '{}'\ncat <<'OUT'\n{out}\nOUT\n", log.display()))
            .unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    }

    fn calls(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.calls"))).unwrap_or_default()
    }

    fn run(&self, script: &str, extra: &[(&str, String)]) -> String {
        let path = format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new("sh")
            .arg(Path::new(&examples()).join(script))
            .envs(&self.env)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap()
    }
}

const THREE_READY: &[(i32, &str, &str)] = &[(0, "ready", "-"), (1, "ready", "-"), (2, "notready", "-")];

#[test]
fn zookeeper_init_writes_myid_and_the_ensemble() {
    let pod = Pod::new("zk", 1, true, THREE_READY);
    let dirs = [
        ("ZK_CONF_DIR", pod.dir.join("conf").display().to_string()),
        ("ZK_DATA_DIR", pod.dir.join("data").display().to_string()),
    ];
    pod.run("zookeeper/init.sh", &dirs);
    assert_eq!(pod.read("data/myid"), "2\n");
    let cfg = pod.read("conf/zoo.cfg");
    for (id, o) in [(1, 0), (2, 1), (3, 2)] {
        assert!(cfg.contains(&format!("server.{id}=zk-{o}.zk.db.svc.cluster.local:2888:3888;2181\n")), "{cfg}");
    }
    assert!(cfg.contains(&format!("dataDir={}/data\n", pod.dir.display())));
}

#[test]
fn zookeeper_sidecar_renews_the_lease_only_while_leading() {
    let pod = Pod::new("zk", 1, false, THREE_READY);
    std::fs::write(pod.dir.join("token"), "t0k3n").unwrap();
    std::fs::write(pod.dir.join("ca.crt"), "").unwrap();
    let env =
        [("ONCE", "1".to_string()), ("SA_DIR", pod.dir.display().to_string()), ("API", "https://api.test".to_string())];
    pod.stub("nc", "Zookeeper version: 3.9\nMode: follower");
    pod.stub("curl", "{}");
    pod.run("zookeeper/leader-lease.sh", &env);
    assert_eq!(pod.calls("curl"), "", "a follower must not touch the Lease");
    pod.stub("nc", "Zookeeper version: 3.9\nMode: leader");
    pod.run("zookeeper/leader-lease.sh", &env);
    let call = pod.calls("curl");
    assert!(call.contains("https://api.test/apis/coordination.k8s.io/v1/namespaces/db/leases/zk"), "{call}");
    assert!(
        call.contains(r#""holderIdentity":"zk-1""#) && call.contains("Bearer t0k3n") && call.contains("-X PATCH"),
        "{call}"
    );
}

#[test]
fn etcd_founders_start_a_new_cluster_of_every_member() {
    let pod = Pod::new("etcd", 0, true, THREE_READY);
    let conf = ("ETCD_CONFIG", pod.dir.join("etcd.conf.yml").display().to_string());
    let data = ("ETCD_DATA_DIR", pod.dir.join("data").display().to_string());
    pod.run("etcd/init.sh", &[conf, data]);
    let cfg = pod.read("etcd.conf.yml");
    assert!(cfg.contains("name: etcd-0\n"));
    assert!(cfg.contains("initial-cluster-state: new\n"));
    assert!(cfg.contains(
        "initial-cluster: etcd-0=http://etcd-0.etcd.db.svc.cluster.local:2380,etcd-1=http://etcd-1.etcd.db.svc.cluster.local:2380,etcd-2=http://etcd-2.etcd.db.svc.cluster.local:2380\n"
    ), "{cfg}");
}

#[test]
fn etcd_scale_up_joins_through_member_add() {
    let peers = [(0, "ready", "-"), (1, "ready", "-"), (2, "ready", "-"), (3, "absent", "-")];
    let pod = Pod::new("etcd", 3, false, &peers);
    let answer = r#"{"header":{},"member":{"ID":"9","peerURLs":["http://etcd-3.etcd.db.svc.cluster.local:2380"]},"members":[{"ID":"1","name":"etcd-0","peerURLs":["http://etcd-0.etcd.db.svc.cluster.local:2380"]},{"ID":"2","name":"etcd-1","peerURLs":["http://etcd-1.etcd.db.svc.cluster.local:2380"]},{"ID":"3","name":"etcd-2","peerURLs":["http://etcd-2.etcd.db.svc.cluster.local:2380"]},{"ID":"9","peerURLs":["http://etcd-3.etcd.db.svc.cluster.local:2380"]}]}"#;
    pod.stub("wget", answer);
    let conf = ("ETCD_CONFIG", pod.dir.join("etcd.conf.yml").display().to_string());
    let data = ("ETCD_DATA_DIR", pod.dir.join("data").display().to_string());
    pod.run("etcd/init.sh", &[conf.clone(), data.clone()]);
    let call = pod.calls("wget");
    assert!(call.contains("http://etcd-0.etcd.db.svc.cluster.local:2379/v3/cluster/member/add"), "{call}");
    assert!(call.contains(r#"{"peerURLs":["http://etcd-3.etcd.db.svc.cluster.local:2380"]}"#), "{call}");
    let cfg = pod.read("etcd.conf.yml");
    assert!(cfg.contains("initial-cluster-state: existing\n"), "{cfg}");
    assert!(
        cfg.contains(
            "etcd-2=http://etcd-2.etcd.db.svc.cluster.local:2380,etcd-3=http://etcd-3.etcd.db.svc.cluster.local:2380\n"
        ),
        "{cfg}"
    );

    // Restarted with its data: no second member add.
    std::fs::create_dir_all(pod.dir.join("data/member")).unwrap();
    std::fs::remove_file(pod.dir.join("wget.calls")).unwrap();
    pod.run("etcd/init.sh", &[conf, data]);
    assert_eq!(pod.calls("wget"), "");
    assert!(!pod.read("etcd.conf.yml").contains("initial-cluster:"));
}

#[test]
fn redis_starts_the_leader_as_primary_and_the_rest_as_replicas() {
    let peers = [(0, "ready", "follower"), (1, "ready", "leader"), (2, "ready", "follower")];
    for (ordinal, replica) in [(1, false), (2, true)] {
        let pod = Pod::new("redis", ordinal, false, &peers);
        pod.run("redis/init.sh", &[("REDIS_CONF", pod.dir.join("redis.conf").display().to_string())]);
        let conf = pod.read("redis.conf");
        assert_eq!(conf.contains("replicaof redis-leader.db.svc.cluster.local 6379\n"), replica, "{conf}");
    }
}

#[test]
fn redis_sidecar_follows_leadership_changes() {
    let pod =
        Pod::new("redis", 2, false, &[(0, "ready", "leader"), (1, "ready", "follower"), (2, "ready", "follower")]);
    pod.stub("redis-cli", "OK");
    pod.run("redis/follow-leader.sh", &[("FOLLOW_ONCE", "1".into())]);
    assert_eq!(pod.calls("redis-cli"), "-h 127.0.0.1 replicaof redis-leader.db.svc.cluster.local 6379\n");
    std::fs::write(pod.dir.join("peers"), "0 redis-0.redis.db.svc.cluster.local notready follower\n1 redis-1.redis.db.svc.cluster.local ready follower\n2 redis-2.redis.db.svc.cluster.local ready leader\n").unwrap();
    pod.run("redis/follow-leader.sh", &[("FOLLOW_ONCE", "1".into())]);
    assert!(pod.calls("redis-cli").ends_with("-h 127.0.0.1 replicaof no one\n"));
}

#[tokio::test]
async fn every_example_applies_and_comes_up_on_the_local_plane() -> anyhow::Result<()> {
    in_namespace("examples", |ns| async move {
        let _op = ns.start_operator().await;
        let dir = examples();
        run_tool("kubectl", &["apply", "--dry-run=server", "-n", &ns.name, "-f", &format!("{dir}/web.yaml")], None)
            .await?;
        for example in ["zookeeper", "etcd", "redis"] {
            run_tool(
                "kubectl",
                &["apply", "--dry-run=server", "-n", &ns.name, "-k", &format!("{dir}/{example}")],
                None,
            )
            .await?;
        }
        for example in ["zookeeper", "etcd", "redis"] {
            run_tool("kubectl", &["apply", "-n", &ns.name, "-k", &format!("{dir}/{example}")], None).await?;
        }
        run_tool("kubectl", &["apply", "-n", &ns.name, "-f", &format!("{dir}/web.yaml")], None).await?;
        for (set, app) in [("zk", "zk"), ("etcd", "etcd"), ("redis", "redis"), ("web", "nginx")] {
            wait_until(&format!("{set}: 3 pods Ready"), TIMEOUT, || async {
                let pods = ns.pods().list(&kube::api::ListParams::default().labels(&format!("app={app}"))).await?.items;
                let ready = pods.iter().filter(|p| pod_ready(p)).count();
                anyhow::ensure!(ready == 3, "{ready} of 3 Ready");
                Ok(())
            })
            .await?;
        }
        // Redis has its primary; ZooKeeper waits for its sidecar's Lease.
        wait_until("redis-0 labelled leader", TIMEOUT, || async {
            let pod = ns.pods().get("redis-0").await?;
            anyhow::ensure!(
                pod.metadata.labels.unwrap_or_default().get("petset.dev/role").map(String::as_str) == Some("leader")
            );
            Ok(())
        })
        .await?;
        Ok(())
    })
    .await
}
