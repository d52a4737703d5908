//! The benchmark behind `bench/run`: the same StatefulSet specs run by upstream's
//! StatefulSet controller (kube-controller-manager) and by petset, one at a time, on the
//! local control plane, at the same API request budget. See bench/README.md.

pub mod apiserver;
pub mod chart;
pub mod controllers;
pub mod observe;
pub mod report;
pub mod run;
pub mod stats;
pub mod workload;

use std::path::Path;

use anyhow::Context as _;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

/// A client for a kubeconfig file; kube-rs puts no client-side rate limit on it.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let file = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Two positive numbers around `separator` ("20/30", "100x30"); `example` shows the form.
pub fn positive_pair(s: &str, separator: char, example: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once(separator).ok_or_else(|| format!("{s:?}: write it as {example}"))?;
    let parse = |v: &str| {
        v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{s:?}: {v:?} is not a positive number"))
    };
    Ok((parse(a)?, parse(b)?))
}
