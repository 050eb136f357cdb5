//! Tokenising and masking of a reason string, without allocation.
//!
//! A reason is cut into tokens on whitespace and on the punctuation that separates
//! fields (`=`, `,`, `;`, `:`, brackets, quotes). Before a word is cut, it is checked
//! whole against the shapes of variable values, so that a value which contains
//! separators stays one variable: URLs, e-mail addresses, paths, host:port, IPv4/IPv6,
//! UUIDs, MAC addresses, times, dates, hex, numbers with units and durations. After the
//! cut, any piece that contains a digit is a variable too. A quoted string is a variable
//! when it holds a value (digits, symbols); a quoted bare name or phrase is kept,
//! because error messages quote the names (fields, tools, models) that tell failures
//! apart, and JSON keys are quoted names. Runs of adjacent variables collapse into one
//! `<*>`, so `12:30:01 PM` and `00:01` both become one variable.
//!
//! The tokens are hashes (FNV-1a, deterministic across runs and platforms) with the
//! byte range they cover in the message, so the caller can compare them without
//! touching the text and rebuild a template from the ranges only when it must.

/// The hash of a masked (variable) token.
pub(crate) const WILD: u64 = 0;

/// One token of a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// FNV-1a hash of the token's text, or [`WILD`] for a variable.
    pub hash: u64,
    /// Byte range of the token (for a collapsed run of variables: the whole run).
    pub start: u32,
    pub end: u32,
}

impl Token {
    pub fn is_wild(&self) -> bool {
        self.hash == WILD
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The bit that marks a constant kept on purpose where a value usually is (an HTTP
/// error status after its key): the merge pass never turns it into `<*>`. Other hashes
/// never have it.
pub(crate) const KEPT: u64 = 1 << 63;

/// FNV-1a of `bytes` less the [`KEPT`] bit, never equal to [`WILD`].
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    finish(h)
}

/// FNV-1a of `bytes` folded to ASCII lower case, less the [`KEPT`] bit, never equal to
/// [`WILD`].
pub(crate) fn hash_lower(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(FNV_PRIME);
    }
    finish(h)
}

fn finish(h: u64) -> u64 {
    match h & !KEPT {
        WILD => 1,
        h => h,
    }
}

/// The part of a reason that is clustered: stack traces and multi-line messages keep
/// their first line, except a Python traceback, which keeps its last line (the
/// exception and its message).
pub(crate) fn headline(reason: &str) -> &str {
    let trimmed = reason.trim();
    if !trimmed.contains('\n') {
        return trimmed;
    }
    if trimmed.starts_with("Traceback") {
        if let Some(last) = trimmed.lines().rev().find(|l| !l.trim().is_empty()) {
            return last.trim();
        }
    }
    trimmed.lines().next().unwrap_or("").trim()
}

/// Splits `msg` into at most `max_tokens` tokens into `out`, which is cleared first.
/// Allocates only if `out` must grow.
pub(crate) fn tokenize(msg: &str, max_tokens: usize, out: &mut Vec<Token>) {
    out.clear();
    let b = msg.as_bytes();
    let n = b.len();
    let mut i = 0;
    // End of a bracketed group being tokenised, and where its tokens start.
    let mut group: Option<(usize, usize)> = None;
    while i < n && out.len() < max_tokens {
        while i < n && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            break;
        }
        let mut j = i;
        while j < n && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        // Quoted strings may span whitespace.
        if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            if let Some(close) = b[i + 1..].iter().position(|&c| c == q) {
                let close = i + 1 + close;
                if quoted_is_value(&b[i + 1..close]) {
                    push(out, WILD, i, close + 1, out.len());
                    i = close + 1;
                    // Punctuation glued to the closing quote (`'x',`) is not a token.
                    while i < n && (is_edge_punct(b[i]) || is_split(b[i])) {
                        i += 1;
                    }
                    continue;
                }
            }
        }
        // A value followed by its unit (`18.4 KB`, `<1 sec`, `250 ms`) is one variable.
        let unit = out.last().is_some_and(|t| t.is_wild()) && is_unit(trim_punct(&b[i..j]));
        if unit {
            if let Some(last) = out.last_mut() {
                last.end = j as u32;
            }
        } else {
            // A bracketed group that holds only values (`(1.16 KB)`, `[10.0.0.1]`,
            // `()`) annotates the value before it: it is dropped, so that it being
            // there or not does not change the token count.
            if group.is_none() && (b[i] == b'(' || b[i] == b'[') {
                group = group_end(b, i).map(|end| (end, out.len()));
            }
            word(b, i, j, out);
        }
        i = j;
        if let Some((end, from)) = group {
            if i >= end {
                if out.len() > from && out[from..].iter().all(|t| t.is_wild() || t.hash == PUNCT) {
                    out.truncate(from);
                } else if out.len() > from {
                    for t in &mut out[from..] {
                        if t.hash == PUNCT {
                            t.hash = hash_bytes(&b[t.start as usize..t.end as usize]);
                        }
                    }
                }
                group = None;
            }
        }
    }
    for t in out.iter_mut() {
        if t.hash == PUNCT {
            t.hash = hash_bytes(&b[t.start as usize..t.end as usize]);
        }
    }
    out.truncate(max_tokens);
}

/// Placeholder hash of a pure-punctuation token inside a bracketed group, until the
/// group is known to be kept.
const PUNCT: u64 = 2;

/// The end (exclusive) of the bracketed group opening at `b[i]`, if it closes within
/// four words.
fn group_end(b: &[u8], i: usize) -> Option<usize> {
    let (open, close) = if b[i] == b'(' {
        (b'(', b')')
    } else {
        (b'[', b']')
    };
    let mut depth = 0i32;
    let mut words = 1;
    for (k, &c) in b.iter().enumerate().skip(i) {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                let mut e = k + 1;
                while e < b.len() && !b[e].is_ascii_whitespace() {
                    e += 1;
                }
                return Some(e);
            }
        } else if c.is_ascii_whitespace() {
            words += 1;
            if words > 4 {
                return None;
            }
        }
    }
    None
}

fn trim_punct(w: &[u8]) -> &[u8] {
    let mut s = 0;
    let mut e = w.len();
    while s < e && is_edge_punct(w[s]) {
        s += 1;
    }
    while e > s && is_edge_punct(w[e - 1]) {
        e -= 1;
    }
    &w[s..e]
}

const UNITS: [&[u8]; 34] = [
    b"b", b"kb", b"mb", b"gb", b"tb", b"kib", b"mib", b"gib", b"tib", b"bytes", b"ns", b"us",
    b"ms", b"s", b"sec", b"secs", b"second", b"seconds", b"min", b"mins", b"minute", b"minutes",
    b"h", b"hr", b"hrs", b"hour", b"hours", b"day", b"days", b"%", b"kb/s", b"mb/s", b"tokens",
    b"chars",
];

fn is_unit(w: &[u8]) -> bool {
    !w.is_empty() && w.len() <= 8 && UNITS.iter().any(|u| u.eq_ignore_ascii_case(w))
}

/// A quoted string is a value (masked) when it is one word holding anything but a
/// name (digits, symbols), or a long text; a quoted name or short phrase is kept.
fn quoted_is_value(inner: &[u8]) -> bool {
    if inner.is_empty() {
        return true;
    }
    let words = inner
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .count();
    if words > 1 {
        return words > 6;
    }
    !inner
        .iter()
        .all(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'-' || c == b'.')
}

#[inline]
fn push(out: &mut Vec<Token>, hash: u64, start: usize, end: usize, floor: usize) {
    if hash == WILD && out.len() > floor {
        if let Some(last) = out.last_mut() {
            if last.hash == WILD {
                last.end = end as u32;
                return;
            }
        }
    }
    out.push(Token {
        hash,
        start: start as u32,
        end: end as u32,
    });
}

#[inline]
fn is_edge_punct(c: u8) -> bool {
    matches!(
        c,
        b'.' | b','
            | b';'
            | b':'
            | b'!'
            | b'?'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b'<'
            | b'>'
            | b'`'
    )
}

#[inline]
fn is_split(c: u8) -> bool {
    matches!(
        c,
        b'=' | b','
            | b';'
            | b':'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'"'
            | b'\''
            | b'<'
            | b'>'
            | b'|'
            | b'`'
    )
}

/// One whitespace-delimited word `b[s..e]`.
fn word(b: &[u8], s: usize, e: usize, out: &mut Vec<Token>) {
    let floor = out.len();
    // The core without surrounding punctuation.
    let mut cs = s;
    let mut ce = e;
    while cs < ce && is_edge_punct(b[cs]) {
        cs += 1;
    }
    while ce > cs && is_edge_punct(b[ce - 1]) {
        ce -= 1;
    }
    if cs == ce {
        // Pure punctuation (`-`, `:`, `...`) is a constant token.
        push(out, PUNCT, s, e, floor);
        return;
    }
    if is_status_after_its_key(b, &b[cs..ce], out) {
        push(out, hash_bytes(&b[cs..ce]) | KEPT, cs, ce, floor);
        return;
    }
    if whole_value(&b[cs..ce]) {
        push(out, WILD, cs, ce, floor);
        return;
    }
    // Cut into pieces at field separators.
    let mut p = s;
    while p < e {
        while p < e && is_split(b[p]) {
            p += 1;
        }
        if p >= e {
            break;
        }
        let mut q = p;
        while q < e && !is_split(b[q]) {
            q += 1;
        }
        piece(b, p, q, out, floor);
        p = q;
    }
    // A word without a `key=`/`key:` field that holds a value is one value
    // (`LOCAL(0)`, `eth0.100`): its pieces collapse into one variable.
    if out.len() > floor + 1
        && out[floor..].iter().any(Token::is_wild)
        && !b[cs..ce].iter().any(|&c| c == b'=' || c == b':')
    {
        out.truncate(floor);
        push(out, WILD, cs, ce, floor);
    }
}

/// One piece of a word between separators.
fn piece(b: &[u8], s: usize, e: usize, out: &mut Vec<Token>, floor: usize) {
    let mut ps = s;
    let mut pe = e;
    while ps < pe && is_edge_punct(b[ps]) {
        ps += 1;
    }
    while pe > ps && is_edge_punct(b[pe - 1]) {
        pe -= 1;
    }
    if ps == pe {
        return;
    }
    let t = &b[ps..pe];
    if is_status_after_its_key(b, t, out) {
        push(out, hash_bytes(t) | KEPT, ps, pe, floor);
    } else if t.iter().any(u8::is_ascii_digit) || whole_value(t) {
        push(out, WILD, ps, pe, floor);
    } else {
        push(out, hash_bytes(t), ps, pe, floor);
    }
}

/// Words after which an HTTP error status is kept as a constant (`status 503`,
/// `error.type 429`, `Error code: 500`, `HTTP 504`): the status tells failures apart
/// (a rate limit is not an outage) and has few values, unlike the numbers masked
/// elsewhere.
const STATUS_KEYS: [&[u8]; 7] = [
    b"status",
    b"status_code",
    b"code",
    b"error.type",
    b"http",
    b"http.response.status_code",
    b"http.status_code",
];

/// An HTTP error status (400–599) right after one of [`STATUS_KEYS`].
fn is_status_after_its_key(b: &[u8], t: &[u8], out: &[Token]) -> bool {
    if t.len() != 3 || !t.iter().all(u8::is_ascii_digit) || !(b'4'..=b'5').contains(&t[0]) {
        return false;
    }
    let Some(prev) = out.last().filter(|p| !p.is_wild()) else {
        return false;
    };
    let key = b
        .get(prev.start as usize..prev.end as usize)
        .unwrap_or_default();
    STATUS_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Whether a whole word (without surrounding punctuation) is the shape of a value.
fn whole_value(w: &[u8]) -> bool {
    // URL.
    if w.windows(3).any(|x| x == b"://") {
        return true;
    }
    // Path: absolute, relative, home, Windows drive or UNC.
    if (w.len() > 1 && w[0] == b'/' && w[1] != b'/')
        || w.starts_with(b"./")
        || w.starts_with(b"../")
        || w.starts_with(b"~/")
        || w.contains(&b'\\')
        || (w.len() > 2 && w[0].is_ascii_alphabetic() && w[1] == b':' && w[2] == b'/')
    {
        return true;
    }
    // E-mail address.
    if let Some(at) = w.iter().position(|&c| c == b'@') {
        let dom = &w[at + 1..];
        if at > 0
            && dom.contains(&b'.')
            && dom
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
        {
            return true;
        }
    }
    let has_digit = w.iter().any(u8::is_ascii_digit);
    // host:port and IPv6 with or without brackets.
    if let Some(colon) = w.iter().rposition(|&c| c == b':') {
        let (host, port) = (&w[..colon], &w[colon + 1..]);
        if !port.is_empty()
            && port.iter().all(u8::is_ascii_digit)
            && (host.contains(&b'.')
                || (port.len() >= 2
                    && host
                        .iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')))
            && !host.is_empty()
            && host
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-' || *c == b'_')
        {
            return true;
        }
    }
    if !has_digit {
        return is_host_name(w) || is_calendar_word(w);
    }
    if is_host_name(w) {
        return true;
    }
    // Numbers, hex, IPs, UUIDs, MACs, times, dates, versions, with an optional unit
    // suffix of letters (ms, s, KB, GiB, %, ...).
    let mut end = w.len();
    let mut suffix = 0;
    while end > 0 && (w[end - 1].is_ascii_alphabetic() || w[end - 1] == b'%') && suffix < 4 {
        end -= 1;
        suffix += 1;
    }
    let body = if end > 0 { &w[..end] } else { w };
    body.iter().all(|&c| {
        c.is_ascii_hexdigit()
            || matches!(
                c,
                b'.' | b':' | b'-' | b'+' | b'/' | b'_' | b'x' | b'X' | b',' | b'#'
            )
    })
}

const TLDS: [&[u8]; 20] = [
    b"com",
    b"net",
    b"org",
    b"edu",
    b"gov",
    b"mil",
    b"int",
    b"io",
    b"ai",
    b"cn",
    b"de",
    b"uk",
    b"jp",
    b"br",
    b"ru",
    b"fr",
    b"hk",
    b"us",
    b"local",
    b"internal",
];

/// A dotted DNS name ending in a common top-level domain (`ns.example.com`).
fn is_host_name(w: &[u8]) -> bool {
    let Some(dot) = w.iter().rposition(|&c| c == b'.') else {
        return false;
    };
    dot > 0
        && w.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'-')
        && TLDS.iter().any(|t| t.eq_ignore_ascii_case(&w[dot + 1..]))
}

const CALENDAR: [&[u8]; 19] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun",
];

/// A month or weekday abbreviation, as written in timestamps (`Fri Jun 17`).
fn is_calendar_word(w: &[u8]) -> bool {
    w.len() == 3 && CALENDAR.contains(&w)
}
