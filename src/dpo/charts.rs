//! Charts drawn on the server as SVG (plotters, SVG backend only): line charts for trends,
//! bars for per-activity figures. Each is inlined in a `<figure>` by the page, with its title,
//! a sentence that says what it shows, and its data as a table beside it, so a screen reader
//! and a printer get the same facts. No JavaScript.

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 300;
/// The State's blue and a red with 4.5:1 contrast on white, then a dark green and grey.
const COLOURS: [RGBColor; 4] =
    [RGBColor(0, 0, 145), RGBColor(201, 25, 30), RGBColor(24, 117, 60), RGBColor(80, 80, 80)];

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
#[error("a chart could not be drawn: {0}")]
pub struct ChartError(String);

fn err<E: std::fmt::Debug>(e: E) -> ChartError {
    ChartError(format!("{e:?}"))
}

/// The top of the y axis: a little above the largest value, at least 1.
fn y_top(max: f64) -> f64 {
    if max <= 0.0 { 1.0 } else { (max * 1.15).ceil() }
}

/// A line chart of `series` over `labels` (one value per label), as an SVG element.
pub fn line_chart(title: &str, labels: &[String], series: &[Series]) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max);
        let last = labels.len().saturating_sub(1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0usize..last, 0.0..y_top(max))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len())
            .x_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 16).into_font().color(&BLACK))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or(BLACK);
            let points: Vec<(usize, f64)> = s.values.iter().copied().enumerate().collect();
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(3)))
                .map_err(err)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3)));
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 16).into_font().color(&BLACK))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(accessible(&svg, title))
}

/// A bar chart: one bar per label.
pub fn bar_chart(title: &str, labels: &[String], values: &[f64]) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = values.iter().copied().fold(0.0, f64::max);
        let n = values.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d((0usize..n).into_segmented(), 0.0..y_top(max))
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels.get(*i).cloned().unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(("sans-serif", 16).into_font().color(&BLACK))
            .draw()
            .map_err(err)?;
        let fill = COLOURS.first().copied().unwrap_or(BLACK).filled();
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let mut bar = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *v)], fill);
                bar.set_margin(0, 0, 8, 8);
                bar
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(accessible(&svg, title))
}

/// The SVG made an image with a name for assistive technologies (the table beside it carries
/// the data), scaled down on narrow screens by the layout's CSS.
fn accessible(svg: &str, title: &str) -> String {
    let name = askama_escape(title);
    let body = svg.trim_start_matches(|c| c != '<');
    body.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{name}\" focusable=\"false\" class=\"chart\" "), 1)
}

fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_an_svg_image_with_its_name_and_lines() {
        let labels: Vec<String> = ["sept.", "oct.", "nov."].iter().map(|s| (*s).to_owned()).collect();
        let svg =
            line_chart("Accords & retraits", &labels, &[Series { name: "donnés".into(), values: vec![3.0, 8.0, 5.0] }])
                .unwrap();
        assert!(svg.starts_with("<svg role=\"img\" aria-label=\"Accords &amp; retraits\""), "{svg}");
        assert!(svg.contains("<polyline") || svg.contains("<path"), "a line is drawn");
        assert!(svg.contains("\noct.\n"), "axis labels are text: {svg}");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn a_bar_chart_has_one_bar_per_value() {
        let labels: Vec<String> = ["cantine", "etat-civil"].iter().map(|s| (*s).to_owned()).collect();
        let svg = bar_chart("Révélations", &labels, &[4.0, 9.0]).unwrap();
        let bars = svg.matches("<rect").count();
        assert!(bars >= 3, "background and two bars: {svg}");
        assert!(svg.contains("\netat-civil\n"), "{svg}");
    }
}
