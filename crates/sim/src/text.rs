//! Text with variable parts: questions, answers, documents, tool payloads and the reason
//! strings of planted faults (ids, numbers, file names, URLs and paraphrases vary).

use std::fmt::Write as _;

use rand::rngs::SmallRng;
use rand::Rng;

/// One element of a slice, uniformly.
pub(crate) fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    // Every pool below is a non-empty constant, so the index is always in range.
    &items[rng.random_range(0..items.len())]
}

/// A standard normal draw (Box-Muller).
pub(crate) fn normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A log-normal draw with the given median and log-space sigma.
pub(crate) fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Lowercase hex of `n` random bytes.
pub(crate) fn hex_id(rng: &mut SmallRng, n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for _ in 0..n {
        let _ = write!(s, "{:02x}", rng.random::<u8>());
    }
    s
}

/// An OpenAI-style id such as `chatcmpl-9fQ2...`.
pub(crate) fn alnum_id(rng: &mut SmallRng, prefix: &str, n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::with_capacity(prefix.len() + n);
    s.push_str(prefix);
    for _ in 0..n {
        s.push(CHARS[rng.random_range(0..CHARS.len())] as char);
    }
    s
}

const TOPICS: &[&str] = &[
    "refund policy",
    "SSO configuration",
    "API rate limits",
    "data retention",
    "webhook retries",
    "billing cycles",
    "GPU quotas",
    "audit logs",
    "password reset",
    "export to CSV",
    "team permissions",
    "invoice currency",
];
const PRODUCTS: &[&str] = &[
    "Acme Cloud",
    "the mobile app",
    "the Pro plan",
    "the Enterprise tier",
    "the public API",
    "the admin console",
];
const CITIES: &[&str] = &[
    "Lyon", "Osaka", "Denver", "Lisbon", "Nairobi", "Toronto", "Kraków", "Austin", "Seoul", "Porto",
];
const FILLER: &[&str] = &[
    "According to the documentation,",
    "Based on the retrieved context,",
    "In short,",
    "As described in the admin guide,",
    "Per the latest release notes,",
];
const DETAILS: &[&str] = &[
    "the setting can be changed by an organization owner under Settings > Security",
    "requests above the limit receive HTTP 429 and should be retried with backoff",
    "records are kept for 90 days on the standard plan and 400 days on Enterprise",
    "deliveries are retried up to 8 times with exponential backoff starting at 30 seconds",
    "charges are prorated to the day when a plan changes mid-cycle",
    "exports larger than 1 GB are split into several files and emailed as a link",
    "the change takes effect for new sessions only; existing tokens remain valid until expiry",
    "only workspace admins can grant the billing role to other members",
];

pub(crate) fn question(rng: &mut SmallRng) -> String {
    let topic = pick(rng, TOPICS);
    let product = pick(rng, PRODUCTS);
    let preface = pick(
        rng,
        &[
            "",
            "We are migrating our workspace next week and our admins keep asking about this. ",
            "I read the help center article twice and it is still not clear to me. ",
            "Following up on my previous ticket, which was closed without an answer. ",
        ],
    );
    let q = match rng.random_range(0..4) {
        0 => format!("How does the {topic} work in {product}?"),
        1 => format!("What is the {topic} for {product}, and can I change it?"),
        2 => format!(
            "Can you explain the {topic} of {product} for a team of {} people?",
            rng.random_range(3..400)
        ),
        _ => format!(
            "Where do I configure {topic} in {product}? Our account id is {}.",
            rng.random_range(10000..99999)
        ),
    };
    format!("{preface}{q}")
}

pub(crate) fn answer(rng: &mut SmallRng, sentences: usize) -> String {
    let mut s = String::with_capacity(sentences * 110);
    for i in 0..sentences {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{} {}.", pick(rng, FILLER), pick(rng, DETAILS));
    }
    s
}

pub(crate) fn document(rng: &mut SmallRng) -> String {
    let topic = pick(rng, TOPICS);
    format!(
        "## {topic}\n{}. {}. Note: {}. See section {}.{}.",
        capitalize(pick::<&str>(rng, DETAILS)),
        capitalize(pick::<&str>(rng, DETAILS)),
        pick(rng, DETAILS),
        rng.random_range(1..12),
        rng.random_range(1..9)
    )
}

pub(crate) fn offtopic_document(rng: &mut SmallRng) -> String {
    const OFF: &[&str] = &[
        "Our office in {city} is closed on public holidays; visitors must sign in at reception.",
        "The {city} team offsite is scheduled for next quarter; book travel through the portal.",
        "Release {v} of the desktop theme pack adds three new colour palettes.",
        "The cafeteria in {city} now serves breakfast from 7:30 until 10:00.",
    ];
    pick(rng, OFF)
        .replace("{city}", pick::<&str>(rng, CITIES))
        .replace(
            "{v}",
            &format!("{}.{}", rng.random_range(1..9), rng.random_range(0..20)),
        )
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub(crate) fn city(rng: &mut SmallRng) -> &'static str {
    pick::<&'static str>(rng, CITIES)
}

pub(crate) fn date(rng: &mut SmallRng) -> String {
    format!(
        "2025-{:02}-{:02}",
        rng.random_range(1..13),
        rng.random_range(1..29)
    )
}

/// A sentence cut in the middle, as a response stopped at the token limit.
pub(crate) fn truncated_answer(rng: &mut SmallRng) -> String {
    let mut s = answer(rng, 3);
    let cut = s.len() * rng.random_range(55..90) / 100;
    let mut cut = cut.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s
}

pub(crate) fn hallucinated_answer(rng: &mut SmallRng) -> String {
    format!(
        "{} {} was introduced in version {}.{} and is configured with the `{}` flag.",
        pick(rng, &["Yes,", "Certainly:", "Good question."]),
        capitalize(pick::<&str>(rng, TOPICS)),
        rng.random_range(2..9),
        rng.random_range(0..30),
        pick(
            rng,
            &[
                "--enable-legacy-mode",
                "auto_sync=true",
                "FEATURE_X_BETA",
                "--fast-path"
            ]
        )
    )
}

pub(crate) fn critic_accept(rng: &mut SmallRng) -> String {
    format!("ACCEPT: {}", critic_accept_reason(rng))
}

/// Why a critic accepts an answer (a sentence ending in a full stop).
pub(crate) fn critic_accept_reason(rng: &mut SmallRng) -> &'static str {
    const REASONS: [&str; 3] = [
        "the answer is supported by the context and addresses the question.",
        "grounded in sources 1 and 2; complete.",
        "correct and cites the relevant section.",
    ];
    // The same draw as `pick`.
    REASONS[rng.random_range(0..REASONS.len())]
}

pub(crate) fn critic_reject(rng: &mut SmallRng) -> String {
    format!("REJECT: {}.", critic_reject_reason(rng))
}

/// Why a critic rejects an answer (no final full stop).
pub(crate) fn critic_reject_reason(rng: &mut SmallRng) -> String {
    let n = rng.random_range(1..5);
    let reason = match rng.random_range(0..5) {
        0 => format!("the answer does not address part {n} of the question"),
        1 => format!(
            "the answer contradicts source {n} about the {}",
            pick(rng, TOPICS)
        ),
        2 => "the tone is too informal for a support reply and omits the required disclaimer"
            .to_string(),
        3 => format!("the answer cites a setting that is not in the {n} provided documents"),
        _ => {
            format!("missing the step-by-step instructions the user asked for ({n} steps expected)")
        }
    };
    reason
}

/// A Python-like stack trace for an exception raised in `file`.
pub(crate) fn stacktrace(rng: &mut SmallRng, ty: &str, message: &str, file: &str) -> String {
    format!(
        "Traceback (most recent call last):\n  File \"/app/agent/{file}\", line {}, in run\n    result = await self._call(**kwargs)\n  File \"/app/agent/{file}\", line {}, in _call\n    raise {ty}(msg)\n{ty}: {message}",
        rng.random_range(20..400),
        rng.random_range(20..400)
    )
}
