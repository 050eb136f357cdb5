//! Grouping accuracy (GA), the log-parsing metric of Loghub: a message is correct when
//! the set of messages in its predicted group is exactly the set of messages in its
//! ground-truth group. GA = correct messages / all messages.

use std::collections::HashMap;
use std::hash::Hash;

/// GA of `predicted` against `truth` (same length, one entry per message). Returns 0
/// for empty input and for inputs of different lengths.
pub fn grouping_accuracy<P: Eq + Hash, T: Eq + Hash>(predicted: &[P], truth: &[T]) -> f64 {
    if predicted.is_empty() || predicted.len() != truth.len() {
        return 0.0;
    }
    let mut truth_size: HashMap<&T, usize> = HashMap::new();
    for t in truth {
        *truth_size.entry(t).or_default() += 1;
    }
    // Per predicted group: size, and its single truth label (None once it sees two).
    let mut groups: HashMap<&P, (usize, Option<&T>, bool)> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        let g = groups.entry(p).or_insert((0, Some(t), true));
        g.0 += 1;
        if g.1 != Some(t) {
            g.2 = false;
        }
    }
    let correct: usize = groups
        .values()
        .filter_map(|&(size, label, pure)| {
            let label = label?;
            (pure && truth_size.get(label) == Some(&size)).then_some(size)
        })
        .sum();
    correct as f64 / predicted.len() as f64
}
