//! Server-rendered SVG bar charts: the geometry is computed here (integers
//! in a fixed view box), the template draws the rectangles. Each bar stacks
//! one segment per series and carries a `<title>` with its numbers, and the
//! chart names itself for screen readers; colours come from the stylesheet
//! (`series-N` classes), never from inline styles (the CSP forbids them).

/// The view box.
pub const WIDTH: i64 = 640;
pub const HEIGHT: i64 = 220;
/// Room for the axis labels.
const LEFT: i64 = 40;
const BOTTOM: i64 = 24;
const TOP: i64 = 10;

/// One stacked segment of a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    /// `series-0`, `series-1`, ...
    pub class: String,
    /// e.g. `Dec 3: 4 attestation.verify`.
    pub title: String,
}

/// An x-axis label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub x: i64,
    pub text: String,
}

/// A stacked bar chart ready to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarChart {
    pub width: i64,
    pub height: i64,
    pub segments: Vec<Segment>,
    pub labels: Vec<Label>,
    /// The top of the y axis and its label's position.
    pub max: i64,
    pub axis_y: i64,
    pub baseline: i64,
    pub left: i64,
    /// Series names with their classes, for the legend.
    pub legend: Vec<(String, String)>,
}

/// Lays out `values[bar][series]` (units) as stacked bars labelled
/// `labels[bar]`; every `label_every`th bar gets an axis label.
pub fn stacked(
    bar_labels: &[String],
    series: &[String],
    values: &[Vec<i64>],
    label_every: usize,
) -> BarChart {
    let n = bar_labels.len().max(1) as i64;
    let totals: Vec<i64> = values.iter().map(|v| v.iter().sum()).collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or(0));
    let plot_w = WIDTH - LEFT - 4;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / n;
    let bar_w = (slot * 3 / 4).max(1);
    let baseline = HEIGHT - BOTTOM;
    let mut segments = Vec::new();
    let mut labels = Vec::new();
    for (i, label) in bar_labels.iter().enumerate() {
        let x = LEFT + i as i64 * slot + (slot - bar_w) / 2;
        let mut y = baseline;
        for (s, name) in series.iter().enumerate() {
            let v = values.get(i).and_then(|r| r.get(s)).copied().unwrap_or(0);
            if v <= 0 {
                continue;
            }
            let h = (v * plot_h / max).max(1);
            y -= h;
            segments.push(Segment {
                x,
                y,
                w: bar_w,
                h,
                class: format!("series-{s}"),
                title: format!("{label}: {v} {name}"),
            });
        }
        if label_every > 0 && i % label_every == 0 {
            labels.push(Label {
                x: x + bar_w / 2,
                text: label.clone(),
            });
        }
    }
    BarChart {
        width: WIDTH,
        height: HEIGHT,
        segments,
        labels,
        max,
        axis_y: TOP,
        baseline,
        left: LEFT,
        legend: series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), format!("series-{i}")))
            .collect(),
    }
}

/// The smallest of 1, 2, 5 × 10^k at or above `v` (at least 1).
pub fn nice_max(v: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            if m * step >= v {
                return m * step;
            }
        }
        step = step.saturating_mul(10);
        if step == i64::MAX {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(480), 500);
    }

    #[test]
    fn bars_stack_inside_the_view_box_and_scale_to_the_max() {
        let labels: Vec<String> = (1..=31).map(|d| format!("Dec {d}")).collect();
        let series = vec!["a".to_owned(), "b".to_owned()];
        let mut values = vec![vec![0, 0]; 31];
        values[0] = vec![3, 2];
        values[30] = vec![0, 10];
        let c = stacked(&labels, &series, &values, 5);
        assert_eq!(c.max, 10);
        assert_eq!(c.segments.len(), 3);
        // Day 31's single segment fills the plot height; day 1's two
        // segments together reach half of it.
        let full = c.baseline - TOP;
        assert_eq!(c.segments[2].h, full);
        assert!((c.segments[0].h + c.segments[1].h - full / 2).abs() <= 1);
        // The second segment sits on the first.
        assert_eq!(c.segments[1].y + c.segments[1].h, c.segments[0].y);
        for s in &c.segments {
            assert!(s.x >= LEFT && s.x + s.w <= WIDTH, "{s:?}");
            assert!(s.y >= TOP && s.y + s.h <= c.baseline, "{s:?}");
        }
        assert_eq!(c.segments[0].title, "Dec 1: 3 a");
        assert_eq!(c.labels.len(), 7);
        // No data: no bars, still a valid axis.
        let empty = stacked(&labels, &series, &vec![vec![0, 0]; 31], 5);
        assert!(empty.segments.is_empty());
        assert_eq!(empty.max, 1);
    }
}
