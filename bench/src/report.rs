//! A run's outputs: the JSON record (every figure, the command, the versions) and the
//! Markdown table the README shows.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    controllers::Budget,
    run::{Measured, Sizes},
};

#[derive(Serialize)]
pub struct Report {
    pub command: String,
    pub started: String,
    pub finished: String,
    pub versions: Versions,
    pub machine: Machine,
    pub sizes: Sizes,
    pub budgets: Vec<Budget>,
    pub timeout_seconds: u64,
    pub ceiling: Option<Measured>,
    pub results: Vec<Measured>,
}

#[derive(Serialize)]
pub struct Versions {
    pub kubernetes: String,
    pub petset: String,
}

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub memory_gib: f64,
}

impl Machine {
    pub fn this() -> Self {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
        }
    }
}

fn opt(value: Option<f64>, digits: usize, unit: &str) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}{unit}"))
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.sizes;
        let _ = writeln!(out, "Command: `{}`  ", self.command);
        let _ = writeln!(
            out,
            "Run {} to {} on {} CPUs, {} GiB; Kubernetes {}, petset {}.  ",
            self.started,
            self.finished,
            self.machine.cpus,
            self.machine.memory_gib,
            self.versions.kubernetes,
            self.versions.petset
        );
        let _ = writeln!(
            out,
            "Sizes: burst {} sets x {} pods (Parallel), ordered {} sets x {} pods (OrderedReady), one claim per pod.",
            s.burst_sets, s.burst_pods, s.ordered_sets, s.ordered_pods
        );
        let _ = writeln!(out);
        if let Some(c) = &self.ceiling {
            let _ = writeln!(
                out,
                "Ceiling (plain client, {} pods and claims at full speed, no controller): {} pods/s, {:.1}s, API p99 {}.",
                c.pods,
                opt(c.pods_per_second, 1, ""),
                c.seconds,
                opt(c.api_p99_ms, 0, " ms"),
            );
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "| scenario | budget (QPS/burst) | controller | time | pods/s | of ceiling | step p50 / p99 | writes per pod | API p99 | CPU | peak memory |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let ceiling = self.ceiling.as_ref().and_then(|c| c.pods_per_second);
        for m in &self.results {
            let budget = m.budget.map_or("–".into(), |b| b.to_string());
            let time = if m.done { format!("{:.1}s", m.seconds) } else { format!("stopped at {:.0}s", m.seconds) };
            let share = match (m.pods_per_second, ceiling, m.scenario) {
                (Some(r), Some(c), "burst" | "ordered") => format!("{:.0}%", 100.0 * r / c),
                _ => "–".into(),
            };
            let steps = m.step_ms.map_or("–".into(), |s| format!("{:.0} / {:.0} ms", s.p50, s.p99));
            let writes = match m.writes_per_pod {
                Some(w) => format!("{w:.2}"),
                None => format!("{} in all", m.writes),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                m.scenario,
                budget,
                m.controller,
                time,
                opt(m.pods_per_second, 1, ""),
                share,
                steps,
                writes,
                opt(m.api_p99_ms, 0, " ms"),
                opt(m.cpu_seconds, 1, " s"),
                opt(m.peak_memory_mb, 0, " MB"),
            );
        }
        let failures: Vec<&Measured> = self.results.iter().chain(self.ceiling.as_ref()).filter(|m| !m.done).collect();
        if !failures.is_empty() {
            let _ = writeln!(out);
            for m in failures {
                let _ = writeln!(
                    out,
                    "- {} / {} did not finish: {}",
                    m.scenario,
                    m.controller,
                    m.error.as_deref().unwrap_or("unknown")
                );
            }
        }
        out
    }
}
