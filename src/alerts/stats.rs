//! The statistics of detection: the one-sided binomial tail of the spike test and the
//! Bernoulli CUSUM step of the sustained-shift test. Pure functions of counts.

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; relative error about 1e-15).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

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
