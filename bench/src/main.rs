//! `petset-bench`: see bench/README.md. `bench/run` builds it, brings the plane up and
//! calls it; run by hand only against a plane started with `hack/cluster up --audit`.

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use petset_bench::{
    apiserver::AuditLog,
    chart, client_for,
    controllers::{Binaries, Budget, Controller},
    report::{Machine, Report, Versions},
    run::{self, PLAIN_CLIENT, Plane, Sizes},
};

#[derive(Parser)]
#[command(about = "petset against upstream's StatefulSet controller on the local plane")]
struct Args {
    /// The plane's state directory (hack/cluster): kubeconfigs and the audit log.
    #[arg(long, default_value = ".cluster")]
    plane: PathBuf,
    #[arg(long)]
    kube_controller_manager: PathBuf,
    #[arg(long)]
    petset_operator: PathBuf,
    /// Where the JSON, Markdown and SVG go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Burst creation (Parallel): SETSxPODS.
    #[arg(long, default_value = "100x30")]
    burst: Shape,
    /// Ordered creation (OrderedReady): SETSxPODS.
    #[arg(long, default_value = "20x30")]
    ordered: Shape,
    /// API request budgets (QPS/BURST), each run for every controller.
    #[arg(long, value_delimiter = ',', default_value = "20/30,400/800")]
    budgets: Vec<Budget>,
    #[arg(long, value_delimiter = ',', default_value = "upstream,petset")]
    controllers: Vec<Controller>,
    /// Per scenario: how long before it counts as stopped.
    #[arg(long, default_value_t = 1800)]
    timeout_seconds: u64,
    /// Kubernetes 1.3's headline size: burst creation only, 2,000 sets x 30 pods.
    #[arg(long)]
    scale: bool,
    /// The command line to record (bench/run passes its own).
    #[arg(long, hide = true)]
    record_command: Option<String>,
}

#[derive(Clone, Copy)]
struct Shape {
    sets: u32,
    pods: u32,
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (sets, pods) = petset_bench::positive_pair(s, 'x', "SETSxPODS, e.g. 100x30")?;
        Ok(Shape { sets, pods })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let (burst, ordered) =
        if args.scale { (Shape { sets: 2000, pods: 30 }, args.ordered) } else { (args.burst, args.ordered) };
    let sizes = Sizes {
        burst_sets: burst.sets,
        burst_pods: burst.pods,
        ordered_sets: ordered.sets,
        ordered_pods: ordered.pods,
    };
    let timeout = Duration::from_secs(args.timeout_seconds);
    let plane = Plane {
        admin: client_for(&args.plane.join("kubeconfig")).await?,
        plain_client: client_for(&args.plane.join(format!("kubeconfig-{PLAIN_CLIENT}"))).await?,
        audit: AuditLog::new(&args.plane.join("audit.log"))?,
        binaries: Binaries {
            kube_controller_manager: args.kube_controller_manager.clone(),
            petset_operator: args.petset_operator.clone(),
            plane: args.plane.clone(),
            logs: args.plane.join("bench"),
        },
    };
    let started = jiff::Timestamp::now();
    let mut report = Report {
        command: args.record_command.clone().unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" ")),
        started: started.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        finished: String::new(),
        versions: Versions { kubernetes: version(&args.kube_controller_manager), petset: git_revision() },
        machine: Machine::this(),
        sizes,
        budgets: args.budgets.clone(),
        timeout_seconds: args.timeout_seconds,
        ceiling: None,
        results: Vec::new(),
    };
    let stamp = format!("{}{}", if args.scale { "scale-" } else { "" }, started.strftime("%Y%m%dT%H%M%SZ"));
    std::fs::create_dir_all(&args.out)?;

    if !args.scale {
        tracing::info!(pods = sizes.burst_sets * sizes.burst_pods, "ceiling: a plain client at full speed");
        report.ceiling = Some(run::ceiling(&plane, sizes, timeout).await?);
    }
    for &budget in &args.budgets {
        for &controller in &args.controllers {
            tracing::info!(controller = controller.name(), %budget, "starting");
            if args.scale {
                report.results.push(run::burst_only(&plane, controller, budget, sizes, timeout).await?);
            } else {
                report.results.extend(run::scenarios(&plane, controller, budget, sizes, timeout).await?);
            }
            write(&args, &stamp, &mut report)?;
        }
    }
    write(&args, &stamp, &mut report)?;
    print!("{}", report.markdown());
    let failed = report.results.iter().chain(report.ceiling.as_ref()).filter(|m| !m.done).count();
    anyhow::ensure!(failed == 0 || args.scale, "{failed} scenarios did not finish (see the table)");
    Ok(())
}

/// Writes the JSON, Markdown and SVG of the run so far, and `latest.*` beside them.
fn write(args: &Args, stamp: &str, report: &mut Report) -> anyhow::Result<()> {
    report.finished = jiff::Timestamp::now().strftime("%H:%M UTC").to_string();
    let prefix = if args.scale { "scale-latest" } else { "latest" };
    for (ext, text) in
        [("json", serde_json::to_string_pretty(report)?), ("md", report.markdown()), ("svg", chart::svg(report)?)]
    {
        for name in [stamp, prefix] {
            let path = args.out.join(format!("{name}.{ext}"));
            std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

fn version(kube_controller_manager: &PathBuf) -> String {
    std::process::Command::new(kube_controller_manager)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().trim_start_matches("Kubernetes ").to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
