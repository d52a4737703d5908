//! The local control plane's stand-ins for what real nodes and storage would do and
//! KWOK does not: volumes for the default StorageClass (`volumes`), and the end of a
//! graceful pod deletion (`pods`).

mod pods;
mod volumes;

use std::{sync::Arc, time::Duration};

use kube::{Client, runtime::controller::Action};

type Result<T> = std::result::Result<T, kube::Error>;

struct Ctx {
    client: Client,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let client = Client::try_default().await?;
    tokio::join!(volumes::run(client.clone()), pods::run(client));
    Ok(())
}

fn retry<K>(_: Arc<K>, error: &kube::Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}
