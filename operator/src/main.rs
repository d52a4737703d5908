//! `petset-operator`: runs the controller (`run`) or prints the CRD (`crd`).

use std::{net::SocketAddr, num::NonZeroU32, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use clap::{Parser, Subcommand, ValueEnum};
use futures::FutureExt;
use kube::{Client, client::ClientBuilder};
use petset_operator::{
    controller::{self, Settings},
    fence::FenceLayer,
    lease::Elector,
    metrics::Metrics,
    throttle::ThrottleLayer,
};
use tokio::sync::{oneshot, watch};
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
    let shutdown = shutdown_signal().shared();

    let (mut elector, mut fence) = (None, None);
    if args.leader_elect {
        let namespace =
            args.lease_namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or("default".into());
        let duration = Duration::from_secs(args.lease_duration.max(2));
        let mut candidate =
            Elector::new(Client::try_from(config.clone())?, &namespace, &args.lease_name, &identity, duration);
        tracing::info!(lease = %args.lease_name, %namespace, %identity, "waiting to be elected");
        tokio::select! {
            elected = candidate.acquire() => fence = Some(elected),
            _ = shutdown.clone() => return Ok(()),
        };
        tracing::info!("elected");
        elector = Some(candidate);
    }

    // The fence sits below the budget, so a write is checked when it is sent, not
    // when it joins the line.
    let builder = ClientBuilder::try_from(config)?;
    let throttle = ThrottleLayer::new(args.api_qps, args.api_burst);
    let client = match &fence {
        Some(fence) => builder
            .with_layer(&FenceLayer::new(fence.clone(), metrics.fenced_writes.clone()))
            .with_layer(&throttle)
            .build(),
        None => builder.with_layer(&throttle).build(),
    };
    tracing::info!(namespaces = ?settings.namespaces, concurrency = settings.concurrency, "starting");
    metrics.leader.set(1);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut controller = tokio::spawn(controller::run(client, settings, metrics.clone(), ready_tx, async move {
        let _ = stop_rx.await;
    }));
    let mut held = Box::pin(async {
        match (&mut elector, &fence) {
            (Some(elector), Some(fence)) => elector.hold(fence).await,
            _ => std::future::pending().await,
        }
    });

    let stopped = tokio::select! {
        _ = shutdown => None,
        ended = &mut controller => Some(anyhow::anyhow!("the controller stopped by itself{}", panic_note(ended))),
        lost = &mut held => Some(lost.into()),
    };
    if let Some(error) = stopped {
        // Leading no more and never again: writes are refused from now on, and
        // Kubernetes restarts the process as a fresh standby. Nothing is released:
        // the Lease expires in its time.
        if let Some(fence) = &fence {
            fence.close();
        }
        metrics.leader.set(0);
        tracing::error!(%error, "exiting");
        return Err(error);
    }

    // A signal: the syncs in flight finish while the Lease is still renewed.
    let _ = stop_tx.send(());
    let lost = tokio::select! {
        _ = controller => None,
        lost = &mut held => Some(lost),
    };
    metrics.leader.set(0);
    if let Some(lost) = lost {
        tracing::error!(error = %lost, "exiting");
        return Err(lost.into());
    }
    drop(held);
    if let (Some(elector), Some(fence)) = (elector, fence) {
        fence.close();
        if let Err(error) = elector.release().await {
            tracing::warn!(%error, "the Lease was not released: a standby takes over when it expires");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// What a finished controller task says about how it ended.
fn panic_note(ended: Result<(), tokio::task::JoinError>) -> String {
    match ended {
        Ok(()) => String::new(),
        Err(error) => format!(": {error}"),
    }
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
