//! `petset-operator`: runs the controller (`run`) or prints the CRD (`crd`).

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use clap::{Parser, Subcommand, ValueEnum};
use kube_lease_manager::LeaseManagerBuilder;
use petset_operator::{
    controller::{self, Settings},
    metrics::Metrics,
    throttle::ThrottleLayer,
};
use tokio::sync::watch;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Parser)]
#[command(version, about = "Runs PetSets: pods with stable identities, their claims, in order")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (kubeconfig from KUBECONFIG, ~/.kube/config or in-cluster).
    Run(RunArgs),
    /// Print the PetSet CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Namespaces to watch, comma-separated; all when empty.
    #[arg(long, env = "PETSET_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,

    /// PetSets synced at once.
    #[arg(long, env = "PETSET_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,

    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "PETSET_ADMIN_ADDRESS", default_value = "127.0.0.1:8080")]
    admin_address: SocketAddr,

    /// Log format.
    #[arg(long, env = "PETSET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info` or `petset_operator=debug`).
    #[arg(long, env = "PETSET_LOG", default_value = "info")]
    log: String,

    /// API requests per second, on average (client-go's --kube-api-qps).
    #[arg(long, env = "PETSET_API_QPS", default_value_t = NonZeroU32::new(50).unwrap())]
    api_qps: NonZeroU32,

    /// API requests allowed at once above the average (client-go's --kube-api-burst).
    #[arg(long, env = "PETSET_API_BURST", default_value_t = NonZeroU32::new(100).unwrap())]
    api_burst: NonZeroU32,

    /// Elect a leader among the replicas through a Lease; only the leader reconciles.
    #[arg(long, env = "PETSET_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "PETSET_LEASE_NAME", default_value = "petset-operator")]
    lease_name: String,

    /// Namespace of the Lease (defaults to POD_NAMESPACE, else `default`).
    #[arg(long, env = "PETSET_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it; a standby takes over
    /// within this long after the leader dies.
    #[arg(long, env = "PETSET_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", petset_crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log)?;
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        LogFormat::Text => registry.with(fmt::layer()).init(),
        LogFormat::Json => registry.with(fmt::layer().json().with_current_span(true)).init(),
    }

    let config = kube::Config::infer().await?;
    let throttle = ThrottleLayer::new(args.api_qps, args.api_burst);
    let client = kube::client::ClientBuilder::try_from(config)?.with_layer(&throttle).build();
    let metrics = Arc::new(Metrics::default());
    let (ready_tx, ready_rx) = watch::channel(false);
    let admin = tokio::net::TcpListener::bind(args.admin_address).await?;
    tracing::info!(address = %args.admin_address, "admin server listening");
    let app = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { ready: ready_rx, metrics: metrics.clone() });
    tokio::spawn(async move { axum::serve(admin, app).await });

    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "petset-operator".into()), std::process::id())
    });
    let settings = Settings {
        namespaces: args.namespaces.clone(),
        concurrency: args.concurrency,
        instance: Some(identity.clone()),
    };

    if !args.leader_elect {
        tracing::info!(namespaces = ?settings.namespaces, concurrency = settings.concurrency, "starting");
        metrics.leader.set(1);
        controller::run(client, settings, metrics, ready_tx, shutdown_signal()).await;
        tracing::info!("stopped");
        return Ok(());
    }

    let namespace =
        args.lease_namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or("default".into());
    let duration = args.lease_duration.max(2);
    let lease = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(duration)
        .with_grace((duration / 3).max(1))
        .build()
        .await?;
    let (mut leading, lease_task) = lease.watch().await;
    tracing::info!(lease = %args.lease_name, %namespace, %identity, "waiting to be elected");
    tokio::select! {
        elected = leading.wait_for(|leader| *leader) => { elected?; }
        _ = shutdown_signal() => return Ok(()),
    }
    tracing::info!(namespaces = ?settings.namespaces, concurrency = settings.concurrency, "elected: starting");
    metrics.leader.set(1);
    let mut watch_loss = leading.clone();
    let lost = async move {
        let _ = watch_loss.wait_for(|leader| !*leader).await;
    };
    let mut lost_leadership = false;
    let stop = async {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = lost => { lost_leadership = true; tracing::error!("lost the lease: stopping"); }
        }
    };
    // The controller stops when the signal comes or the lease is lost; the lease is
    // released once the controller has stopped, so the next leader starts clean.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(client, settings, metrics.clone(), ready_tx, async move {
        let _ = stop_rx.await;
    }));
    stop.await;
    let _ = stop_tx.send(());
    let _ = controller.await;
    metrics.leader.set(0);
    drop(leading);
    let _ = lease_task.await;
    tracing::info!("stopped");
    if lost_leadership {
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}

#[derive(Clone)]
struct AdminState {
    ready: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if *state.ready.borrow() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "caches not synced") }
}

async fn render_metrics(State(state): State<AdminState>) -> String {
    state.metrics.render()
}

/// SIGTERM (from the kubelet) or Ctrl-C: finish the syncs in flight, then stop.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down");
}
