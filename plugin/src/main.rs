//! `kubectl petset`: install it on the PATH (`cargo install --path plugin`, or copy the
//! binary) and kubectl finds it as a plugin.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use kube::{Api, Client};
use petset_crd::PetSet;
use petset_plugin::{
    migrate::{self, Target},
    rollout, status,
};

#[derive(Parser)]
#[command(name = "kubectl petset", about = "PetSets from kubectl: their state on one screen, and rollouts")]
struct Cli {
    /// The namespace; the kubeconfig context's when left out.
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The set, its members with their claims, the leader, conditions and last events.
    Status {
        name: String,
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Turns a running StatefulSet into a PetSet (`statefulset/NAME`), or a PetSet back
    /// into a StatefulSet (`petset/NAME --to statefulset`), restarting no pod.
    Migrate {
        /// `statefulset/NAME` or `petset/NAME`.
        object: String,
        /// The kind to migrate to: the other one when left out.
        #[arg(long, value_enum)]
        to: Option<Kind>,
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rollouts, as `kubectl rollout` has them for StatefulSets.
    Rollout {
        #[command(subcommand)]
        command: Rollout,
    },
}

#[derive(Subcommand)]
enum Rollout {
    /// Follows the rollout until it is done; fails if it failed.
    Status {
        name: String,
        /// Follow until done (default); `--watch=false` prints once.
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
        /// Give up after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// The revisions, or one revision's pod template.
    History {
        name: String,
        #[arg(long)]
        revision: Option<i64>,
    },
    /// Back to the previous revision's template, or to `--to-revision`.
    Undo {
        name: String,
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Replaces every pod, in rollout order.
    Restart { name: String },
    /// Holds the rollout: no pod moves to a newer revision.
    Pause { name: String },
    /// Lets a paused rollout go on.
    Resume { name: String },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Petset,
    Statefulset,
}

impl Kind {
    fn parse(object: &str) -> anyhow::Result<(Kind, &str)> {
        let (kind, name) = object.split_once('/').context("name the object as statefulset/NAME or petset/NAME")?;
        let kind = match kind {
            "statefulset" | "statefulsets" | "sts" | "statefulset.apps" => Kind::Statefulset,
            "petset" | "petsets" | "pets" | "petset.petset.dev" => Kind::Petset,
            other => anyhow::bail!("cannot migrate a {other}: only statefulset/NAME and petset/NAME"),
        };
        Ok((kind, name))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("reading the kubeconfig")?;
    let namespace = cli.namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let sets: Api<PetSet> = Api::namespaced(client.clone(), &namespace);
    match cli.command {
        Command::Status { name, output } => {
            let snapshot = status::gather(&client, &namespace, &name).await?;
            match output {
                Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&snapshot)?),
                Some(Output::Yaml) => print!("{}", serde_saphyr::to_string(&snapshot)?),
                None => print!("{}", status::render(&snapshot, terminal_width())),
            }
        }
        Command::Migrate { object, to, dry_run } => {
            let (from, name) = Kind::parse(&object)?;
            let target = match (from, to) {
                (Kind::Statefulset, None | Some(Kind::Petset)) => Target::PetSet,
                (Kind::Petset, None | Some(Kind::Statefulset)) => Target::StatefulSet,
                _ => anyhow::bail!("{object} is already that kind"),
            };
            let plan = migrate::plan(&client, &namespace, name, target).await?;
            print!("{}", plan.render());
            if !dry_run {
                println!("{}", migrate::run(&client, &namespace, &plan).await?);
            }
        }
        Command::Rollout { command } => match command {
            Rollout::Status { name, watch, timeout } => {
                let limit = (timeout > 0).then(|| Duration::from_secs(timeout));
                rollout::status(&sets, &name, watch, limit).await?;
            }
            Rollout::History { name, revision } => {
                let set = sets.get(&name).await.with_context(|| format!("reading PetSet {name}"))?;
                print!("{}", rollout::history(&name, &rollout::revisions(&client, &set).await?, revision)?);
            }
            Rollout::Undo { name, to_revision } => {
                println!("{}", rollout::undo(&sets, &client, &name, to_revision).await?)
            }
            Rollout::Restart { name } => println!("{}", rollout::restart(&sets, &name, jiff::Timestamp::now()).await?),
            Rollout::Pause { name } => println!("{}", rollout::pause(&sets, &name).await?),
            Rollout::Resume { name } => println!("{}", rollout::resume(&sets, &name).await?),
        },
    }
    Ok(())
}

/// The terminal's width as the shell exports it, else kubectl's usual 120 columns.
fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(120)
}
