//! Token files: one token per line (blank lines and `#` comments ignored), re-read when
//! the file changes, and the check of an `Authorization: Bearer <token>` value.
//!
//! The file is looked at (one `stat`) at most once a second, on a request. A change that
//! leaves no token (a file truncated while being rewritten) keeps the previous tokens,
//! with a warning. Tokens are compared in constant time for a given length, and every
//! token of the file is compared, so the time taken says nothing about which one nearly
//! matched. Tokens are never logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Why a request's credentials were refused; the `reason` label of
/// `faultline_auth_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A bearer token that is not in the token file.
    Unknown,
}

impl AuthRefusal {
    pub const ALL: [AuthRefusal; 3] = [
        AuthRefusal::Missing,
        AuthRefusal::Malformed,
        AuthRefusal::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthRefusal::Missing => "missing",
            AuthRefusal::Malformed => "malformed",
            AuthRefusal::Unknown => "unknown",
        }
    }

    /// The message sent back to the client.
    pub fn message(self) -> &'static str {
        match self {
            AuthRefusal::Missing => {
                "authentication required: send the header `Authorization: Bearer <token>`"
            }
            AuthRefusal::Malformed => {
                "the Authorization header must be `Bearer <token>` with a non-empty token"
            }
            AuthRefusal::Unknown => "the bearer token is not valid",
        }
    }
}

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: cannot read the token file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the token file holds no token (one token per line)")]
    Empty { path: PathBuf },
}

/// How often, at most, a request looks at the file's modification time.
const RECHECK: Duration = Duration::from_secs(1);

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The tokens of a file's text.
pub fn parse_tokens(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

fn read_tokens(path: &Path) -> Result<Vec<Vec<u8>>, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let tokens = parse_tokens(&text);
    if tokens.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(tokens)
}

struct Loaded {
    tokens: Arc<Vec<Vec<u8>>>,
    stamp: Stamp,
    checked: Instant,
}

/// The accepted tokens of one file.
pub struct TokenFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens.
        f.debug_struct("TokenFile")
            .field("path", &self.path)
            .finish()
    }
}

/// Equality in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token of an `Authorization` value: `Bearer <token>`, scheme case-insensitive.
pub fn bearer(value: &[u8]) -> Result<&[u8], AuthRefusal> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(AuthRefusal::Malformed);
    }
    let token = value[SCHEME.len()..].trim_ascii();
    if token.is_empty() {
        return Err(AuthRefusal::Malformed);
    }
    Ok(token)
}

impl TokenFile {
    /// Reads the file now; an error if it cannot be read or holds no token.
    pub fn load(path: &Path) -> Result<TokenFile, TokenError> {
        let stamp = stamp(path);
        let tokens = read_tokens(path)?;
        Ok(TokenFile {
            path: path.to_owned(),
            loaded: Mutex::new(Loaded {
                tokens: Arc::new(tokens),
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The current tokens, re-read first if the file changed.
    fn tokens(&self) -> Arc<Vec<Vec<u8>>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(loaded.checked) >= RECHECK {
            loaded.checked = now;
            let stamp = stamp(&self.path);
            if stamp != loaded.stamp {
                loaded.stamp = stamp;
                match read_tokens(&self.path) {
                    Ok(tokens) => {
                        tracing::info!(
                            path = %self.path.display(),
                            tokens = tokens.len(),
                            "Token file reloaded."
                        );
                        loaded.tokens = Arc::new(tokens);
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "The token file changed but cannot be used; keeping the previous tokens."
                    ),
                }
            }
        }
        loaded.tokens.clone()
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), AuthRefusal> {
        let value = authorization.ok_or(AuthRefusal::Missing)?;
        let token = bearer(value)?;
        let tokens = self.tokens();
        let mut found = false;
        for t in tokens.iter() {
            found |= constant_time_eq(t, token);
        }
        if found {
            Ok(())
        } else {
            Err(AuthRefusal::Unknown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_token_per_line() {
        let tokens = parse_tokens("# comment\n  alpha \n\nbeta\r\n");
        assert_eq!(tokens, vec![b"alpha".to_vec(), b"beta".to_vec()]);
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Ok(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Ok(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), Err(AuthRefusal::Malformed));
        assert_eq!(bearer(b"Bearer "), Err(AuthRefusal::Malformed));
        assert_eq!(bearer(b"Bearer"), Err(AuthRefusal::Malformed));
        assert_eq!(bearer(b"abc"), Err(AuthRefusal::Malformed));
    }

    #[test]
    fn checks_and_reloads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "first\n").expect("write");
        let file = TokenFile::load(&path).expect("loads");
        assert_eq!(file.check(None), Err(AuthRefusal::Missing));
        assert_eq!(
            file.check(Some(b"Token first")),
            Err(AuthRefusal::Malformed)
        );
        assert_eq!(file.check(Some(b"Bearer first")), Ok(()));
        assert_eq!(file.check(Some(b"Bearer firs")), Err(AuthRefusal::Unknown));
        std::fs::write(&path, "second-token\n").expect("rewrite");
        // The file is looked at again once the recheck interval has passed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while file.check(Some(b"Bearer second-token")).is_err() {
            assert!(
                Instant::now() < deadline,
                "the new token was never accepted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(file.check(Some(b"Bearer first")), Err(AuthRefusal::Unknown));
        // An emptied file keeps the previous tokens.
        std::fs::write(&path, "\n").expect("empty");
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert_eq!(file.check(Some(b"Bearer second-token")), Ok(()));
    }

    #[test]
    fn an_empty_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# none\n").expect("write");
        assert!(matches!(
            TokenFile::load(&path),
            Err(TokenError::Empty { .. })
        ));
    }
}
