//! The HTTP client: ureq (synchronous, as the pumps are), TLS through
//! rustls with ring and the system's roots (`SSL_CERT_FILE` and
//! `SSL_CERT_DIR` name others), no redirect followed behind toolwarden's
//! back, and errors put in words that hold no URL's secrets.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use url::Url;

/// Connecting gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent every request of a session goes through (its connections
/// are pooled). `https` says whether TLS roots are needed.
pub fn agent(https: bool) -> Result<ureq::Agent, String> {
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    if https {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(
                "no TLS root certificates found on this machine (SSL_CERT_FILE can name a bundle)"
                    .into(),
            );
        }
        let roots: Vec<Certificate<'static>> = found
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        tls = tls.root_certs(RootCerts::Specific(Arc::new(roots)));
    } else {
        // No roots: an https:// URL met on the way (a redirect, OAuth's
        // metadata) fails with a TLS error rather than the HTTP client's
        // panic for roots it was built without.
        tls = tls.root_certs(RootCerts::Specific(Arc::new(Vec::new())));
    }
    let config = ureq::Agent::config_builder()
        // Statuses are read, not errors: a 404 or a 401 means something.
        .http_status_as_error(false)
        // A redirect is looked at by toolwarden (same origin only): the
        // headers must not follow it elsewhere.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_resolve(Some(CONNECT_TIMEOUT))
        .user_agent(concat!("toolwarden/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls.build())
        .build();
    Ok(config.into())
}

/// Why a request got no answer, in words for a person.
pub fn failure(error: &ureq::Error) -> String {
    use ureq::Error;
    match error {
        Error::HostNotFound => "the host name does not resolve".into(),
        Error::ConnectionFailed => "cannot connect".into(),
        Error::Timeout(what) => format!("timed out ({what})"),
        Error::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::UnexpectedEof => "the connection closed early".into(),
            _ => crate::redact::peer_line(&e.to_string()),
        },
        Error::Tls(what) => format!("TLS: {what}"),
        Error::Rustls(e) => format!("TLS: {e}"),
        Error::Protocol(e) => format!("not HTTP as expected: {e}"),
        Error::BadUri(_) => "not a URL it can use".into(),
        // Other errors may quote parts of a URL or a proxy's address.
        _ => "the request failed".into(),
    }
}

/// Whether the error means nothing reached the server: it is not there.
pub fn unreachable(error: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
        ),
        _ => false,
    }
}

/// The URL as logs and errors show it: no user info, query values hidden.
pub fn shown(url: &Url) -> String {
    crate::redact::command(&[url.as_str()])
}

/// The same scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// A status as words: "HTTP 503 Service Unavailable".
pub fn status(code: ureq::http::StatusCode) -> String {
    match code.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", code.as_u16()),
        None => format!("HTTP {}", code.as_u16()),
    }
}
