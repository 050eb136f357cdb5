//! The HTTP client of the commands that read a running server (`top`, `trajectories`,
//! `show`, `reasons`, `cohorts`).
//!
//! Every such command takes `--server URL` (env `FAULTLINE_SERVER`, default
//! `http://127.0.0.1:8700`; `https://` for a server with TLS), `--json` (print the API's
//! answer as is), `--api-token-file FILE` (the token sent as `Authorization: Bearer`;
//! else env `FAULTLINE_API_TOKEN` holding the token itself, else env
//! `FAULTLINE_API_TOKEN_FILE`) and `--ca-file FILE` (env `FAULTLINE_CA_FILE`: PEM CA
//! certificates trusted for an https server, besides the system's). Errors map to exit
//! codes: the server cannot be reached → 1, naming the URL; the server refuses the
//! request (HTTP 4xx, a missing or refused token, a TLS certificate not trusted) → 2
//! with a message saying what to do; a token file or CA file that cannot be used → 2,
//! naming it; a 5xx or an answer that is not JSON → 1.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use reqwest::Url;
use serde_json::Value;

/// The server's default API address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8700";

/// Options shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The faultline server to ask (its API address).
    #[arg(
        long,
        env = "FAULTLINE_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,
    /// Print the API's JSON answer as is, instead of a table.
    #[arg(long)]
    pub json: bool,
    /// File holding the API token (the server's --api-token-file: the first token of
    /// the file is sent) [env: FAULTLINE_API_TOKEN with the token itself, or
    /// FAULTLINE_API_TOKEN_FILE].
    #[arg(long, id = "api_token_file", value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https --server, besides the system's.
    #[arg(long, id = "ca_file", env = "FAULTLINE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Where the API token comes from, in order: `--api-token-file`, then the environment.
pub const TOKEN_ENV: &str = "FAULTLINE_API_TOKEN";
/// The environment variable naming a token file (as the server's).
pub const TOKEN_FILE_ENV: &str = "FAULTLINE_API_TOKEN_FILE";

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid --server `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error("cannot reach the faultline server at {url}: {message} (is `faultline serve` running there? set --server or FAULTLINE_SERVER)")]
    Unreachable { url: String, message: String },
    #[error("the server refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the server at {url} failed (HTTP {status}): {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the server at {url} answered with something that is not JSON: {message}")]
    NotJson { url: String, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{origin} {path}: {problem}")]
    TokenFile {
        /// `--api-token-file` or `FAULTLINE_API_TOKEN_FILE`.
        origin: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("{TOKEN_ENV}: {0}")]
    TokenEnv(String),
    #[error("--ca-file (or FAULTLINE_CA_FILE) {0}")]
    CaFile(crate::security::TlsError),
    #[error("the server at {url} needs an API token (HTTP 401: {message}); give --api-token-file FILE, or set {TOKEN_ENV} or {TOKEN_FILE_ENV}")]
    TokenNeeded { url: String, message: String },
    #[error("the server at {url} refused the API token from {origin} (HTTP 401: {message}); it must be a token of the server's --api-token-file")]
    TokenRefused {
        url: String,
        origin: String,
        message: String,
    },
    #[error("the server at {url} refused access (HTTP 403): {message}")]
    Forbidden { url: String, message: String },
    #[error("the TLS certificate of the server at {url} is not trusted ({message}); give the CA that signed it with --ca-file FILE or FAULTLINE_CA_FILE")]
    Untrusted { url: String, message: String },
}

impl ClientError {
    /// 2 for a refused request or bad usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::BadUrl { .. }
            | ClientError::Refused { .. }
            | ClientError::InvalidArgument(_)
            | ClientError::TokenFile { .. }
            | ClientError::TokenEnv(_)
            | ClientError::CaFile(_)
            | ClientError::TokenNeeded { .. }
            | ClientError::TokenRefused { .. }
            | ClientError::Forbidden { .. }
            | ClientError::Untrusted { .. } => 2,
            ClientError::Unreachable { .. }
            | ClientError::Server { .. }
            | ClientError::NotJson { .. } => 1,
        }
    }
}

/// An answer: the body as sent (for `--json`) and parsed.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub json: Value,
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    http: reqwest::Client,
    token: Option<Token>,
}

/// The API token and where it came from (for messages; the token is never shown).
#[derive(Clone)]
struct Token {
    value: String,
    origin: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("origin", &self.origin)
            .finish()
    }
}

/// The first token of a token file (the server's format: one per line, `#` comments).
fn token_from_file(origin: &'static str, path: &Path) -> Result<Token, ClientError> {
    let problem = |problem: String| ClientError::TokenFile {
        origin,
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(format!("cannot read: {e}")))?;
    let first = crate::security::token::parse_tokens(&text)
        .into_iter()
        .next();
    let value = first
        .ok_or_else(|| problem("holds no token (one token per line)".to_owned()))
        .and_then(|t| {
            String::from_utf8(t).map_err(|_| problem("the token is not UTF-8".to_owned()))
        })?;
    check_token(&value).map_err(problem)?;
    Ok(Token {
        value,
        origin: format!("{origin} {}", path.display()),
    })
}

/// A token must fit in an HTTP header: visible ASCII, no spaces inside.
fn check_token(token: &str) -> Result<(), String> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("the token has characters an HTTP header cannot carry (spaces, control or non-ASCII characters)".to_owned())
    }
}

/// The API token: `--api-token-file`, else `FAULTLINE_API_TOKEN`, else
/// `FAULTLINE_API_TOKEN_FILE`; `None` when none is given.
fn resolve_token(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<Token>, ClientError> {
    if let Some(path) = flag {
        return token_from_file("--api-token-file", path).map(Some);
    }
    if let Some(value) = env(TOKEN_ENV) {
        let value = value
            .into_string()
            .map_err(|_| ClientError::TokenEnv("is not UTF-8".to_owned()))?;
        let value = value.trim();
        if value.is_empty() {
            return Err(ClientError::TokenEnv(
                "is set but empty; unset it or give the token".to_owned(),
            ));
        }
        check_token(value).map_err(ClientError::TokenEnv)?;
        return Ok(Some(Token {
            value: value.to_owned(),
            origin: TOKEN_ENV.to_owned(),
        }));
    }
    match env(TOKEN_FILE_ENV) {
        Some(path) if !path.is_empty() => {
            token_from_file(TOKEN_FILE_ENV, Path::new(&path)).map(Some)
        }
        _ => Ok(None),
    }
}

/// The longest error text echoed from a server.
const MAX_ECHO: usize = 500;

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_ECHO) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Parses `--server`: a URL, or `host:port` taken as `http://host:port`.
pub fn parse_server(server: &str) -> Result<Url, ClientError> {
    let text = server.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let bad = |message: String| ClientError::BadUrl {
        url: server.to_owned(),
        message,
    };
    let url = Url::parse(&with_scheme).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme `{}` is not supported: use http:// or https://",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the server's address without a query".into()));
    }
    Ok(url)
}

impl Client {
    /// A client of `--server` with no token and the system's CAs only.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        Client::from_parts(server, None, None)
    }

    /// A client of the options of a command: the server, its token and CA file (flags,
    /// else the environment).
    pub fn from_args(args: &ServerArgs) -> Result<Client, ClientError> {
        let token = resolve_token(args.api_token_file.as_deref(), |name| {
            std::env::var_os(name)
        })?;
        Client::from_parts(&args.server, token, args.ca_file.as_deref())
    }

    fn from_parts(
        server: &str,
        token: Option<Token>,
        ca_file: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let base = parse_server(server)?;
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        let builder =
            crate::security::tls::reqwest_with_ca(builder, ca_file).map_err(ClientError::CaFile)?;
        let http = builder.build().map_err(|e| ClientError::BadUrl {
            url: server.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Client { base, http, token })
    }

    /// The server's base URL, as shown in messages.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` (each percent-encoded) under the base path.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// GETs `segments` with `query` (empty values are left out) and parses the JSON.
    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        let url = self.url(segments);
        let shown = self.base.as_str().trim_end_matches('/').to_owned();
        let query: Vec<(&str, &str)> = query
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        tracing::debug!(%url, ?query, "GET");
        let mut request = self.http.get(url).query(&query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(&token.value);
        }
        let response = request.send().await.map_err(|e| match untrusted(&e) {
            Some(message) => ClientError::Untrusted {
                url: shown.clone(),
                message,
            },
            None => ClientError::Unreachable {
                url: shown.clone(),
                message: error_chain(&e),
            },
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: shown.clone(),
                message: error_chain(&e),
            })?;
        let json: Result<Value, _> = serde_json::from_str(&text);
        if status.is_client_error() {
            let message = json
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(clip))
                .unwrap_or_else(|| clip(&text));
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(match &self.token {
                    None => ClientError::TokenNeeded {
                        url: shown,
                        message,
                    },
                    Some(token) => ClientError::TokenRefused {
                        url: shown,
                        origin: token.origin.clone(),
                        message,
                    },
                });
            }
            if status == reqwest::StatusCode::FORBIDDEN {
                return Err(ClientError::Forbidden {
                    url: shown,
                    message,
                });
            }
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        if !status.is_success() {
            return Err(ClientError::Server {
                url: shown,
                status: status.as_u16(),
                message: clip(&text),
            });
        }
        match json {
            Ok(json) => Ok(Answer { text, json }),
            Err(e) => Err(ClientError::NotJson {
                url: shown,
                message: e.to_string(),
            }),
        }
    }
}

/// The certificate problem of a failed TLS handshake (the server's certificate does not
/// chain to a trusted CA, has expired, names another host), if that is why `e` failed.
fn untrusted(e: &reqwest::Error) -> Option<String> {
    // Every cause, also those an io::Error wraps (its `source` skips them).
    let mut stack: Vec<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(e).into_iter().collect();
    let mut seen = 0;
    while let Some(error) = stack.pop() {
        seen += 1;
        if seen > 32 {
            break;
        }
        if let Some(error @ rustls::Error::InvalidCertificate(_)) =
            error.downcast_ref::<rustls::Error>()
        {
            return Some(error.to_string());
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            stack.push(inner);
        }
        stack.extend(error.source());
    }
    // rustls's own words, if its error could not be reached as a type.
    let text = error_chain(e);
    text.contains("invalid peer certificate").then_some(text)
}

/// The innermost cause of an error ("Connection refused (os error 111)"), which says
/// more than reqwest's "error sending request"; timeouts say so.
fn error_chain(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = s.to_string();
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_token_comes_from_the_flag_then_the_token_then_the_file_variable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let flag = dir.path().join("flag.tokens");
        let file = dir.path().join("env.tokens");
        std::fs::write(&flag, "# the API token\n\nfrom-flag\nsecond\n").expect("write");
        std::fs::write(&file, "from-file\n").expect("write");
        let file_var = file.display().to_string();
        let all = env_of(&[(TOKEN_ENV, "from-env"), (TOKEN_FILE_ENV, &file_var)]);
        let token = |flag: Option<&Path>, env: &dyn Fn(&str) -> Option<OsString>| {
            resolve_token(flag, env)
                .expect("resolves")
                .map(|t| (t.value, t.origin))
        };
        let (value, origin) = token(Some(&flag), &all).expect("a token");
        assert_eq!(value, "from-flag");
        assert!(origin.starts_with("--api-token-file "), "{origin}");
        assert_eq!(token(None, &all).map(|t| t.0).as_deref(), Some("from-env"));
        let only_file = env_of(&[(TOKEN_FILE_ENV, &file_var)]);
        assert_eq!(
            token(None, &only_file).map(|t| t.0).as_deref(),
            Some("from-file")
        );
        assert!(token(None, &env_of(&[])).is_none());
    }

    #[test]
    fn unusable_tokens_are_errors_naming_their_origin() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.tokens");
        std::fs::write(&empty, "# nothing\n\n").expect("write");
        let missing = dir.path().join("missing.tokens");
        let spaced = dir.path().join("spaced.tokens");
        std::fs::write(&spaced, "two words\n").expect("write");
        let none = env_of(&[]);
        for (path, problem) in [
            (&empty, "holds no token"),
            (&missing, "cannot read"),
            (&spaced, "cannot carry"),
        ] {
            let err = resolve_token(Some(path), &none).expect_err("refused");
            let text = err.to_string();
            assert_eq!(err.exit_code(), 2, "{text}");
            assert!(text.contains("--api-token-file"), "{text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(problem), "{text}");
        }
        let err = resolve_token(None, env_of(&[(TOKEN_ENV, "  ")])).expect_err("empty");
        assert!(err.to_string().contains(TOKEN_ENV), "{err}");
        assert_eq!(err.exit_code(), 2);
        let missing_var = missing.display().to_string();
        let err = resolve_token(None, env_of(&[(TOKEN_FILE_ENV, &missing_var)]))
            .expect_err("missing file");
        assert!(err.to_string().starts_with(TOKEN_FILE_ENV), "{err}");
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").expect("write");
        let err = Client::from_parts("https://127.0.0.1:1", None, Some(&ca)).expect_err("bad CA");
        let text = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(text.contains("--ca-file"), "{text}");
        assert!(text.contains(&ca.display().to_string()), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");
    }

    #[test]
    fn the_token_is_never_shown() {
        let token = Token {
            value: "secret-value".into(),
            origin: TOKEN_ENV.into(),
        };
        assert!(!format!("{token:?}").contains("secret-value"));
    }
}
