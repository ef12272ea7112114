//! `curves.svg`: train and validation loss per epoch, drawn after every epoch.

use plotters::prelude::*;

use crate::run::metrics_csv::EpochRow;

/// The loss curves of `rows` as an SVG document.
pub fn svg(rows: &[EpochRow]) -> Result<String, String> {
    let mut svg = String::new();
    draw(
        rows,
        SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area(),
    )
    .map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw<DB: DrawingBackend>(
    rows: &[EpochRow],
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let finite = || {
        rows.iter()
            .flat_map(|r| [r.train_loss, r.valid_loss])
            .filter(|v| v.is_finite())
    };
    let top = finite().fold(f64::MIN, f64::max).max(1e-3) * 1.05;
    let bottom = finite().fold(f64::MAX, f64::min).min(top) * 0.95;
    let last_epoch = rows.last().map_or(1, |r| r.epoch).max(2);
    let mut chart = ChartBuilder::on(&root)
        .caption("loss per epoch (nats per character)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1..last_epoch, bottom..top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()?;
    let series = [
        (
            "train",
            BLUE,
            rows.iter()
                .map(|r| (r.epoch, r.train_loss))
                .collect::<Vec<_>>(),
        ),
        (
            "validation",
            RED,
            rows.iter().map(|r| (r.epoch, r.valid_loss)).collect(),
        ),
    ];
    for (name, color, points) in series {
        let points: Vec<(usize, f64)> = points.into_iter().filter(|(_, v)| v.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    root.present()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_curves_as_svg() {
        let rows: Vec<EpochRow> = (1..=4)
            .map(|epoch| EpochRow {
                epoch,
                train_loss: 3.0 / epoch as f64,
                valid_loss: 3.2 / epoch as f64,
            })
            .collect();
        let svg = svg(&rows).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(svg.contains("validation") && svg.contains("train"));
        assert!(svg.matches("<polyline").count() >= 2, "two curves: {svg}");
    }
}
