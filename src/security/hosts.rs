//! Which `Host` values the API answers (the DNS-rebinding guard) and which browser
//! origins may send OTLP/HTTP (CORS).
//!
//! A page on `http://evil.example` whose name is re-pointed at 127.0.0.1 reaches the API
//! with `Host: evil.example`; refusing names the API does not own makes such a page read
//! nothing. The API answers:
//!
//! - any IP literal (`127.0.0.1:8700`, `[::1]:8700`, `10.0.0.5`): a page whose origin is
//!   an IP address is served by that address, so it cannot be a rebinding target;
//! - `localhost` and names under `.localhost`, which resolve to loopback only;
//! - when bound to a non-loopback address (`0.0.0.0` included), the machine's host name
//!   (as in `/proc/sys/kernel/hostname`, and the `HOSTNAME` variable), which is what
//!   Kubernetes and Docker use for a pod or container;
//! - every name of `--api-allowed-hosts` (exact, or `*.example.com` for any name under
//!   it): the way to add DNS names such as a Service or ingress name.
//!
//! The port is not compared. Patterns here hold at most a few `*` wildcards, each
//! matching any run of characters.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `text` matches `pattern`, where `*` matches any run of characters. ASCII
/// case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The host part of a `Host` value (no port, no brackets, no trailing dot), and whether
/// it is an IP literal. `None` if the value is not a host.
pub fn split_host(value: &str) -> Option<(String, bool)> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| (ip.to_string(), true));
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return None,
        None => value,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return None;
    }
    let is_ip = host.parse::<Ipv4Addr>().is_ok();
    Some((host.to_ascii_lowercase(), is_ip))
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The `Host` values one API listener answers.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// Names (lower case) and `*` patterns, besides IP literals and `localhost`.
    names: Vec<String>,
}

/// The machine's host name, if known.
fn machine_hostnames() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(name.trim().to_ascii_lowercase());
    }
    if let Ok(name) = std::env::var("HOSTNAME") {
        names.push(name.trim().to_ascii_lowercase());
    }
    names.retain(|n| !n.is_empty());
    names.dedup();
    names
}

impl AllowedHosts {
    /// The policy of a listener bound to `bind`, with the configured extra names.
    pub fn new(bind: SocketAddr, extra: &[String]) -> AllowedHosts {
        let mut names: Vec<String> = extra
            .iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        if !is_loopback(bind.ip()) {
            names.extend(machine_hostnames());
        }
        names.retain(|n| !n.is_empty());
        AllowedHosts { names }
    }

    /// Whether a request with this `Host` (or `:authority`) is answered.
    pub fn allows(&self, host: &str) -> bool {
        let Some((host, is_ip)) = split_host(host) else {
            return false;
        };
        if is_ip || host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        self.names.iter().any(|p| glob_match(p, &host))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// Origins allowed to call OTLP/HTTP from a browser: exact (`https://app.example.com`),
/// with wildcards (`https://*.example.com`), or `*` for any.
#[derive(Debug, Clone, Default)]
pub struct OriginPatterns(Vec<String>);

impl OriginPatterns {
    pub fn new(patterns: &[String]) -> OriginPatterns {
        OriginPatterns(
            patterns
                .iter()
                .map(|p| p.trim().trim_end_matches('/').to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request's `Origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|p| glob_match(p, origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:8700".parse().expect("addr")
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(!glob_match("https://*.example.com", "https://example.com"));
        assert!(!glob_match("https://*.example.com", "http://a.example.com"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("A.example.com", "a.EXAMPLE.com"));
        assert!(!glob_match("a.example.com", "a.example.com.evil"));
    }

    #[test]
    fn loopback_listener_answers_ip_literals_and_localhost_only() {
        let hosts = AllowedHosts::new(loopback(), &[]);
        for ok in [
            "127.0.0.1:8700",
            "127.0.0.1",
            "[::1]:8700",
            "localhost:8700",
            "LOCALHOST",
            "localhost.",
            "app.localhost:8700",
            "10.1.2.3:80",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8700",
            "localhost.evil.example",
            "",
            "a b",
            "[::1",
            "127.0.0.1:80:80",
            "host:port",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
    }

    #[test]
    fn configured_names_and_wildcards() {
        let hosts = AllowedHosts::new(
            loopback(),
            &["faultline.example.com".into(), "*.svc.cluster.local".into()],
        );
        assert!(hosts.allows("faultline.example.com:443"));
        assert!(hosts.allows("faultline.monitoring.svc.cluster.local:8700"));
        assert!(!hosts.allows("other.example.com"));
    }

    #[test]
    fn unspecified_bind_answers_the_machine_name() {
        let hosts = AllowedHosts::new("0.0.0.0:8700".parse().expect("addr"), &[]);
        for name in machine_hostnames() {
            assert!(hosts.allows(&format!("{name}:8700")), "{name}");
        }
        assert!(!hosts.allows("evil.example"));
    }

    #[test]
    fn origins() {
        let o = OriginPatterns::new(&[
            "https://*.example.com".into(),
            "http://localhost:3000/".into(),
        ]);
        assert!(o.allows("https://app.example.com"));
        assert!(o.allows("http://localhost:3000"));
        assert!(!o.allows("https://example.org"));
        assert!(OriginPatterns::new(&[]).is_empty());
    }
}
