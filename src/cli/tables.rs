//! What the console shows of a set of subnets: every subnet of a small space, in the space's
//! order; of a larger one the top five by accuracy and the worst (the files hold them all).

use crate::cli::output::show;
use supernet::model::{SearchSpace, Subnet};
use supernet::training::SubnetMetrics;

/// Up to this many subnets, every one is shown.
const ALL_SHOWN: usize = 8;
/// Of more, the best this many and the worst one.
const TOP: usize = 5;

/// A subnet's name (as the files name it), what it is, and its metrics.
pub struct Entry {
    pub name: String,
    pub choices: String,
    pub metrics: SubnetMetrics,
}

impl Entry {
    pub fn new(space: &SearchSpace, subnet: &Subnet, name: String, metrics: SubnetMetrics) -> Self {
        Entry {
            name,
            choices: space.describe(subnet),
            metrics,
        }
    }
}

/// The entries shown, each with its rank by accuracy (1 = best) when the set is large.
fn shown(entries: &[Entry]) -> Vec<(Option<usize>, &Entry)> {
    if entries.len() <= ALL_SHOWN {
        return entries.iter().map(|e| (None, e)).collect();
    }
    let mut ranked: Vec<&Entry> = entries.iter().collect();
    // Stable: ties keep the space's order.
    ranked.sort_by(|a, b| b.metrics.accuracy.total_cmp(&a.metrics.accuracy));
    let worst = ranked.len();
    let mut rows: Vec<(Option<usize>, &Entry)> = ranked[..TOP]
        .iter()
        .enumerate()
        .map(|(i, e)| (Some(i + 1), *e))
        .collect();
    rows.push((Some(worst), ranked[worst - 1]));
    rows
}

/// Of many subnets, the epoch lines name this many of the best.
const LINE_TOP: usize = 3;

/// "00 0.9706", "10 0.9733", ... or, of many, "best 131 0.9812", two more, "worst 000 0.9011".
pub fn accuracy_items(entries: &[Entry]) -> Vec<String> {
    let rows = shown(entries);
    let item = |e: &Entry| format!("{} {:.4}", e.name, e.metrics.accuracy);
    let large = rows.first().is_some_and(|(rank, _)| rank.is_some());
    if !large {
        return rows.iter().map(|(_, e)| item(e)).collect();
    }
    let mut items: Vec<String> = rows[..LINE_TOP].iter().map(|(_, e)| item(e)).collect();
    items[0] = format!("best {}", items[0]);
    let (_, worst) = rows[rows.len() - 1];
    items.push(format!("worst {}", item(worst)));
    items
}

/// The table of `entries` under `title`.
pub fn print_table(title: &str, entries: &[Entry]) {
    let rows = shown(entries);
    let large = rows.first().is_some_and(|(rank, _)| rank.is_some());
    if large {
        show!("{title}: top {TOP} and worst of {}", entries.len());
    } else {
        show!("{title}");
    }
    let width = entries
        .iter()
        .map(|e| e.choices.len())
        .max()
        .unwrap_or(0)
        .max("choices".len());
    let rank_header = if large { "rank  " } else { "" };
    show!(
        "  {rank_header}subnet  {:<width$}  accuracy  correct  loss",
        "choices"
    );
    for (rank, e) in rows {
        let rank = rank.map_or(String::new(), |r| format!("{r:>4}  "));
        show!(
            "  {rank}{:<6}  {:<width$}  {:.4}    {:>6}   {:.4}",
            e.name,
            e.choices,
            e.metrics.accuracy,
            e.metrics.correct,
            e.metrics.loss
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(accuracies: &[f64]) -> Vec<Entry> {
        accuracies
            .iter()
            .enumerate()
            .map(|(i, &accuracy)| Entry {
                name: format!("{i:02}"),
                choices: String::new(),
                metrics: SubnetMetrics {
                    accuracy,
                    loss: 0.0,
                    correct: 0,
                },
            })
            .collect()
    }

    #[test]
    fn a_small_set_is_shown_whole_in_order() {
        let items = accuracy_items(&entries(&[0.5, 0.7, 0.6, 0.9]));
        assert_eq!(items, ["00 0.5000", "01 0.7000", "02 0.6000", "03 0.9000"]);
    }

    #[test]
    fn a_large_set_shows_the_top_five_and_the_worst() {
        let values: Vec<f64> = (0..64).map(|i| ((i * 37) % 64) as f64 / 100.0).collect();
        let set = entries(&values);
        let rows = shown(&set);
        let ranks: Vec<Option<usize>> = rows.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            ranks,
            [Some(1), Some(2), Some(3), Some(4), Some(5), Some(64)]
        );
        let best = rows[0].1.metrics.accuracy;
        assert_eq!(best, 0.63);
        assert_eq!(rows[5].1.metrics.accuracy, 0.0);
        let items = accuracy_items(&set);
        assert_eq!(items.len(), 4, "{items:?}");
        assert!(
            items[0].starts_with("best ") && items[3] == "worst 00 0.0000",
            "{items:?}"
        );
    }
}
