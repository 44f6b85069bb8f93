//! The report's four figures, drawn once as SVG with plotters and rasterised to PNG with resvg
//! (text in the bundled DejaVu Sans, so a PNG looks the same on every machine).

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::report::summary::{Group, Spread, Summary};
use crate::report::write_atomically;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const PANEL: (u32, u32) = (520, 420);
/// PNG pixels per SVG unit.
const PNG_SCALE: f32 = 2.0;
/// One colour per labelled subnet, in the space's order (00, 10, 01, 11 for the study).
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
/// Subnets not labelled (in a space of more than `COLOURS.len()`) are drawn in this.
const UNLABELLED: RGBColor = RGBColor(200, 200, 200);
/// In a large space, the best and the worst few subnets by final value are labelled.
const LABELLED_BEST: usize = 3;
const LABELLED_WORST: usize = 2;

/// Which subnets a figure labels, by their final values: all of a small space; in a larger
/// one the best `LABELLED_BEST` and the worst `LABELLED_WORST`.
fn labelled(finals: &[f64]) -> Vec<bool> {
    if finals.len() <= COLOURS.len() {
        return vec![true; finals.len()];
    }
    let mut order: Vec<usize> = (0..finals.len()).collect();
    order.sort_by(|&a, &b| finals[b].total_cmp(&finals[a]));
    let mut chosen = vec![false; finals.len()];
    let worst = &order[order.len() - LABELLED_WORST..];
    for &k in order[..LABELLED_BEST].iter().chain(worst) {
        chosen[k] = true;
    }
    chosen
}

/// The colour of each subnet: the palette in order over the labelled ones, grey for the rest.
fn colours(labelled: &[bool]) -> Vec<RGBColor> {
    let mut next = 0;
    labelled
        .iter()
        .map(|&l| {
            if !l {
                return UNLABELLED;
            }
            next += 1;
            COLOURS[(next - 1) % COLOURS.len()]
        })
        .collect()
}

/// A figure: its file stem and what it shows (for the report's captions).
pub struct Figure {
    pub stem: &'static str,
    pub caption: &'static str,
}

pub const FIGURES: [Figure; 4] = [
    Figure {
        stem: "oneshot_accuracy",
        caption: "One-shot test accuracy of each subnet after every epoch (mean over seeds)",
    },
    Figure {
        stem: "standalone_accuracy",
        caption: "Stand-alone test accuracy of each subnet after every epoch (mean over seeds)",
    },
    Figure {
        stem: "oneshot_vs_standalone",
        caption: "Final one-shot vs stand-alone accuracy; bars: one standard deviation over seeds",
    },
    Figure {
        stem: "kl_vs_standalone",
        caption: "KL proxy (after one-shot training) vs stand-alone accuracy; bars: one standard deviation over seeds",
    },
];

/// Writes `<stem>.svg` and `<stem>.png` of every figure into `dir`.
pub fn write_all(summary: &Summary, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let standalone_groups = first_group_per_variant(&summary.groups);
    let svgs = [
        draw(&summary.groups, 1, |area, g, _| {
            curves(area, g, &g.oneshot_curves, "one-shot")
        })?,
        draw(&standalone_groups, 1, |area, g, _| {
            curves(area, g, &g.standalone_curves, "stand-alone")
        })?,
        draw(&summary.groups, 1, |area, g, _| scatter_oneshot(area, g))?,
        draw(&summary.groups, 2, scatter_kl)?,
    ];
    for (figure, svg) in FIGURES.iter().zip(svgs) {
        write_atomically(&dir.join(format!("{}.svg", figure.stem)), svg.as_bytes())?;
        let png = rasterise(&svg, figure.stem)?;
        write_atomically(&dir.join(format!("{}.png", figure.stem)), &png)?;
    }
    Ok(())
}

/// Stand-alone trainings do not depend on the sampling strategy: one panel per variant.
fn first_group_per_variant(groups: &[Group]) -> Vec<Group> {
    let mut seen = Vec::new();
    groups
        .iter()
        .filter(|g| {
            let new = !seen.contains(&g.variant);
            seen.push(g.variant.clone());
            new
        })
        .cloned()
        .collect()
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// One column per group and `rows` rows; `panel(area, group, row)` draws each.
fn draw(
    groups: &[Group],
    rows: usize,
    panel: impl Fn(&Area, &Group, usize) -> DrawResult,
) -> Result<String> {
    let mut svg = String::new();
    {
        let size = (PANEL.0 * groups.len() as u32, PANEL.1 * rows as u32);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let areas = root.split_evenly((rows, groups.len()));
        for (i, area) in areas.iter().enumerate() {
            let (row, column) = (i / groups.len(), i % groups.len());
            panel(area, &groups[column], row).map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(error: impl std::fmt::Display) -> Error {
    Error::invalid("figure", error.to_string())
}

fn title(group: &Group, what: &str) -> String {
    if what.is_empty() {
        format!("{} SuperNet, {} sampling", group.variant, group.sampling)
    } else {
        format!("{} SuperNet, {what}", group.variant)
    }
}

/// `[lo, hi]` padded by 5% on each side (or a little, if all values are equal).
fn padded(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-4);
    (lo - pad)..(hi + pad)
}

/// Enough decimals for about five ticks over `range` to read apart.
fn decimals(range: &Range<f64>) -> usize {
    let step = (range.end - range.start) / 5.0;
    (-step.log10().floor()).clamp(0.0, 8.0) as usize
}

fn curves(area: &Area, group: &Group, curves: &[Vec<f64>], what: &str) -> DrawResult {
    let epochs = curves.iter().map(Vec::len).max().unwrap_or(1).max(2);
    let y = padded(curves.iter().flatten().copied());
    let y_decimals = decimals(&y);
    let caption = if what == "one-shot" {
        title(group, "")
    } else {
        title(group, what)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(1f64..epochs as f64, y)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(format!("{what} test accuracy"))
        .x_labels(epochs.min(15))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .draw()?;
    let finals: Vec<f64> = curves
        .iter()
        .map(|c| c.last().copied().unwrap_or(f64::NAN))
        .collect();
    let labelled = labelled(&finals);
    let colours = colours(&labelled);
    // The unlabelled first, so that the labelled are drawn over them.
    for (k, curve) in curves.iter().enumerate().filter(|(k, _)| !labelled[*k]) {
        let points = curve.iter().enumerate().map(|(e, &a)| ((e + 1) as f64, a));
        chart.draw_series(LineSeries::new(points, colours[k].stroke_width(1)))?;
    }
    for (k, curve) in curves.iter().enumerate().filter(|(k, _)| labelled[*k]) {
        let colour = colours[k];
        let points = curve.iter().enumerate().map(|(e, &a)| ((e + 1) as f64, a));
        chart.draw_series(points.clone().map(|p| Circle::new(p, 3, colour.filled())))?;
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
            .label(group.subnets[k].subnet.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Points with error bars in x and y, one per subnet, labelled by name.
fn scatter(
    area: &Area,
    caption: String,
    x_desc: &str,
    points: &[(String, &Spread, &Spread)],
) -> DrawResult {
    let mean = |s: &Spread| s.mean.unwrap_or(f64::NAN);
    let std = |s: &Spread| s.std.unwrap_or(0.0);
    let x = padded(
        points
            .iter()
            .flat_map(|(_, x, _)| [mean(x) - std(x), mean(x) + std(x)]),
    );
    let y = padded(
        points
            .iter()
            .flat_map(|(_, _, y)| [mean(y) - std(y), mean(y) + std(y)]),
    );
    let (x_decimals, y_decimals) = (decimals(&x), decimals(&y));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("stand-alone accuracy")
        .x_label_formatter(&|v| format!("{v:.x_decimals$}"))
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .draw()?;
    let finals: Vec<f64> = points.iter().map(|(_, _, y)| mean(y)).collect();
    let labelled = labelled(&finals);
    let colours = colours(&labelled);
    let unlabelled_first = (0..points.len()).filter(|&k| !labelled[k]);
    for k in unlabelled_first.chain((0..points.len()).filter(|&k| labelled[k])) {
        let (name, sx, sy) = &points[k];
        let colour = colours[k];
        let (cx, cy) = (mean(sx), mean(sy));
        let (ex, ey) = (std(sx), std(sy));
        chart.draw_series([
            PathElement::new(vec![(cx - ex, cy), (cx + ex, cy)], colour.stroke_width(1)),
            PathElement::new(vec![(cx, cy - ey), (cx, cy + ey)], colour.stroke_width(1)),
        ])?;
        chart.draw_series([Circle::new((cx, cy), 5, colour.filled())])?;
        if labelled[k] {
            chart.draw_series([Text::new(
                name.clone(),
                (cx, cy),
                ("sans-serif", 15).into_font().color(&colour),
            )])?;
        }
    }
    Ok(())
}

fn scatter_oneshot(area: &Area, group: &Group) -> DrawResult {
    let points: Vec<_> = group
        .subnets
        .iter()
        .map(|s| (format!(" {}", s.subnet), &s.oneshot, &s.standalone))
        .collect();
    scatter(area, title(group, ""), "one-shot accuracy", &points)
}

fn scatter_kl(area: &Area, group: &Group, row: usize) -> DrawResult {
    let (reference, x_desc) = match row {
        0 => ("all paths on", "KL from the all-paths SuperNet"),
        _ => (
            "mean of subnets",
            "KL from the mean prediction of the subnets",
        ),
    };
    let points: Vec<_> = group
        .subnets
        .iter()
        .map(|s| {
            let kl = if row == 0 {
                &s.kl_all_paths
            } else {
                &s.kl_mean_of_subnets
            };
            (format!(" {}", s.subnet), kl, &s.standalone)
        })
        .collect();
    let caption = format!("{}: {reference}", title(group, ""));
    scatter(area, caption, x_desc, &points)
}

fn rasterise(svg: &str, stem: &str) -> Result<Vec<u8>> {
    let failed = |detail: String| Error::invalid("figure", format!("{stem}.png: {detail}"));
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    options.font_family = "DejaVu Sans".to_string();
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(|e| failed(e.to_string()))?;
    let size = tree.size().to_int_size().scale_by(PNG_SCALE);
    let size = size.ok_or_else(|| failed("empty figure".into()))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| failed("empty figure".into()))?;
    let scale = resvg::tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE);
    resvg::render(&tree, scale, &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| failed(e.to_string()))
}
