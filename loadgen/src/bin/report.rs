//! `report`: turn the JSON lines of a measuring run into Markdown tables and
//! SVG bar charts (drawn with plotters), offline.
//!
//! ```sh
//! loadgen/measure.sh > run.jsonl
//! cargo run -p loadgen --bin report -- run.jsonl --out book/src/results
//! ```
//!
//! Each line of the input is either a loadgen `--json` report (or one a
//! script wrote for `ab` in the same shape) or a `{"machine": ...}` line
//! describing where it ran. Runs with the same client, label and number of
//! idle connections are rounds of one measurement: the tables show the
//! median of each figure over the rounds, and the errors of all of them;
//! the charts draw the median as a bar and the lowest and highest round as
//! a whisker across its end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use loadgen::Report;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

/// Write Markdown tables and SVG charts from the JSON lines of a run.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The JSON lines file (loadgen/measure.sh's output).
    input: PathBuf,
    /// Where to write tables.md and the SVG charts.
    #[arg(long, default_value = "book/src/results")]
    out: PathBuf,
}

/// Where the run happened.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Machine {
    machine: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Line {
    Machine(Machine),
    Run(Box<Report>),
}

/// One figure over the rounds of a measurement: the median, which the
/// tables show and the charts' bars stand for, and the lowest and highest
/// round, the whisker across the bar's end.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    /// The spread of `values`; None if there are none.
    fn of(values: Vec<f64>) -> Option<Spread> {
        let min = values.iter().copied().reduce(f64::min)?;
        let max = values.iter().copied().reduce(f64::max)?;
        Some(Spread {
            median: median(values),
            min,
            max,
        })
    }
}

/// The rounds of one measurement, summarised.
#[derive(Debug, Clone)]
struct Row {
    client: String,
    label: String,
    idle: usize,
    rounds: usize,
    rps: Spread,
    server_cpu: Option<Spread>,
    client_cpu: f64,
    p50_ms: Spread,
    p99_ms: Spread,
    max_ms: Spread,
    failed: u64,
    completed: u64,
    overflows: u64,
    syn_retrans: u64,
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Which measurement a run is a round of: its client, label and number
/// of idle connections held.
type Key = (String, String, usize);

/// The runs grouped into measurements, each with its rounds in the order
/// they ran; the measurements in the order they first appear.
fn measurements(runs: &[Report]) -> Vec<(Key, Vec<&Report>)> {
    let mut order: Vec<Key> = Vec::new();
    let mut groups: BTreeMap<Key, Vec<&Report>> = BTreeMap::new();
    for run in runs {
        let key = (run.client.clone(), run.label.clone(), run.idle_held);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(run);
    }
    order
        .into_iter()
        .map(|key| {
            let rounds = groups.remove(&key).expect("every key was grouped");
            (key, rounds)
        })
        .collect()
}

fn summarise(runs: &[Report]) -> Vec<Row> {
    measurements(runs)
        .into_iter()
        .map(|(key, rounds)| {
            let rounds = &rounds;
            let figure =
                |f: &dyn Fn(&Report) -> f64| -> Vec<f64> { rounds.iter().map(|r| f(r)).collect() };
            let spread = |f: &dyn Fn(&Report) -> f64| {
                Spread::of(figure(f)).expect("a measurement has a round")
            };
            let cpus: Vec<f64> = rounds
                .iter()
                .filter_map(|r| r.server_cpu_us_per_request)
                .collect();
            let counter = |name: &str| -> u64 {
                rounds
                    .iter()
                    .map(|r| r.kernel.get(name).copied().unwrap_or(0))
                    .sum()
            };
            Row {
                client: key.0,
                label: key.1,
                idle: key.2,
                rounds: rounds.len(),
                rps: spread(&|r| r.requests_per_s),
                server_cpu: Spread::of(cpus),
                client_cpu: median(figure(&|r| r.client_cpu_us_per_request)),
                p50_ms: spread(&|r| r.latency.p50_us as f64 / 1000.0),
                p99_ms: spread(&|r| r.latency.p99_us as f64 / 1000.0),
                max_ms: spread(&|r| r.latency.max_us as f64 / 1000.0),
                failed: rounds.iter().map(|r| r.failed).sum(),
                completed: rounds.iter().map(|r| r.completed).sum(),
                overflows: counter("ListenOverflows"),
                syn_retrans: counter("TCPSynRetrans"),
            }
        })
        .collect()
}

fn cpu_cell(cpu: Option<Spread>) -> String {
    cpu.map_or("-".to_owned(), |c| format!("{:.1}", c.median))
}

fn is_backlog(row: &Row) -> bool {
    row.label.starts_with("backlog")
}

/// Rows of the side-by-side comparison: not the backlog experiment, not
/// the loadgen-against-ab rounds.
fn is_side_by_side(row: &Row) -> bool {
    side_by_side(&row.client, &row.label)
}

/// Whether a measurement by `client` labelled `label` is one of the
/// side-by-side comparison's.
fn side_by_side(client: &str, label: &str) -> bool {
    client == "loadgen" && !label.starts_with("backlog") && !label.starts_with("ab comparison")
}

fn tables(machine: &[String], runs: &[Report], rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "<!-- generated by `cargo run -p loadgen --bin report`: do not edit -->\n"
    );
    for m in machine {
        let _ = writeln!(md, "Machine: {m}\n");
    }
    let _ = writeln!(
        md,
        "**Servers side by side** (loadgen `-c 100`, one request per connection; \
         medians of the rounds)\n\n\
         | server | idle held | rounds | requests/s | server CPU µs/request | p50 ms | p99 ms | max ms | errors | loadgen CPU µs/request |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows.iter().filter(|r| is_side_by_side(r)) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {} of {} | {:.1} |",
            r.label,
            r.idle,
            r.rounds,
            r.rps.median,
            cpu_cell(r.server_cpu),
            r.p50_ms.median,
            r.p99_ms.median,
            r.max_ms.median,
            r.failed,
            r.completed + r.failed,
            r.client_cpu
        );
    }
    md.push_str(&against_reference(runs, "nginx"));
    let ab: Vec<&Row> = rows.iter().filter(|r| r.client == "ab").collect();
    if !ab.is_empty() {
        let _ = writeln!(
            md,
            "\n**loadgen against ab** (same server, same `-c 100 -n`, alternating rounds)\n\n\
             | client | server | requests/s | client CPU µs/request | server CPU µs/request | p99 ms | errors |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: |"
        );
        for a in ab {
            let ours = rows
                .iter()
                .find(|r| r.client == "loadgen" && r.label == a.label && r.idle == a.idle);
            for r in ours.into_iter().chain([a]) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.1} | {} | {:.2} | {} |",
                    r.client,
                    r.label,
                    r.rps.median,
                    r.client_cpu,
                    cpu_cell(r.server_cpu),
                    r.p99_ms.median,
                    r.failed
                );
            }
        }
    }
    let backlog: Vec<&Row> = rows.iter().filter(|r| is_backlog(r)).collect();
    if !backlog.is_empty() {
        let _ = writeln!(
            md,
            "\n**Listen backlog** (example04_epoll_edge, loadgen `-c 100`; kernel counters \
             summed over the rounds, whole machine)\n\n\
             | backlog | rounds | requests/s | p50 ms | p99 ms | max ms | errors | ListenOverflows | TCPSynRetrans |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in backlog {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                r.label.trim_start_matches("backlog "),
                r.rounds,
                r.rps.median,
                r.p50_ms.median,
                r.p99_ms.median,
                r.max_ms.median,
                r.failed,
                r.overflows,
                r.syn_retrans
            );
        }
    }
    md
}

/// Each server's figures divided by `reference`'s from the same round.
///
/// The servers take turns within a round, so a round's neighbours ran on
/// the machine in the same state; the ratio of two of them cancels much
/// of what moves from round to round (on a shared machine, several µs of
/// CPU per request). Rounds are paired in the order they were run: the
/// first round of a server with the reference's first with as many idle
/// connections held. Empty when the reference is not in the run.
fn against_reference(runs: &[Report], reference: &str) -> String {
    let measured: Vec<(Key, Vec<&Report>)> = measurements(runs)
        .into_iter()
        .filter(|((client, label, _), _)| side_by_side(client, label))
        .collect();
    let mut md = String::new();
    for ((_, label, idle), rounds) in measured.iter().filter(|(key, _)| key.1 != reference) {
        let Some((_, base)) = measured
            .iter()
            .find(|((_, other, held), _)| other == reference && held == idle)
        else {
            continue;
        };
        let pairs = || rounds.iter().zip(base.iter());
        let cpu: Vec<f64> = pairs()
            .filter_map(|(run, base)| {
                Some(run.server_cpu_us_per_request? / base.server_cpu_us_per_request?)
            })
            .collect();
        let rps: Vec<f64> = pairs()
            .map(|(run, base)| run.requests_per_s / base.requests_per_s)
            .collect();
        let (Some(cpu), Some(rps)) = (Spread::of(cpu), Spread::of(rps)) else {
            continue;
        };
        if md.is_empty() {
            let _ = writeln!(
                md,
                "\n**Against {reference}, round by round** (each figure divided by \
                 {reference}'s in the same round with as many idle connections; the \
                 median of the rounds, and the lowest and highest round)\n\n\
                 | server | idle held | rounds | server CPU per request | requests/s |\n\
                 | --- | ---: | ---: | ---: | ---: |"
            );
        }
        let ratio = |s: Spread| format!("{:.2}× ({:.2}–{:.2})", s.median, s.min, s.max);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            label,
            idle,
            rounds.len().min(base.len()),
            ratio(cpu),
            ratio(rps)
        );
    }
    md
}

/// One series of bars in a chart: a colour, a name for the legend, and a
/// spread per category (None: not measured).
struct Series {
    name: String,
    colour: RGBColor,
    values: Vec<Option<Spread>>,
}

/// A horizontal grouped bar chart: one band per category, one bar per
/// series in it.
struct Chart {
    title: &'static str,
    /// What the horizontal axis measures, with its unit.
    axis: &'static str,
    /// The unit after each bar's value.
    unit: &'static str,
    categories: Vec<String>,
    series: Vec<Series>,
    /// A line under the chart: what the bars and whiskers stand for.
    note: String,
}

impl Series {
    /// A series of `figure` for each of `rows`.
    fn of(name: &str, colour: RGBColor, rows: &[&Row], figure: fn(&Row) -> Spread) -> Series {
        Series {
            name: name.to_owned(),
            colour,
            values: rows.iter().map(|r| Some(figure(r))).collect(),
        }
    }
}

/// What the latency charts measure.
const LATENCY_AXIS: &str = "milliseconds from connect to the server's close";

// Colours from the palette of the book's diagrams.
const BLUE_BAR: RGBColor = RGBColor(0x48, 0x78, 0xa8);
const ORANGE_BAR: RGBColor = RGBColor(0xe4, 0x94, 0x44);
const RED_BAR: RGBColor = RGBColor(0xd1, 0x61, 0x5d);

/// Generic families only: the SVG names no font file, so a browser draws
/// it offline with its own sans-serif.
const FONT: &str = "sans-serif";

/// Font sizes as plotters takes them: its SVG backend writes 1/1.24 of
/// the size asked for, so 17 is 13.7 px.
const TEXT: u32 = 17;
const TITLE: u32 = 22;

/// Whether a chart needs a logarithmic axis: when its largest value is
/// more than 20 times the median (10,000 idle connections under poll; a
/// 19 s stall next to 3 ms), a linear one would shrink every other bar to
/// a sliver.
fn needs_log_scale(values: &[f64]) -> bool {
    let positive: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
    let max = positive.iter().copied().fold(0.0, f64::max);
    !positive.is_empty() && max > 20.0 * median(positive)
}

/// A value as a bar's label: three significant digits or whole numbers.
fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A tick on the value axis: `0`, `5000`, `2.5`, `0.1`.
fn format_tick(v: f64) -> String {
    let rounded = (v * 1000.0).round() / 1000.0;
    format!("{rounded}")
}

/// Draws `chart` as an SVG document.
fn bar_chart(chart: &Chart) -> anyhow::Result<String> {
    let bands = chart.categories.len();
    let bar_height = 18;
    let band_height = bar_height * chart.series.len() as u32 + 14;
    let (width, height) = (800, 180 + band_height * bands as u32);
    let all: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .flat_map(|v| [v.min, v.median, v.max])
        .collect();
    let top = all.iter().copied().fold(0.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        // Under the plot: the legend (where there is more than one series),
        // then what the bars and whiskers stand for. Outside the plot, it
        // can never hide a bar.
        let footer_height = if chart.series.len() > 1 { 54 } else { 28 };
        let (plot, footer) = root.split_vertically(height - footer_height);
        let text = (FONT, TEXT).into_font();
        if chart.series.len() > 1 {
            let mut x = 212;
            for series in &chart.series {
                footer.draw(&Rectangle::new(
                    [(x, 4), (x + 14, 18)],
                    series.colour.filled(),
                ))?;
                footer.draw_text(&series.name, &text.color(&BLACK), (x + 20, 4))?;
                x += 60 + 8 * series.name.len() as i32;
            }
        }
        footer.draw_text(
            &chart.note,
            &text.color(&BLACK.mix(0.75)),
            (12, footer_height as i32 - 22),
        )?;
        if needs_log_scale(&all) {
            // Whole decades, from the one below the smallest value to past
            // the largest, with room for its label.
            let low = all.iter().copied().filter(|v| *v > 0.0).fold(top, f64::min);
            let from = 10f64.powf((low / 1.1).log10().floor());
            let to = 10f64.powf(top.log10() + 0.6);
            let axis = format!("{} (logarithmic scale)", chart.axis);
            draw_bars(&plot, chart, &axis, (from..to).log_scale(), from)?;
        } else {
            draw_bars(&plot, chart, chart.axis, 0.0..top * 1.2, 0.0)?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Draws the bars of `chart` on `area`, along an axis `x` described as
/// `axis`, whose bars start at `base` (0, or the left end of a logarithmic
/// axis).
fn draw_bars<X>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
    axis: &str,
    x: X,
    base: f64,
) -> anyhow::Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    // The vertical axis counts in hundredths of a band, one band per
    // category, the first at the top (y runs upwards).
    let bands = chart.categories.len() as i32;
    // (The band of a category, and the category of a band.)
    let band_of = |i: usize| (bands - 1 - i as i32) as usize;
    let centres: Vec<i32> = (0..bands).map(|band| band * 100 + 50).collect();
    let y = (0..bands * 100).with_key_points(centres);
    let mut context = ChartBuilder::on(area)
        .caption(
            chart.title,
            (FONT, TITLE).into_font().style(FontStyle::Bold),
        )
        .margin(12)
        .margin_right(24)
        .x_label_area_size(50)
        .y_label_area_size(200)
        .build_cartesian_2d(x, y)?;
    context
        .configure_mesh()
        .disable_y_mesh()
        .x_max_light_lines(2)
        .light_line_style(BLACK.mix(0.05))
        .bold_line_style(BLACK.mix(0.15))
        .x_desc(axis)
        .x_label_formatter(&|v| format_tick(*v))
        .y_label_formatter(&|centre| chart.categories[band_of(*centre as usize / 100)].clone())
        .label_style((FONT, TEXT))
        .axis_desc_style((FONT, TEXT))
        .draw()?;
    // A band's bars fill 80 of its 100, from its top down in the order of
    // the legend, each with a small gap.
    let thickness = 80 / chart.series.len() as i32;
    let value_style = (FONT, TEXT - 1)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (j, series) in chart.series.iter().enumerate() {
        let colour = series.colour;
        let bars: Vec<(i32, i32, Option<Spread>)> = series
            .values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let top = band_of(i) as i32 * 100 + 90 - thickness * j as i32;
                (top, top - thickness * 9 / 10, *value)
            })
            .collect();
        context.draw_series(bars.iter().filter_map(|(upper, lower, value)| {
            let v = (*value)?;
            Some(Rectangle::new(
                [(base, *upper), (v.median.max(base), *lower)],
                colour.filled(),
            ))
        }))?;
        // The whisker: from the lowest round to the highest, across the
        // bar's end, with a dot at the median.
        context.draw_series(bars.iter().filter_map(|(upper, lower, value)| {
            let v = (*value)?;
            Some(ErrorBar::new_horizontal(
                (upper + lower) / 2,
                v.min.max(base),
                v.median.max(base),
                v.max.max(base),
                BLACK.stroke_width(1),
                8,
            ))
        }))?;
        // The median's value, right of the whisker; "not measured" where
        // there is none.
        context.draw_series(bars.iter().map(|(upper, lower, value)| {
            let (at, text) = match value {
                Some(v) => (
                    v.max.max(base),
                    format!("{} {}", format_value(v.median), chart.unit),
                ),
                None => (base, "not measured".to_owned()),
            };
            EmptyElement::at((at, (upper + lower) / 2))
                + Text::new(text, (8, 0), value_style.clone())
        }))?;
    }
    Ok(())
}

/// What the whiskers stand for, under every chart.
fn note(rows: &[&Row]) -> String {
    let rounds: Vec<usize> = rows.iter().map(|r| r.rounds).collect();
    let (fewest, most) = (
        rounds.iter().min().copied().unwrap_or(0),
        rounds.iter().max().copied().unwrap_or(0),
    );
    let count = if fewest == most {
        format!("{most}")
    } else {
        format!("{fewest} to {most}")
    };
    format!("Bars: the median of {count} rounds. Whiskers: the lowest to the highest round.")
}

fn charts(rows: &[Row]) -> anyhow::Result<Vec<(&'static str, String)>> {
    let servers: Vec<&Row> = rows
        .iter()
        .filter(|r| r.idle == 0 && is_side_by_side(r))
        .collect();
    let names: Vec<String> = servers.iter().map(|r| r.label.clone()).collect();
    let most_idle = rows.iter().map(|r| r.idle).max().unwrap_or(0);
    let with_idle = |label: &str, idle: usize| {
        rows.iter()
            .find(|r| r.client == "loadgen" && r.label == label && r.idle == idle)
    };
    let idle_rows: Vec<&Row> = names
        .iter()
        .filter_map(|n| with_idle(n, most_idle))
        .collect();
    let mut out = vec![
        (
            "requests.svg",
            bar_chart(&Chart {
                title: "Requests per second, 100 clients at once (higher is better)",
                axis: "requests per second",
                unit: "req/s",
                categories: names.clone(),
                series: vec![Series::of("no idle connections", BLUE_BAR, &servers, |r| {
                    r.rps
                })],
                // One series, no legend: the note says what it is.
                note: format!("No idle connections held. {}", note(&servers)),
            })?,
        ),
        (
            "latency.svg",
            bar_chart(&Chart {
                title: "Latency, 100 clients at once (lower is better)",
                axis: LATENCY_AXIS,
                unit: "ms",
                categories: names.clone(),
                series: vec![
                    Series::of("p50", BLUE_BAR, &servers, |r| r.p50_ms),
                    Series::of("p99", ORANGE_BAR, &servers, |r| r.p99_ms),
                ],
                note: note(&servers),
            })?,
        ),
        (
            "server-cpu.svg",
            bar_chart(&Chart {
                title: "Server CPU time per request (lower is better)",
                axis: "microseconds of CPU per request",
                unit: "µs",
                categories: names.clone(),
                series: vec![
                    Series {
                        name: "no idle connections".to_owned(),
                        colour: BLUE_BAR,
                        values: servers.iter().map(|r| r.server_cpu).collect(),
                    },
                    Series {
                        name: format!("{most_idle} idle connections held"),
                        colour: RED_BAR,
                        values: names
                            .iter()
                            .map(|n| with_idle(n, most_idle).and_then(|r| r.server_cpu))
                            .collect(),
                    },
                ],
                note: note(&[servers.clone(), idle_rows].concat()),
            })?,
        ),
    ];
    let backlog: Vec<&Row> = rows.iter().filter(|r| is_backlog(r)).collect();
    if !backlog.is_empty() {
        out.push((
            "backlog.svg",
            bar_chart(&Chart {
                title: "Listen backlog of example04_epoll_edge: latency, 100 clients at once",
                axis: LATENCY_AXIS,
                unit: "ms",
                categories: backlog.iter().map(|r| r.label.clone()).collect(),
                series: vec![
                    Series::of("p99", ORANGE_BAR, &backlog, |r| r.p99_ms),
                    Series::of("max", RED_BAR, &backlog, |r| r.max_ms),
                ],
                note: note(&backlog),
            })?,
        ));
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut machine = Vec::new();
    let mut runs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a report", args.input.display(), number + 1))?
        {
            Line::Machine(m) => machine.push(m.machine),
            Line::Run(run) => runs.push(*run),
        }
    }
    let rows = summarise(&runs);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut written = vec![args.out.join("tables.md")];
    std::fs::write(&written[0], tables(&machine, &runs, &rows))?;
    for (name, svg) in charts(&rows)? {
        let path = args.out.join(name);
        std::fs::write(&path, svg)?;
        written.push(path);
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, rps: f64, cpu: f64) -> Report {
        Report {
            label: label.to_owned(),
            requests_per_s: rps,
            server_cpu_us_per_request: Some(cpu),
            completed: 10,
            client: "loadgen".to_owned(),
            ..Report::default()
        }
    }

    /// The median of an odd count is its middle value, of an even count
    /// the mean of the two middle ones; of nothing, NaN.
    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    /// Runs with the same label are rounds of one row: its figures are
    /// their median, lowest and highest, its counts their sums.
    #[test]
    fn rounds_of_one_measurement_are_summarised_together() {
        let runs = [
            run("a", 10.0, 5.0),
            run("b", 1.0, 1.0),
            run("a", 30.0, 7.0),
            run("a", 20.0, 6.0),
        ];
        let rows = summarise(&runs);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].label.as_str(), rows[0].rounds), ("a", 3));
        assert_eq!(
            rows[0].rps,
            Spread {
                median: 20.0,
                min: 10.0,
                max: 30.0
            }
        );
        assert_eq!(
            rows[0].server_cpu,
            Some(Spread {
                median: 6.0,
                min: 5.0,
                max: 7.0
            })
        );
        assert_eq!(rows[0].completed, 30);
        assert_eq!(Spread::of(Vec::new()), None);
    }

    /// Each server is divided by the reference's round of the same number:
    /// its median ratio and the range of the rounds; the reference itself
    /// gets no row, and a run without it no table.
    #[test]
    fn ratios_pair_the_rounds_with_the_reference() {
        let runs = [
            run("nginx", 100.0, 10.0),
            run("a", 50.0, 8.0),
            run("nginx", 200.0, 20.0),
            run("a", 100.0, 10.0),
            run("nginx", 100.0, 10.0),
            run("a", 200.0, 6.0),
        ];
        let table = against_reference(&runs, "nginx");
        assert!(
            table.contains("| a | 0 | 3 | 0.60× (0.50–0.80) | 0.50× (0.50–2.00) |"),
            "{table}"
        );
        assert!(!table.contains("| nginx |"), "{table}");
        assert_eq!(against_reference(&runs[1..2], "nginx"), "");
    }

    /// A chart turns logarithmic when one value dwarfs the rest, and
    /// stays linear otherwise.
    #[test]
    fn scale_turns_logarithmic_for_outliers() {
        assert!(!needs_log_scale(&[10.0, 20.0, 40.0]));
        assert!(needs_log_scale(&[20.0, 21.0, 22.0, 1000.0]));
        assert!(!needs_log_scale(&[]));
    }

    /// Each line of a run is a report or a note on the machine.
    #[test]
    fn lines_are_runs_or_machines() {
        let machine: Line = serde_json::from_str(r#"{"machine": "2 cores"}"#).unwrap();
        assert!(matches!(machine, Line::Machine(m) if m.machine == "2 cores"));
        let json = serde_json::to_string(&run("a", 1.0, 1.0)).unwrap();
        assert!(matches!(serde_json::from_str(&json).unwrap(), Line::Run(_)));
    }

    /// Every chart is a whole SVG document that names every category
    /// (escaped), says what its whiskers are, and needs nothing from
    /// outside: no link, no script, no font file.
    #[test]
    fn charts_are_offline_svg_with_every_category() {
        let rows = summarise(&[
            run("one & two", 10.0, 5.0),
            run("three", 20.0, 2.0),
            run("three", 24.0, 3.0),
        ]);
        for (name, svg) in charts(&rows).unwrap() {
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
            assert!(svg.contains("one &amp; two"), "{name}");
            assert!(svg.contains("three"), "{name}");
            assert!(
                svg.contains("Whiskers: the lowest to the highest round."),
                "{name}"
            );
            assert!(svg.contains("1 to 2 rounds"), "{name}");
            for outside in ["href", "<script", "@import", "url(", "<image"] {
                assert!(!svg.contains(outside), "{name} holds {outside}");
            }
            let families = svg.matches("font-family=").count();
            assert!(families > 0, "{name}: no text");
            assert_eq!(
                svg.matches("font-family=\"sans-serif\"").count(),
                families,
                "{name}: a font family other than sans-serif"
            );
        }
    }
}
