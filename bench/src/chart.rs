//! The picture: Ready pods over time in the creation scenarios, one panel per scenario
//! and budget, one line per controller (and the plain client's ceiling).

use plotters::prelude::*;

use crate::{controllers::Budget, report::Report};

const SCENARIOS: [&str; 2] = ["burst", "ordered"];

fn color(controller: &str) -> RGBColor {
    match controller {
        "petset" => RGBColor(0, 114, 178),
        "upstream" => RGBColor(213, 94, 0),
        _ => RGBColor(120, 120, 120),
    }
}

pub fn svg(report: &Report) -> anyhow::Result<String> {
    let mut out = String::new();
    // A budget whose runs did not finish has no lines to draw.
    let budgets: Vec<&Budget> =
        report.budgets.iter().filter(|b| report.results.iter().any(|m| m.budget.as_ref() == Some(*b))).collect();
    let rows = budgets.len().max(1);
    {
        let root = SVGBackend::with_string(&mut out, (1000, 340 * rows as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((rows, SCENARIOS.len()));
        for (i, panel) in panels.iter().enumerate() {
            let budget = budgets.get(i / SCENARIOS.len()).copied();
            let scenario = SCENARIOS[i % SCENARIOS.len()];
            let mut lines: Vec<(&str, &[(f64, u64)])> = report
                .results
                .iter()
                .filter(|m| m.scenario == scenario && m.budget.as_ref() == budget)
                .map(|m| (m.controller, m.ready_over_time.as_slice()))
                .collect();
            if scenario == "burst" {
                lines.extend(report.ceiling.iter().map(|c| ("ceiling (plain client)", c.ready_over_time.as_slice())));
            }
            let x_max = lines.iter().flat_map(|(_, l)| l.iter().map(|p| p.0)).fold(1.0, f64::max);
            let y_max = lines.iter().flat_map(|(_, l)| l.iter().map(|p| p.1)).max().unwrap_or(1).max(1);
            let title = match budget {
                Some(b) => format!("{scenario}: Ready pods, budget {b} QPS/burst"),
                None => format!("{scenario}: Ready pods"),
            };
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..x_max * 1.05, 0u64..y_max + y_max / 20 + 1)?;
            chart.configure_mesh().x_desc("seconds").y_desc("Ready pods").light_line_style(WHITE).draw()?;
            for (controller, points) in lines {
                let style = color(controller).stroke_width(2);
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), style))?
                    .label(controller)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .border_style(BLACK.mix(0.3))
                .background_style(WHITE.mix(0.9))
                .draw()?;
        }
        root.present()?;
    }
    Ok(out)
}
