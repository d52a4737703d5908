//! `petset-operator`: runs the controller (`run`) or prints the CRD (`crd`).

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;
use petset_operator::{
    controller::{self, Settings},
    metrics::Metrics,
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

    let client = Client::try_default().await?;
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

    let settings = Settings {
        namespaces: args.namespaces,
        concurrency: args.concurrency,
        instance: std::env::var("POD_NAME").ok(),
    };
    tracing::info!(namespaces = ?settings.namespaces, concurrency = settings.concurrency, "starting");
    controller::run(client, settings, metrics, ready_tx, shutdown_signal()).await;
    tracing::info!("stopped");
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
