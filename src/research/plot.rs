//! progress.png, in the manner of the reference's analysis: every trained experiment as a point
//! (kept ones highlighted), and the running best as a step line.

use std::path::Path;

use plotters::prelude::*;

use super::record::{Outcome, Record};

/// DejaVu Sans Mono (Bitstream Vera licence, assets/fonts/LICENSE-DejaVu.txt): embedded, so the
/// chart needs no system fonts.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

pub fn draw(records: &[Record], title: &str, path: &Path) -> anyhow::Result<()> {
    // Registering the same font twice is harmless; it makes `draw` usable more than once.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("the embedded font is unreadable"))?;
    let points: Vec<(f64, f64, bool)> = records
        .iter()
        .filter_map(|r| match (r.outcome, r.val_bpb) {
            (Outcome::Keep | Outcome::Discard, Some(v)) => {
                Some((r.n as f64, v, r.outcome == Outcome::Keep))
            }
            _ => None,
        })
        .collect();
    let mut best = f64::INFINITY;
    let mut steps = Vec::new();
    for &(x, y, kept) in &points {
        if kept && y < best {
            if best.is_finite() {
                steps.push((x, best));
            }
            best = y;
            steps.push((x, y));
        }
    }
    let x_max = records.iter().map(|r| r.n).max().unwrap_or(0) as f64 + 1.0;
    if let Some(&(_, last)) = steps.last() {
        steps.push((x_max, last));
    }
    let (mut y_min, mut y_max) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.1).max(1e-3);

    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..x_max, (y_min - pad)..(y_max + pad))?;
    chart
        .configure_mesh()
        .x_desc("experiment")
        .x_label_formatter(&experiment_label)
        .y_desc("val_bpb (lower is better)")
        .y_label_formatter(&|v| format!("{v:.4}"))
        .draw()?;
    let grey = RGBColor(170, 170, 170);
    let green = RGBColor(30, 150, 60);
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| !p.2)
                .map(|&(x, y, _)| Circle::new((x, y), 4, grey.filled())),
        )?
        .label("discarded")
        .legend(move |(x, y)| Circle::new((x, y), 4, grey.filled()));
    chart
        .draw_series(
            points
                .iter()
                .filter(|p| p.2)
                .map(|&(x, y, _)| Circle::new((x, y), 6, green.filled())),
        )?
        .label("kept")
        .legend(move |(x, y)| Circle::new((x, y), 6, green.filled()));
    chart
        .draw_series(LineSeries::new(steps, green.stroke_width(2)))?
        .label("running best")
        .legend(move |(x, y)| PathElement::new(vec![(x - 10, y), (x + 10, y)], green));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// An x tick's label: experiments are whole numbers, so a tick between two (plotters puts them at
/// 0.5 steps over a few experiments) has none, rather than a rounded repeat of its neighbour.
fn experiment_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_experiments_are_labelled() {
        let labels: Vec<String> = [-0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 10.0]
            .iter()
            .map(experiment_label)
            .collect();
        assert_eq!(labels, ["", "0", "", "1", "", "2", "10"]);
    }
}
