//! The report's figures, drawn as SVG with plotters and rasterised to PNG with resvg (text in
//! the bundled DejaVu Sans, so a PNG looks the same on every machine).
//!
//! Made to be printed: a panel is `PANEL` pixels, meant for a column of `COLUMN_INCHES`, so a
//! figure of two panel columns fills a 6.5-inch text width; at that width the smallest text
//! (`TICK_FONT`) is 9.7 pt. Panels of one figure share their axes. Subnets are told apart by
//! colour (the Okabe-Ito palette, safe for colour-blind readers) and by marker shape; in a
//! large space only the best and the worst few are labelled, the rest drawn in grey. Every
//! figure ends with the key to the subnet names.

use std::ops::Range;
use std::path::Path;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::Shift;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

use crate::error::{Error, Result};
use crate::model::SearchSpace;
use crate::report::markdown::{interval, signed};
use crate::report::summary::{
    Curve, Estimate, Group, GroupAgreement, Predictor, Spread, SubnetSpread, Summary,
};
use crate::report::write_atomically;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const PANEL: (u32, u32) = (520, 460);
/// The print width of one panel column: two columns fill a 6.5-inch text width.
pub const COLUMN_INCHES: f64 = 3.25;
/// Pixels; 20 px on a 520-px panel printed 3.25 inches wide is 9.7 pt.
const TICK_FONT: u32 = 20;
const LABEL_FONT: u32 = 22;
const TITLE_FONT: u32 = 23;
/// The key to the subnet names, under the panels.
/// The key underneath a figure: a line's height, and the room around the lines.
const FOOTER_LINE: u32 = 26;
const FOOTER_PAD: u32 = 18;
const COLUMNS: usize = 2;
/// PNG pixels per SVG unit.
const PNG_SCALE: f32 = 2.0;

/// Okabe & Ito's palette (its blue first, its yellow last: the faintest on white), then shapes, so that neither colour nor shape alone
/// has to tell subnets apart.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];
const SHAPES: usize = 5;
/// Subnets not labelled (in a space of more than `COLOURS.len()`) are drawn in this.
const UNLABELLED: RGBColor = RGBColor(190, 190, 190);
/// In a large space, the best and the worst few subnets by their final value are labelled.
const LABELLED_BEST: usize = 3;
/// A scatter marker's size in pixels (the radius of its circle).
const MARKER: i32 = 6;
/// A log axis with more ticks than this keeps only the powers of ten.
const LOG_TICKS: usize = 7;
const LABELLED_WORST: usize = 2;

/// A figure: its file stem and what it shows (for the report's captions).
pub struct Figure {
    pub stem: &'static str,
    pub caption: &'static str,
}

pub const FIGURES: [Figure; 6] = [
    Figure {
        stem: "rank_agreement",
        caption: "Kendall tau-b of each predictor against stand-alone test accuracy: mean over seeds and 95 % bootstrap interval; the grey band is the noise ceiling (two stand-alone seeds) with its interval",
    },
    Figure {
        stem: "oneshot_vs_standalone",
        caption: "Final one-shot error (1 - accuracy, on the ranking split) against stand-alone test error, both on log scales; bars: one standard deviation over seeds; dashed: y = x; solid: least-squares line of the logs",
    },
    Figure {
        stem: "oneshot_accuracy",
        caption: "One-shot test accuracy after every epoch; line: mean over seeds, band: one standard deviation",
    },
    Figure {
        stem: "standalone_accuracy",
        caption: "Stand-alone test accuracy after every epoch; line: mean over seeds, band: one standard deviation",
    },
    Figure {
        stem: "kl_vs_standalone",
        caption: "KL proxy after one-shot training against stand-alone test error, log scales (top: from the all-paths SuperNet; bottom: from the mean of the subnets); bars: one standard deviation over seeds; solid: least-squares line of the logs",
    },
    Figure {
        stem: "zero_cost_vs_standalone",
        caption: "Zero-cost proxies at initialisation against stand-alone test error, log scales (rows: gradient norm, SNIP, SynFlow; the sampling strategy plays no part); bars: one standard deviation of the logs over seeds; solid: least-squares line of the logs",
    },
];

/// Writes `<stem>.svg` and `<stem>.png` of every figure into `dir`.
pub fn write_all(summary: &Summary, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let key = SearchSpace::parse(&summary.plan.space)
        .map(|s| format!("Subnet names: {}", s.key()))
        .unwrap_or_default();
    let groups = &summary.groups;
    let standalone = first_group_per_variant(groups);
    // rank_agreement keys its band and lines below the panels.
    let agreement_key = format!(
        "Grey band and line: the noise ceiling (two stand-alone seeds' tau), 95 % interval and mean. \
         Dashed: a random ranking. (base): a trivial baseline, the subnet's size. {key}"
    );
    let svgs = [
        draw(groups, 1, &agreement_key, |area, g, _| {
            rank_agreement(area, g, summary)
        })?,
        draw(groups, 1, &key, |area, g, _| {
            scatter(area, g, &Axis::oneshot(summary), summary)
        })?,
        draw(groups, 1, &key, |area, g, _| {
            curves(area, g, |g| &g.oneshot_curves, "one-shot", groups)
        })?,
        draw(&standalone, 1, &key, |area, g, _| {
            curves(
                area,
                g,
                |g| &g.standalone_curves,
                "stand-alone",
                &standalone,
            )
        })?,
        draw(groups, 2, &key, |area, g, row| {
            scatter(area, g, &Axis::kl(summary, row), summary)
        })?,
        // The proxies score the initialisation, which the sampling strategy does not touch.
        draw(&standalone, 3, &key, |area, g, row| {
            scatter(area, g, &Axis::zero_cost(summary, row), summary)
        })?,
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

/// Each group's `rows` panels stacked, the groups in up to `COLUMNS` columns, and the key
/// underneath; `panel(area, group, row)` draws each.
fn draw(
    groups: &[Group],
    rows: usize,
    key: &str,
    panel: impl Fn(&Area, &Group, usize) -> DrawResult,
) -> Result<String> {
    let columns = groups.len().clamp(1, COLUMNS);
    let group_rows = groups.len().div_ceil(columns);
    let width = PANEL.0 * columns as u32;
    let key_lines = wrap(key, width);
    let footer_height = FOOTER_LINE * key_lines.len() as u32 + FOOTER_PAD;
    let mut svg = String::new();
    {
        let height = PANEL.1 * (group_rows * rows) as u32 + footer_height;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (panels, footer) = root.split_vertically(height - footer_height);
        let areas = panels.split_evenly((group_rows * rows, columns));
        for (g, group) in groups.iter().enumerate() {
            for row in 0..rows {
                let (grid_row, column) = ((g / columns) * rows + row, g % columns);
                panel(&areas[grid_row * columns + column], group, row).map_err(plot_error)?;
            }
        }
        for (line, text) in key_lines.iter().enumerate() {
            let at = (12, 8 + (FOOTER_LINE as usize * line) as i32);
            footer
                .draw_text(text, &font(TICK_FONT), at)
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// `text` in lines that fit `width` pixels, broken after its commas and colons.
fn wrap(text: &str, width: u32) -> Vec<String> {
    let fits = ((width - 24) as f64 / (0.5 * TICK_FONT as f64)) as usize;
    let mut lines = vec![String::new()];
    for piece in text.split_inclusive([',', ':']) {
        let line = lines.last_mut().expect("lines start with one");
        if !line.is_empty() && line.chars().count() + piece.chars().count() > fits {
            lines.push(piece.trim_start().to_string());
        } else {
            line.push_str(piece);
        }
    }
    lines
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

fn plot_error(error: impl std::fmt::Display) -> Error {
    Error::invalid("figure", error.to_string())
}

fn title(group: &Group) -> String {
    format!("{}, {} sampling", group.variant, group.sampling)
}

/// A panel of the zero-cost figure is about a variant's initialisation, not a sampling.
fn scatter_title(group: &Group, axis: &Axis) -> String {
    match axis.predictor {
        Predictor::GradNorm | Predictor::Snip | Predictor::Synflow => {
            format!("{} SuperNet, at initialisation", group.variant)
        }
        _ => title(group),
    }
}

/// `[lo, hi]` padded by 5 % on each side (or a little, if all values are equal).
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

/// Each subnet's colour and shape: the palette and the shapes in turn over the labelled
/// ones; grey circles for the rest.
fn styles(labelled: &[bool]) -> Vec<(RGBColor, usize)> {
    let mut next = 0;
    labelled
        .iter()
        .map(|&l| {
            if !l {
                return (UNLABELLED, 0);
            }
            next += 1;
            (COLOURS[(next - 1) % COLOURS.len()], (next - 1) % SHAPES)
        })
        .collect()
}

/// A marker of `shape` (circle, triangle, square, diamond, cross) centred on `at`: one element
/// type for every shape, usable in a series and in its legend alike.
struct Mark<C> {
    at: C,
    shape: usize,
    colour: RGBColor,
    size: i32,
}

fn marker<C>(at: C, shape: usize, colour: RGBColor, size: i32) -> Mark<C> {
    Mark {
        at,
        shape,
        colour,
        size,
    }
}

impl<'a, C: 'a> PointCollection<'a, C> for &'a Mark<C> {
    type Point = &'a C;
    type IntoIter = std::iter::Once<&'a C>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.at)
    }
}

impl<C, DB: DrawingBackend> Drawable<DB> for Mark<C> {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> std::result::Result<(), DrawingErrorKind<DB::ErrorType>> {
        let Some((x, y)) = points.next() else {
            return Ok(());
        };
        let (s, t) = (self.size, self.size + 2);
        let fill = self.colour.filled();
        match self.shape % SHAPES {
            0 => backend.draw_circle((x, y), s as u32, &fill, true),
            1 => backend.fill_polygon([(x, y - t), (x + t, y + s), (x - t, y + s)], &fill),
            2 => backend.draw_rect((x - s, y - s), (x + s, y + s), &fill, true),
            3 => backend.fill_polygon([(x, y - t), (x + t, y), (x, y + t), (x - t, y)], &fill),
            _ => {
                let stroke = self.colour.stroke_width(3);
                backend.draw_line((x - s, y - s), (x + s, y + s), &stroke)?;
                backend.draw_line((x - s, y + s), (x + s, y - s), &stroke)
            }
        }
    }
}

/// Curves over epochs with a band of one standard deviation; panels share the y range.
/// `pick`: which curves of a group; `all`: the groups whose panels share the y range.
fn curves(
    area: &Area,
    group: &Group,
    pick: fn(&Group) -> &[Curve],
    what: &str,
    all: &[Group],
) -> DrawResult {
    let curves = pick(group);
    let every: Vec<&Curve> = all.iter().flat_map(pick).collect();
    let epochs = every.iter().map(|c| c.mean.len()).max().unwrap_or(1).max(2);
    let y = padded(
        every
            .iter()
            .flat_map(|c| c.mean.iter().zip(&c.std).flat_map(|(m, s)| [m - s, m + s])),
    );
    let y_decimals = decimals(&y);
    let caption = if what == "one-shot" {
        title(group)
    } else {
        format!("{} SuperNet", group.variant)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(TITLE_FONT))
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(1f64..epochs as f64, y)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(format!("{what} test accuracy"))
        .label_style(font(TICK_FONT))
        .axis_desc_style(font(LABEL_FONT))
        .x_labels(epochs.min(8))
        .y_labels(6)
        .light_line_style(WHITE)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .draw()?;
    let finals: Vec<f64> = curves
        .iter()
        .map(|c| c.mean.last().copied().unwrap_or(f64::NAN))
        .collect();
    let labelled = labelled(&finals);
    let styles = styles(&labelled);
    let points = |c: &Curve| -> Vec<(f64, f64)> {
        c.mean
            .iter()
            .enumerate()
            .map(|(e, &a)| ((e + 1) as f64, a))
            .collect()
    };
    // The unlabelled first, so that the labelled are drawn over them.
    for (k, curve) in curves.iter().enumerate().filter(|(k, _)| !labelled[*k]) {
        chart.draw_series(LineSeries::new(points(curve), styles[k].0.stroke_width(1)))?;
    }
    for (k, curve) in curves.iter().enumerate().filter(|(k, _)| labelled[*k]) {
        let (colour, shape) = styles[k];
        let upper = curve.mean.iter().zip(&curve.std).map(|(m, s)| m + s);
        let lower = curve.mean.iter().zip(&curve.std).map(|(m, s)| m - s);
        let band: Vec<(f64, f64)> = upper
            .enumerate()
            .map(|(e, v)| ((e + 1) as f64, v))
            .chain(lower.enumerate().map(|(e, v)| ((e + 1) as f64, v)).rev())
            .collect();
        chart.draw_series([Polygon::new(band, colour.mix(0.15).filled())])?;
        chart.draw_series(LineSeries::new(points(curve), colour.stroke_width(2)))?;
        chart
            .draw_series(
                points(curve)
                    .into_iter()
                    .map(|p| marker(p, shape, colour, 5)),
            )?
            .label(group.subnets[k].subnet.clone())
            .legend(move |(x, y)| marker((x + 9, y), shape, colour, 5));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(font(TICK_FONT))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A value over seeds on a log axis: its centre and the ends of its bar (one sd).
#[derive(Clone, Copy, Debug)]
struct Bar {
    at: f64,
    lo: f64,
    hi: f64,
}

/// The least a log axis shows of an error: a hundredth of a percent, about one test image.
const ERROR_FLOOR: f64 = 1e-4;

/// Error (1 - accuracy) of an accuracy over seeds.
fn error_bar(s: &Spread) -> Option<Bar> {
    let (m, sd) = (s.mean?, s.std.unwrap_or(0.0));
    let floor = |v: f64| v.max(ERROR_FLOOR);
    Some(Bar {
        at: floor(1.0 - m),
        lo: floor(1.0 - m - sd),
        hi: floor(1.0 - m + sd),
    })
}

/// A positive value over seeds; a bar that would reach zero stops at a tenth of the centre.
fn positive_bar(s: &Spread) -> Option<Bar> {
    let (m, sd) = (s.mean?, s.std.unwrap_or(0.0));
    (m > 0.0).then(|| Bar {
        at: m,
        lo: (m - sd).max(m / 10.0),
        hi: m + sd,
    })
}

/// What a scatter's x axis shows, over every group (for shared axes); both axes are log.
struct Axis {
    label: &'static str,
    predictor: Predictor,
    /// x per subnet of a group (None where the group lacks it).
    x: AxisValue,
    range: Range<f64>,
    y_range: Range<f64>,
}

type AxisValue = fn(&Group, &SubnetSpread, &Summary) -> Option<Bar>;

/// `[lo, hi]` widened by a fifth on each side of a log axis.
fn log_padded(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return 0.001..1.0;
    }
    (lo / 1.2)..(hi * 1.2).max(lo * 1.5)
}

impl Axis {
    /// x from `x`, y the stand-alone test error, both ranges over every group's subnets.
    fn new(summary: &Summary, label: &'static str, predictor: Predictor, x: AxisValue) -> Axis {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for g in &summary.groups {
            for s in &g.subnets {
                if let Some(bar) = x(g, s, summary) {
                    xs.extend([bar.lo, bar.hi]);
                }
                if let Some(bar) = error_bar(&s.standalone_test) {
                    ys.extend([bar.lo, bar.hi]);
                }
            }
        }
        Axis {
            label,
            predictor,
            x,
            range: log_padded(xs.into_iter()),
            y_range: log_padded(ys.into_iter()),
        }
    }

    /// One-shot and stand-alone errors on one range, so that y = x is the diagonal.
    fn oneshot(summary: &Summary) -> Axis {
        let mut axis = Self::new(
            summary,
            "one-shot error (ranking split)",
            Predictor::OneshotAccuracy,
            |_, s, _| error_bar(&s.oneshot),
        );
        let (x, y) = (axis.range.clone(), axis.y_range.clone());
        axis.range = x.start.min(y.start)..x.end.max(y.end);
        axis.y_range = axis.range.clone();
        axis
    }

    fn kl(summary: &Summary, row: usize) -> Axis {
        match row {
            0 => Self::new(
                summary,
                "KL from the all-paths SuperNet",
                Predictor::KlAllPaths,
                |_, s, _| positive_bar(&s.kl_all_paths),
            ),
            _ => Self::new(
                summary,
                "KL from the mean of the subnets",
                Predictor::KlMeanOfSubnets,
                |_, s, _| positive_bar(&s.kl_mean_of_subnets),
            ),
        }
    }

    fn zero_cost(summary: &Summary, row: usize) -> Axis {
        match row {
            0 => Self::new(
                summary,
                "gradient norm at init",
                Predictor::GradNorm,
                |g, s, sum| zero_cost_bar(g, s, sum, Predictor::GradNorm),
            ),
            1 => Self::new(summary, "SNIP at init", Predictor::Snip, |g, s, sum| {
                zero_cost_bar(g, s, sum, Predictor::Snip)
            }),
            _ => Self::new(
                summary,
                "SynFlow at init",
                Predictor::Synflow,
                |g, s, sum| zero_cost_bar(g, s, sum, Predictor::Synflow),
            ),
        }
    }
}

/// A zero-cost proxy over the group's seeds: the geometric mean, a bar of one sd of log10.
fn zero_cost_bar(g: &Group, s: &SubnetSpread, summary: &Summary, p: Predictor) -> Option<Bar> {
    let logs: Vec<Option<f64>> = summary
        .runs
        .iter()
        .filter(|r| r.variant == g.variant && r.sampling == g.sampling)
        .filter_map(|r| r.subnets.iter().find(|x| x.subnet == s.subnet))
        .filter_map(|x| p.score(x))
        .filter(|v| *v > 0.0)
        .map(|v| Some(v.log10()))
        .collect();
    let spread = Spread::of(logs);
    let (m, sd) = (spread.mean?, spread.std.unwrap_or(0.0));
    Some(Bar {
        at: 10f64.powf(m),
        lo: 10f64.powf(m - sd),
        hi: 10f64.powf(m + sd),
    })
}

/// The ticks of a log axis: 1, 2 and 5 times the powers of ten inside `range`; only the
/// powers where those would crowd (more than `LOG_TICKS`); finer steps where they are too few.
fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let (lo, hi) = (
        range.start.log10().floor() as i32,
        range.end.log10().ceil() as i32,
    );
    let inside = |steps: &[f64]| -> Vec<f64> {
        (lo..=hi)
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| range.contains(v))
            .collect()
    };
    let ticks = inside(&[1.0, 2.0, 5.0]);
    if ticks.len() > LOG_TICKS {
        inside(&[1.0])
    } else if ticks.len() < 3 {
        // Less than a decade: the steps that stay apart on a log axis.
        inside(&[1.0, 1.5, 2.0, 3.0, 5.0, 7.0])
    } else {
        ticks
    }
}

/// A tick of a log axis: "0.01", "0.25", "3e4", "1.5e4".
fn log_tick(v: f64) -> String {
    if !(1e-3..1e3).contains(&v) {
        // One decimal only where the tick has one (1.5e4), so that 1.5e4 is not shown as 2e4.
        let short = format!("{v:.0e}");
        let exact = short
            .parse::<f64>()
            .is_ok_and(|s| ((s - v) / v).abs() < 1e-9);
        return if exact { short } else { format!("{v:.1e}") };
    }
    // Two significant digits (0.0015, 0.25, 1.5, 150), trailing zeros dropped.
    let decimals = (1 - v.log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A subnet's index, its x and its y.
type ScatterPoint = (usize, Bar, Bar);

/// One point per subnet with bars of one sd over seeds, on log axes (the top subnets, a tenth
/// of a percent apart, stay apart from the ones ten times worse); the least-squares line of
/// the logs; y = x where both axes are errors; and the predictor's tau with its interval.
fn scatter(area: &Area, group: &Group, axis: &Axis, summary: &Summary) -> DrawResult {
    let points: Vec<ScatterPoint> = group
        .subnets
        .iter()
        .enumerate()
        .filter_map(|(k, s)| {
            Some((
                k,
                (axis.x)(group, s, summary)?,
                error_bar(&s.standalone_test)?,
            ))
        })
        .collect();
    let mut chart = scatter_chart(area, group, axis)?;
    if points.is_empty() {
        return Ok(());
    }
    let fit = draw_guides(&mut chart, axis, &points)?;
    let mut labels = Labels {
        area: chart.plotting_area().get_pixel_range(),
        placed: Vec::new(),
    };
    // The best have the smallest error.
    let finals: Vec<f64> = points.iter().map(|(_, _, y)| -y.at).collect();
    let labelled = labelled(&finals);
    let styles = styles(&labelled);
    draw_points(&mut chart, &mut labels, &points, &labelled, &styles)?;
    if let Some(agreement) = group.predictor(axis.predictor) {
        draw_tau(&mut chart, &mut labels, axis, &points, agreement, fit)?;
    }
    // Named after every marker is down, so that no name covers a point.
    for (i, &(k, x, y)) in points.iter().enumerate().filter(|(i, _)| labelled[*i]) {
        let name = &group.subnets[k].subnet;
        draw_name(&mut chart, &mut labels, (x.at, y.at), name, styles[i].0)?;
    }
    Ok(())
}

/// A scatter panel's chart: log axes on both sides, with their ticks and names.
type LogChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<WithKeyPoints<LogCoord<f64>>, WithKeyPoints<LogCoord<f64>>>,
>;

fn scatter_chart<'a, 'b>(
    area: &'a Area<'b>,
    group: &Group,
    axis: &Axis,
) -> std::result::Result<LogChart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(scatter_title(group, axis), font(TITLE_FONT))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(
            axis.range
                .clone()
                .log_scale()
                .with_key_points(log_ticks(&axis.range)),
            axis.y_range
                .clone()
                .log_scale()
                .with_key_points(log_ticks(&axis.y_range)),
        )?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (log)", axis.label))
        .y_desc("stand-alone test error (log)")
        .label_style(font(TICK_FONT))
        .axis_desc_style(font(LABEL_FONT))
        .light_line_style(WHITE)
        .x_label_formatter(&|v| log_tick(*v))
        .y_label_formatter(&|v| log_tick(*v))
        .draw()?;
    Ok(chart)
}

/// y = x where both axes are errors, and the least-squares line of the logs; returns the
/// line's (slope, intercept) in log10 units.
fn draw_guides(
    chart: &mut LogChart,
    axis: &Axis,
    points: &[ScatterPoint],
) -> std::result::Result<Option<(f64, f64)>, Box<dyn std::error::Error>> {
    let grey = RGBColor(120, 120, 120);
    if axis.predictor == Predictor::OneshotAccuracy {
        let (lo, hi) = (axis.range.start, axis.range.end);
        chart.draw_series(DashedLineSeries::new(
            [(lo, lo), (hi, hi)],
            8,
            6,
            grey.stroke_width(2),
        ))?;
    }
    let logs: Vec<(f64, f64)> = points
        .iter()
        .map(|(_, x, y)| (x.at.log10(), y.at.log10()))
        .collect();
    let fit = least_squares(&logs);
    if let Some((slope, intercept)) = fit {
        let span = log_padded(points.iter().map(|(_, x, _)| x.at));
        let span = within_y(span, (slope, intercept), &axis.y_range);
        let line = (0..=20).map(|i| {
            let x = span.start * (span.end / span.start).powf(i as f64 / 20.0);
            (x, 10f64.powf(slope * x.log10() + intercept))
        });
        chart.draw_series(LineSeries::new(line, grey.stroke_width(2)))?;
    }
    Ok(fit)
}

/// The part of `span` (x values) where the line `log y = slope log x + intercept` stays
/// inside `y_range`, so that a steep fit ends at the panel's edge instead of running past it.
fn within_y(span: Range<f64>, (slope, intercept): (f64, f64), y_range: &Range<f64>) -> Range<f64> {
    if slope == 0.0 {
        return span;
    }
    let x_at = |y: f64| 10f64.powf((y.log10() - intercept) / slope);
    let (a, b) = (x_at(y_range.start), x_at(y_range.end));
    let (lo, hi) = (a.min(b), a.max(b));
    let clipped = span.start.max(lo)..span.end.min(hi);
    if clipped.start < clipped.end {
        clipped
    } else {
        span
    }
}

/// The predictor's tau with its interval, in a corner clear of every marker and error bar:
/// the top one the points leave empty first (left where they rise, right where they fall).
fn draw_tau(
    chart: &mut LogChart,
    labels: &mut Labels,
    axis: &Axis,
    points: &[ScatterPoint],
    agreement: &GroupAgreement,
    fit: Option<(f64, f64)>,
) -> DrawResult {
    let text = format!(
        "tau {} {}",
        signed(agreement.kendall_tau.spread.mean),
        interval(&agreement.kendall_tau)
    );
    let width = Labels::width(&text);
    let bars: Vec<Box4> = points
        .iter()
        .flat_map(|&(_, x, y)| {
            let (left, right) = (
                chart.backend_coord(&(x.lo, y.at)),
                chart.backend_coord(&(x.hi, y.at)),
            );
            let (top, bottom) = (
                chart.backend_coord(&(x.at, y.hi)),
                chart.backend_coord(&(x.at, y.lo)),
            );
            [
                (left.0, left.1 - 1, right.0, right.1 + 1),
                (top.0 - 1, top.1, bottom.0 + 1, bottom.1),
            ]
        })
        .collect();
    let falling = fit.is_some_and(|(slope, _)| slope < 0.0);
    let corner = labels.corner(width, falling, &bars);
    // Drawn from the panel's top-left data corner, offset to the chosen pixel corner.
    let origin_data = (axis.range.start, axis.y_range.end);
    let origin = chart.backend_coord(&origin_data);
    let offset = (corner.0 - origin.0, corner.1 - origin.1);
    labels.reserve(origin, offset, width);
    chart
        .draw_series([EmptyElement::at(origin_data) + Text::new(text, offset, font(TICK_FONT))])?;
    Ok(())
}

/// Every point with its bars of one sd, the named ones last so that they stay on top.
fn draw_points(
    chart: &mut LogChart,
    labels: &mut Labels,
    points: &[ScatterPoint],
    labelled: &[bool],
    styles: &[(RGBColor, usize)],
) -> DrawResult {
    let order = (0..points.len())
        .filter(|&i| !labelled[i])
        .chain((0..points.len()).filter(|&i| labelled[i]));
    for i in order {
        let (_, x, y) = points[i];
        let (colour, shape) = styles[i];
        chart.draw_series([
            PathElement::new(vec![(x.lo, y.at), (x.hi, y.at)], colour.stroke_width(1)),
            PathElement::new(vec![(x.at, y.lo), (x.at, y.hi)], colour.stroke_width(1)),
        ])?;
        chart.draw_series([marker((x.at, y.at), shape, colour, MARKER)])?;
        labels.reserve_marker(chart.backend_coord(&(x.at, y.at)));
    }
    Ok(())
}

/// A subnet's name beside its point, where `labels` finds room; one moved away from a crowd
/// gets a leader line to its near edge that says whose it is.
fn draw_name(
    chart: &mut LogChart,
    labels: &mut Labels,
    at: (f64, f64),
    name: &str,
    colour: RGBColor,
) -> DrawResult {
    let width = Labels::width(name);
    let offset = labels.place(chart.backend_coord(&at), width);
    if offset.1 < -Labels::NEAR || offset.1 > Labels::BELOW {
        let edge = if offset.0 < 0 {
            offset.0 + width
        } else {
            offset.0
        };
        let end = (edge, offset.1 + Labels::HEIGHT / 2);
        let leader =
            EmptyElement::at(at) + PathElement::new(vec![(0, 0), end], colour.stroke_width(1));
        chart.draw_series([leader])?;
    }
    let label =
        EmptyElement::at(at) + Text::new(name.to_string(), offset, font(TICK_FONT).color(&colour));
    chart.draw_series([label])?;
    Ok(())
}

/// The pixel boxes of the subnet names placed so far in one panel, so that a name in a crowd
/// of points moves to a free spot instead of printing over another.
/// A box in pixels: left, top, right, bottom.
type Box4 = (i32, i32, i32, i32);

struct Labels {
    /// The plotting area in pixels: a name stays inside it.
    area: (Range<i32>, Range<i32>),
    placed: Vec<Box4>,
}

/// Whether two pixel boxes share any pixel.
fn overlaps(a: &Box4, b: &Box4) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

impl Labels {
    /// How far above or below its point a name sits when nothing is in the way.
    const NEAR: i32 = 24;
    const BELOW: i32 = 4;
    const HEIGHT: i32 = TICK_FONT as i32;

    /// A generous width of `text` in tick-font pixels (0.6 em a character, above DejaVu
    /// Sans' average), so that boxes kept apart keep their text apart.
    fn width(text: &str) -> i32 {
        (text.chars().count() as f64 * 0.6 * TICK_FONT as f64).ceil() as i32
    }

    /// The offset from the point at `at` of a name `width` pixels wide: above right, below
    /// right, above left, below left, then ever further up or down; the first whose box is free.
    fn place(&mut self, at: BackendCoord, width: i32) -> BackendCoord {
        let rows = (0..8).flat_map(|step| {
            [
                -Self::NEAR - step * Self::HEIGHT,
                Self::BELOW + step * Self::HEIGHT,
            ]
        });
        let candidates: Vec<BackendCoord> =
            rows.flat_map(|dy| [(9, dy), (-9 - width, dy)]).collect();
        let (xs, ys) = &self.area;
        let free = |&(dx, dy): &BackendCoord| {
            let (x0, y0) = (at.0 + dx, at.1 + dy);
            let inside = xs.start <= x0
                && x0 + width <= xs.end
                && ys.start <= y0
                && y0 + Self::HEIGHT <= ys.end;
            let taken = (x0, y0, x0 + width, y0 + Self::HEIGHT);
            inside && !self.placed.iter().any(|b| overlaps(&taken, b))
        };
        let offset = candidates
            .iter()
            .copied()
            .find(free)
            .unwrap_or(candidates[0]);
        self.reserve(at, offset, width);
        offset
    }

    /// The top-left pixel of a box `width` wide in the first corner of the plotting area that
    /// meets nothing placed and none of `bars`: top right first when `right_first`, else top
    /// left, then the other top corner, then the bottom ones; the first when all are taken.
    fn corner(&self, width: i32, right_first: bool, bars: &[Box4]) -> BackendCoord {
        let (xs, ys) = &self.area;
        let (left, right) = (xs.start + 10, xs.end - 10 - width);
        let (top, bottom) = (ys.start + 8, ys.end - 8 - Self::HEIGHT);
        let sides = if right_first {
            [right, left]
        } else {
            [left, right]
        };
        let corners = [
            (sides[0], top),
            (sides[1], top),
            (sides[1], bottom),
            (sides[0], bottom),
        ];
        let free = |&(x, y): &BackendCoord| {
            let taken = (x, y, x + width, y + Self::HEIGHT);
            !self.placed.iter().chain(bars).any(|b| overlaps(&taken, b))
        };
        corners.iter().copied().find(free).unwrap_or(corners[0])
    }

    /// Marks the square a marker at `at` covers as taken.
    fn reserve_marker(&mut self, at: BackendCoord) {
        let r = MARKER + 1;
        self.placed.push((at.0 - r, at.1 - r, at.0 + r, at.1 + r));
    }

    /// Marks the box of a text `width` wide at `offset` from `at` as taken.
    fn reserve(&mut self, at: BackendCoord, offset: BackendCoord, width: i32) {
        let (x0, y0) = (at.0 + offset.0, at.1 + offset.1);
        self.placed.push((x0, y0, x0 + width, y0 + Self::HEIGHT));
    }
}

/// Slope and intercept of the least-squares line through `points` (None if x is constant).
fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| (sxy / sxx, my - sxy / sxx * mx))
}

/// Each predictor's tau (mean over seeds) with its interval, one row each, over the noise
/// ceiling's band; every panel from -1 to 1.
fn rank_agreement(area: &Area, group: &Group, summary: &Summary) -> DrawResult {
    let rows: Vec<(Predictor, &Estimate)> = Predictor::ALL
        .iter()
        .filter_map(|&p| group.predictor(p).map(|a| (p, &a.kendall_tau)))
        .collect();
    let n = rows.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title(group), font(TITLE_FONT))
        .margin(14)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(200)
        .build_cartesian_2d(-1f64..1f64, -0.5f64..n - 0.5)?;
    let labels: Vec<&str> = rows.iter().map(|(p, _)| short_label(*p)).collect();
    chart
        .configure_mesh()
        .x_desc("Kendall tau-b")
        .label_style(font(TICK_FONT))
        .axis_desc_style(font(LABEL_FONT))
        .x_labels(5)
        .y_labels(rows.len().max(1))
        .light_line_style(WHITE)
        .disable_y_mesh()
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_label_formatter(&|v| {
            let i = v.round() as usize;
            labels
                .get(rows.len().saturating_sub(1 + i))
                .map_or(String::new(), |s| s.to_string())
        })
        .draw()?;
    let ceiling = summary
        .noise_ceilings
        .iter()
        .find(|c| c.variant == group.variant);
    if let Some(c) = ceiling {
        if let Some((lo, hi)) = c.kendall_tau.interval {
            let band = Rectangle::new(
                [(lo, -0.5), (hi, n - 0.5)],
                RGBColor(210, 210, 210).mix(0.6).filled(),
            );
            chart.draw_series([band])?;
        }
        if let Some(mean) = c.kendall_tau.spread.mean {
            chart.draw_series(LineSeries::new(
                [(mean, -0.5), (mean, n - 0.5)],
                RGBColor(120, 120, 120).stroke_width(2),
            ))?;
        }
    }
    chart.draw_series(DashedLineSeries::new(
        [(0.0, -0.5), (0.0, n - 0.5)],
        6,
        6,
        BLACK.stroke_width(1),
    ))?;
    for (i, (_, e)) in rows.iter().enumerate() {
        let y = n - 1.0 - i as f64;
        let colour = COLOURS[i % COLOURS.len()];
        if let Some((lo, hi)) = e.interval {
            chart.draw_series([PathElement::new(
                vec![(lo, y), (hi, y)],
                colour.stroke_width(3),
            )])?;
        }
        if let Some(mean) = e.spread.mean {
            chart.draw_series([marker((mean, y), i, colour, 7)])?;
        }
    }
    Ok(())
}

fn short_label(p: Predictor) -> &'static str {
    match p {
        Predictor::OneshotAccuracy => "one-shot acc.",
        Predictor::KlAllPaths => "-KL all paths",
        Predictor::KlMeanOfSubnets => "-KL mean",
        Predictor::GradNorm => "grad norm",
        Predictor::Snip => "SNIP",
        Predictor::Synflow => "SynFlow",
        Predictor::Parameters => "params (base)",
        Predictor::Operations => "mult-adds (base)",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_keep_their_digits() {
        let labels: Vec<String> = log_ticks(&(9e3..3.5e4)).into_iter().map(log_tick).collect();
        assert_eq!(labels, ["1e4", "1.5e4", "2e4", "3e4"]);
        let labels: Vec<String> = log_ticks(&(6e-4..2.5e-2))
            .into_iter()
            .map(log_tick)
            .collect();
        assert_eq!(labels, ["0.001", "0.002", "0.005", "0.01", "0.02"]);
        let labels: Vec<String> = log_ticks(&(1.2e-3..4.5e-3))
            .into_iter()
            .map(log_tick)
            .collect();
        assert_eq!(labels, ["0.0015", "0.002", "0.003"]);
        let labels: Vec<String> = [0.25, 1.5, 150.0, 700.0].map(log_tick).to_vec();
        assert_eq!(labels, ["0.25", "1.5", "150", "700"]);
    }
}
