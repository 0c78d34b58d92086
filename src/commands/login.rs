//! `toolwarden login URL` and `toolwarden logout URL`: OAuth tokens for a
//! remote server, got ahead of a session or forgotten. The work is the
//! remote server's OAuth (src/upstream/remote/oauth/).

use url::Url;

use crate::upstream::remote::oauth;

/// Logs in: exit 0 once the tokens are kept (or nothing asks for them).
pub fn run(url: &str, client_id: Option<&str>) -> (String, u8) {
    answer(parse(url).and_then(|url| oauth::login(&url, client_id)))
}

/// Forgets the tokens: exit 0 whether or not there were any.
pub fn logout(url: &str) -> (String, u8) {
    answer(parse(url).and_then(|url| oauth::logout(&url)))
}

fn parse(url: &str) -> Result<Url, String> {
    Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| {
            format!(
                "{} is not an http:// or https:// URL",
                crate::redact::command(&[url])
            )
        })
}

fn answer(outcome: Result<String, String>) -> (String, u8) {
    match outcome {
        Ok(words) => (format!("{words}\n"), 0),
        Err(words) => {
            eprintln!("toolwarden: {words}");
            (String::new(), 1)
        }
    }
}
