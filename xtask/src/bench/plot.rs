//! The report's plots, drawn by the bench as SVG with plotters (no font files: text is written as SVG
//! `<text>`).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// Series colours, one per server in [`super::servers::SERVERS`] order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

/// Answered fraction (%) against offered rate (k qps): one line per `(label, [(offered, fraction)])`.
pub fn answered(path: &Path, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let max_x = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(x, _)| x))
        .fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Answered fraction against offered rate (kxdpgun, 1 queue)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max_x / 1000.0 * 1.05, 0.0..105.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc("offered rate, thousand queries per second")
        .y_desc("answered, %")
        .draw()
        .map_err(plot_err)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // The first series wide, so that one drawn over it along the same points leaves it visible.
        let width = if i == 0 { 5 } else { 2 };
        let pts: Vec<(f64, f64)> = points
            .iter()
            .map(|&(x, y)| (x / 1000.0, y * 100.0))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(width)))
            .map_err(plot_err)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(width))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// ns per packet by query kind: `(name, median, min)` bars, the floor's last in its own colour.
pub fn cost(path: &Path, cases: &[(String, f64, f64)], floor: Option<(f64, f64)>) -> Result<()> {
    let mut rows: Vec<(String, f64, f64, bool)> = cases
        .iter()
        .map(|(n, m, lo)| (n.clone(), *m, *lo, false))
        .collect();
    if let Some((m, lo)) = floor {
        rows.push(("floor: minimal XDP_TX".to_owned(), m, lo, true));
    }
    let n = rows.len().max(1);
    let max_x = rows.iter().map(|r| r.1.max(r.2)).fold(1.0_f64, f64::max) * 1.15;
    let height = 120 + 40 * n as u32;
    let root = SVGBackend::new(path, (800, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "XDP program, ns per packet by query kind (median; min as a line)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..max_x, -0.5..(n as f64 - 0.5))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .max_light_lines(0)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|y: &f64| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("ns per packet")
        .draw()
        .map_err(plot_err)?;
    for (i, (_, median, min, is_floor)) in rows.iter().enumerate() {
        let y = i as f64;
        let colour = if *is_floor { COLOURS[5] } else { COLOURS[0] };
        chart
            .draw_series([Rectangle::new(
                [(0.0, y - 0.35), (*median, y + 0.35)],
                colour.filled(),
            )])
            .map_err(plot_err)?;
        chart
            .draw_series([PathElement::new(
                vec![(*min, y - 0.4), (*min, y + 0.4)],
                BLACK.stroke_width(2),
            )])
            .map_err(plot_err)?;
        chart
            .draw_series([Text::new(
                format!("{median:.0}"),
                (*median + max_x * 0.01, y + 0.1),
                ("sans-serif", 14),
            )])
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_labels() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("answered.svg");
        answered(
            &a,
            &[
                ("ours".into(), vec![(50_000.0, 1.0), (100_000.0, 0.5)]),
                ("knot".into(), vec![]),
            ],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&a).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("ours"), "{svg}");
        let c = dir.join("cost.svg");
        cost(&c, &[("A hit".into(), 300.0, 250.0)], Some((120.0, 100.0))).unwrap();
        let svg = std::fs::read_to_string(&c).unwrap();
        assert!(svg.contains("A hit") && svg.contains("floor"), "{svg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
