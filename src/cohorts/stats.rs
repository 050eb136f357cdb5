//! The statistics of cohort discovery and comparison: Fisher's exact test (one-sided),
//! the two-proportion z-test, Benjamini–Hochberg q-values, the risk ratio with its
//! log-method confidence interval, the interaction of two conditions on the risk-ratio
//! scale, and the Wald interval of a difference of rates.
//!
//! All functions are pure, allocation-free (except [`bh_q_values`]) and total: counts
//! that make no sense (zero trials, more successes than trials) give a p-value of 1
//! or an empty interval instead of panicking or returning NaN.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; relative error below 1e-13).
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
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln C(n, k)`.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_gamma(n as f64 + 1.0) - ln_gamma(k as f64 + 1.0) - ln_gamma((n - k) as f64 + 1.0)
}

/// One-sided Fisher exact test that a cohort's rate is *above* the rest: with `n`
/// records of which `f` are failures, and a cohort of `n_s` records holding `f_s`
/// failures, `P(X ≥ f_s)` for `X ~ Hypergeometric(n, f, n_s)`.
pub fn fisher_greater(f_s: u64, n_s: u64, f: u64, n: u64) -> f64 {
    if n_s > n || f > n || f_s > n_s || f_s > f {
        return 1.0;
    }
    // Support of X: max(0, n_s + f − n) ..= min(n_s, f).
    let lo = (n_s + f).saturating_sub(n);
    let hi = n_s.min(f);
    if f_s <= lo {
        return 1.0;
    }
    let ln_pmf = |x: u64| ln_choose(f, x) + ln_choose(n - f, n_s - x) - ln_choose(n, n_s);
    // Sum the upper tail with the ratio recurrence, starting at f_s.
    let mut pmf = ln_pmf(f_s).exp();
    let mut total = pmf;
    let mut x = f_s;
    while x < hi {
        let num = (f - x) as f64 * (n_s - x) as f64;
        let den = (x + 1) as f64 * (n + x + 1 - f - n_s) as f64;
        pmf *= num / den;
        total += pmf;
        x += 1;
        if pmf < total * 1e-17 {
            break;
        }
    }
    total.clamp(0.0, 1.0)
}

/// `erfc(x)` (Numerical Recipes' Chebyshev fit; fractional error below 1.2e-7
/// everywhere, so tiny tail probabilities keep their precision).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// `P(Z ≥ z)` for a standard normal `Z`.
pub fn normal_upper(z: f64) -> f64 {
    if z.is_nan() {
        return 1.0;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// One-sided pooled two-proportion z-test that `f1/n1 > f2/n2`.
pub fn z_test_greater(f1: u64, n1: u64, f2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 || f1 > n1 || f2 > n2 {
        return 1.0;
    }
    let (p1, p2) = (f1 as f64 / n1 as f64, f2 as f64 / n2 as f64);
    let pooled = (f1 + f2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 > p2 { 0.0 } else { 1.0 };
    }
    normal_upper((p1 - p2) / se)
}

/// Two-sided pooled two-proportion z-test of `f1/n1 = f2/n2`.
pub fn z_test_two_sided(f1: u64, n1: u64, f2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 || f1 > n1 || f2 > n2 {
        return 1.0;
    }
    let (p1, p2) = (f1 as f64 / n1 as f64, f2 as f64 / n2 as f64);
    let pooled = (f1 + f2) as f64 / (n1 + n2) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    (2.0 * normal_upper(((p1 - p2) / se).abs())).min(1.0)
}

/// The one-sided p-value that a cohort (`f_s` of `n_s`) fails more than the rest
/// (`f_c` of `n_c`): Fisher exact while `f_s < fisher_below`, else the z-test.
pub fn greater_p(f_s: u64, n_s: u64, f_c: u64, n_c: u64, fisher_below: u64) -> f64 {
    if n_s == 0 || n_c == 0 {
        return 1.0;
    }
    if f_s as f64 * n_c as f64 <= f_c as f64 * n_s as f64 {
        // Not above the rest: a one-sided test cannot reject.
        return 1.0;
    }
    if f_s < fisher_below {
        fisher_greater(f_s, n_s, f_s + f_c, n_s + n_c)
    } else {
        z_test_greater(f_s, n_s, f_c, n_c)
    }
}

/// The interaction of two conditions on the risk-ratio scale, from the four cells
/// `[(failures, rows); 4]` in the order `A ∧ B`, `A ∧ ¬B`, `¬A ∧ B`, `¬A ∧ ¬B`:
/// `IR = r₁₁ · r₀₀ / (r₁₀ · r₀₁)`, which is 1 when the rates follow
/// `r = r₀₀ · RR_A · RR_B` (each condition multiplies the rate on its own, whatever the
/// other). Returns `IR` and the one-sided p-value that `IR > 1`: the Wald test of
/// `ln IR` with variance `Σ 1/f − 1/n` (the log method of [`risk_ratio_ci`]; Haldane's
/// 0.5 added to every cell when a count is zero or full). Empty or impossible cells
/// give `(NaN, 1)`.
pub fn interaction_greater(cells: [(u64, u64); 4]) -> (f64, f64) {
    if cells.iter().any(|&(f, n)| n == 0 || f > n) {
        return (f64::NAN, 1.0);
    }
    let haldane = cells.iter().any(|&(f, n)| f == 0 || f == n);
    let (mut ln_ir, mut var) = (0.0, 0.0);
    for (i, &(f, n)) in cells.iter().enumerate() {
        let (mut f, mut n) = (f as f64, n as f64);
        if haldane {
            f += 0.5;
            n += 1.0;
        }
        let sign = if i == 0 || i == 3 { 1.0 } else { -1.0 };
        ln_ir += sign * (f / n).ln();
        var += 1.0 / f - 1.0 / n;
    }
    let se = var.max(0.0).sqrt();
    let p = if se > 0.0 {
        normal_upper(ln_ir / se)
    } else if ln_ir > 0.0 {
        0.0
    } else {
        1.0
    };
    (ln_ir.exp(), p)
}

/// Benjamini–Hochberg adjusted p-values (q-values), in the order of `p`. A hypothesis
/// is rejected at FDR level `q` when its q-value is at most `q`.
pub fn bh_q_values(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for rank in (0..m).rev() {
        let i = order[rank];
        let adjusted = (p[i] * m as f64 / (rank + 1) as f64).min(1.0);
        running = running.min(adjusted);
        q[i] = if running.is_nan() { 1.0 } else { running };
    }
    q
}

/// Benjamini–Yekutieli adjusted p-values: BH multiplied by `H(m) = Σ 1/i`, valid under
/// any dependence between the tests (nested itemsets are strongly dependent).
pub fn by_q_values(p: &[f64]) -> Vec<f64> {
    let h: f64 = (1..=p.len()).map(|i| 1.0 / i as f64).sum();
    bh_q_values(p)
        .into_iter()
        .map(|q| (q * h.max(1.0)).min(1.0))
        .collect()
}

/// The risk ratio `(f1/n1) / (f2/n2)` with its 95% interval by the log method
/// (Katz): `exp(ln RR ± z·sqrt(1/f1 − 1/n1 + 1/f2 − 1/n2))`. A zero count gets the
/// Haldane correction (0.5 added to every cell) for the interval and the ratio.
pub fn risk_ratio_ci(f1: u64, n1: u64, f2: u64, n2: u64) -> (f64, [f64; 2]) {
    if n1 == 0 || n2 == 0 || f1 > n1 || f2 > n2 {
        return (f64::NAN, [f64::NAN, f64::NAN]);
    }
    let (mut a, mut n1f, mut c, mut n2f) = (f1 as f64, n1 as f64, f2 as f64, n2 as f64);
    if f1 == 0 || f2 == 0 || f1 == n1 || f2 == n2 {
        a += 0.5;
        c += 0.5;
        n1f += 1.0;
        n2f += 1.0;
    }
    let rr = (a / n1f) / (c / n2f);
    let se = (1.0 / a - 1.0 / n1f + 1.0 / c - 1.0 / n2f).max(0.0).sqrt();
    let ln = rr.ln();
    (rr, [(ln - Z95 * se).exp(), (ln + Z95 * se).exp()])
}

/// The difference `f2/n2 − f1/n1` with its 95% Wald interval (unpooled variance).
pub fn difference_ci(f1: u64, n1: u64, f2: u64, n2: u64) -> (f64, [f64; 2]) {
    if n1 == 0 || n2 == 0 || f1 > n1 || f2 > n2 {
        return (f64::NAN, [f64::NAN, f64::NAN]);
    }
    let (p1, p2) = (f1 as f64 / n1 as f64, f2 as f64 / n2 as f64);
    let d = p2 - p1;
    let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
    (d, [d - Z95 * se, d + Z95 * se])
}
