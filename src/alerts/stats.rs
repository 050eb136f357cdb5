//! The statistics of detection: the one-sided binomial tail of the spike test and the
//! Bernoulli CUSUM step of the sustained-shift test. Pure functions of counts.

pub use crate::cohorts::stats::ln_gamma;

/// `ln P(X = k)` for `X ~ Binomial(n, p)`, `0 < p < 1`, `k <= n`.
fn ln_pmf(k: u64, n: u64, p: f64) -> f64 {
    let (k, n) = (k as f64, n as f64);
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
        + k * p.ln()
        + (n - k) * (-p).ln_1p()
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`: the p-value of seeing `k` or more failures in
/// `n` runs when the true rate is the baseline `p`. Summed from `k` upward in log space
/// while terms matter (at most 20 000 terms: beyond, the remainder is bounded by a
/// geometric series and added).
pub fn binomial_upper_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let mean = n as f64 * p;
    if (k as f64) <= mean {
        // At or below the mean the tail holds about half the mass or more; the test
        // never fires here, so report the conservative bound.
        return 1.0;
    }
    let first = ln_pmf(k, n, p);
    if first < -745.0 {
        return 0.0;
    }
    let odds = p / (1.0 - p);
    let mut term = 1.0_f64; // relative to exp(first)
    let mut sum = 1.0_f64;
    let mut j = k;
    let mut steps = 0;
    while j < n && steps < 20_000 {
        let ratio = (n - j) as f64 / (j + 1) as f64 * odds;
        term *= ratio;
        sum += term;
        j += 1;
        steps += 1;
        if term < sum * 1e-16 {
            break;
        }
        if steps == 20_000 && ratio < 1.0 {
            sum += term * ratio / (1.0 - ratio);
        }
    }
    (first + sum.ln()).exp().min(1.0)
}

/// One CUSUM step for a Bernoulli rate: the log-likelihood ratio of `k` failures in `n`
/// runs under the shifted rate `p1` against the baseline `p0`.
pub fn bernoulli_llr(k: u64, n: u64, p0: f64, p1: f64) -> f64 {
    let p0 = p0.clamp(1e-9, 1.0 - 1e-9);
    let p1 = p1.clamp(1e-9, 1.0 - 1e-9);
    let k = k.min(n) as f64;
    let n = n as f64;
    k * (p1 / p0).ln() + (n - k) * ((1.0 - p1) / (1.0 - p0)).ln()
}
