//! Where a login's tokens are kept: one file per server,
//! `oauth/<hash of the URL>.json` in the state directory, 0600 in a 0700
//! directory, written whole and renamed into place. A lock file beside it
//! (flock) lets one process at a time renew the tokens, so that two
//! sessions do not spend the same refresh token, or log in twice.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use url::Url;

/// A token file is never longer than this (a login's tokens are a few
/// kilobytes): a larger one is not read.
const MAX_FILE: u64 = 256 * 1024;

/// An access token is refreshed this long (seconds) before it expires,
/// so that no request goes out with one about to.
const REFRESH_AHEAD: u64 = 30;

/// What a login leaves, per server.
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    /// The MCP server's URL, for a person reading the directory.
    pub server: String,
    /// The `resource` the tokens were asked for.
    pub resource: String,
    pub issuer: String,
    pub token_endpoint: String,
    /// Where `logout` revokes the tokens (RFC 7009), if the server has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    pub client: Client,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, in Unix seconds, if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When to refresh ahead of the expiry, in Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The client toolwarden registered as (dynamic registration).
#[derive(Clone, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `none`, `client_secret_post` or `client_secret_basic`.
    pub auth_method: String,
    pub redirect_uri: String,
}

impl Tokens {
    /// Whether the access token is due a refresh (a refresh token kept).
    pub fn due(&self) -> bool {
        self.refresh_token.is_some() && self.refresh_at.is_some_and(|at| at <= now())
    }

    /// Whether the access token expires within `margin` seconds.
    pub fn expires_within(&self, margin: u64) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now().saturating_add(margin))
    }
}

/// For a token that lives `expires_in` seconds from now: when it
/// expires, and when to refresh it (half its life ahead, at most
/// [`REFRESH_AHEAD`] seconds).
pub fn lifetime(expires_in: Option<u64>) -> (Option<u64>, Option<u64>) {
    match expires_in {
        Some(life) => {
            let expires = now().saturating_add(life);
            (Some(expires), Some(expires - (life / 2).min(REFRESH_AHEAD)))
        }
        None => (None, None),
    }
}

/// Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The token file of the server at `url`, if there is a state directory.
pub fn path(url: &Url) -> Option<PathBuf> {
    Some(file_in(&crate::audit::state_dir()?, url))
}

/// The token file of the server at `url` in the state directory `state`:
/// named by a hash, so that the name holds nothing of the URL's.
fn file_in(state: &Path, url: &Url) -> PathBuf {
    use sha2::Digest;
    let mut url = url.clone();
    url.set_fragment(None);
    let hash = sha2::Sha256::digest(url.as_str().as_bytes());
    let name: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    state.join("oauth").join(format!("{name}.json"))
}

/// The tokens kept at `path`, if any. A file that cannot be read is as
/// none (a login writes a good one), with its reason logged.
pub fn read(path: &Path) -> Option<Tokens> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_FILE {
        tracing::warn!("{} is too long to be a token file", path.display());
        return None;
    }
    match serde_json::from_reader(io::BufReader::new(file)) {
        Ok(tokens) => Some(tokens),
        Err(e) => {
            tracing::warn!("{} is not a token file: {e}", path.display());
            None
        }
    }
}

/// Keeps `tokens` at `path`: 0600, in a 0700 directory, whole or not at
/// all.
pub fn write(path: &Path, tokens: &Tokens) -> io::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let partial = path.with_extension(format!("new-{}", crate::audit::random_id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(&serde_json::to_vec_pretty(tokens).map_err(io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&partial, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    written
}

/// Forgets the tokens at `path`: whether there were any.
pub fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Held while one process renews the tokens at a path; dropped, it lets
/// the next.
pub struct Renewing(#[allow(dead_code)] File);

/// Waits until no other process renews the tokens at `path` (one may be
/// waiting for its person's login), `wait` at most.
pub fn lock(path: &Path, wait: std::time::Duration) -> io::Result<Renewing> {
    let dir = path.parent().expect("a file in a directory");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.with_extension("lock"))?;
    let until = std::time::Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Renewing(file));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
        if std::time::Instant::now() >= until {
            return Err(io::Error::other(
                "another toolwarden is renewing these tokens (or waiting for a login)",
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(access: &str) -> Tokens {
        Tokens {
            server: "https://example.com/mcp".into(),
            resource: "https://example.com/mcp".into(),
            issuer: "https://example.com/".into(),
            token_endpoint: "https://example.com/token".into(),
            revocation_endpoint: None,
            client: Client {
                id: "c".into(),
                secret: None,
                auth_method: "none".into(),
                redirect_uri: "http://127.0.0.1:1/callback".into(),
            },
            access_token: access.into(),
            refresh_token: Some("r".into()),
            expires_at: Some(now() + 100),
            refresh_at: Some(now() + 70),
            scope: None,
        }
    }

    #[test]
    fn kept_0600_in_a_0700_directory_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tw-oauth-{}", crate::audit::random_id()));
        let path = dir.join("oauth").join("x.json");
        write(&path, &tokens("a")).unwrap();
        write(&path, &tokens("b")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(read(&path).unwrap().access_token, "b");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        let held = lock(&path, std::time::Duration::ZERO).unwrap();
        assert!(lock(&path, std::time::Duration::from_millis(100)).is_err());
        drop(held);
        drop(lock(&path, std::time::Duration::ZERO).unwrap());
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert!(read(&path).is_none());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn expiry_is_seen_ahead() {
        let t = tokens("a");
        assert!(!t.expires_within(10));
        assert!(t.expires_within(200));
        assert!(!t.due());
        let never = Tokens {
            expires_at: None,
            refresh_at: None,
            ..t
        };
        assert!(!never.expires_within(1_000_000));
        assert!(!never.due());
        let (expires, refresh) = lifetime(Some(3600));
        assert_eq!(expires.unwrap() - refresh.unwrap(), 30);
        let (expires, refresh) = lifetime(Some(4));
        assert_eq!(expires.unwrap() - refresh.unwrap(), 2);
        assert_eq!(lifetime(None), (None, None));
    }

    #[test]
    fn one_file_per_server() {
        let state = Path::new("/tmp/tw-state/toolwarden");
        let at = |url: &str| file_in(state, &Url::parse(url).unwrap());
        let a = at("https://a.example/mcp");
        let b = at("https://a.example/other");
        let a_again = at("https://a.example/mcp#x");
        assert_ne!(a, b);
        assert_eq!(a, a_again);
        assert!(a.starts_with("/tmp/tw-state/toolwarden/oauth"));
    }
}
