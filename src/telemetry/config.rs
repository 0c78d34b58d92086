//! Where telemetry goes, read the standard way: the OTEL_* variables of
//! the OpenTelemetry SDK specification, and `--otlp URL` before them.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ureq::http::{HeaderName, HeaderValue};
use url::Url;

use super::proto::Value;

/// An OTLP/HTTP endpoint: an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: Url,
    /// Sent with every export; names and values checked.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub traces: Option<Endpoint>,
    pub metrics: Option<Endpoint>,
    pub resource: Vec<(String, Value)>,
    /// OTEL_METRIC_EXPORT_INTERVAL.
    pub metric_interval: Duration,
    /// OTEL_BSP_SCHEDULE_DELAY: how long a finished span may wait.
    pub span_delay: Duration,
    /// OTEL_EXPORTER_OTLP_TIMEOUT: one export, and the wait at the end.
    pub timeout: Duration,
}

impl Config {
    /// The configuration `otlp` and the environment (`var`) describe;
    /// `None` when nothing is to be exported.
    pub fn read(
        otlp: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Config>> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_PROTOCOL") {
            if protocol.trim() != "http/protobuf" {
                bail!("OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: toolwarden exports http/protobuf only (run a collector to reach a gRPC endpoint)");
            }
        }
        let base = match otlp
            .map(str::to_owned)
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            Some(base) => Some(parse(&base)?),
            None => None,
        };
        let headers = parse_pairs(&var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default())
            .context("OTEL_EXPORTER_OTLP_HEADERS")?;
        let signal = |name: &str, path: &str| -> Result<Option<Endpoint>> {
            let upper = name.to_ascii_uppercase();
            if var(&format!("OTEL_{upper}_EXPORTER")).is_some_and(|v| v.trim() == "none") {
                return Ok(None);
            }
            let own = var(&format!("OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"));
            let url = match (otlp, own, &base) {
                (None, Some(own), _) => parse(&own)?,
                (_, _, Some(base)) => {
                    let mut url = base.clone();
                    url.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
                    url
                }
                _ => return Ok(None),
            };
            let mut headers = headers.clone();
            let own = var(&format!("OTEL_EXPORTER_OTLP_{upper}_HEADERS")).unwrap_or_default();
            headers.extend(
                parse_pairs(&own).with_context(|| format!("OTEL_EXPORTER_OTLP_{upper}_HEADERS"))?,
            );
            endpoint(url, headers).map(Some)
        };
        let traces = signal("traces", "v1/traces")?;
        let metrics = signal("metrics", "v1/metrics")?;
        if traces.is_none() && metrics.is_none() {
            return Ok(None);
        }
        let mut resource: Vec<(String, Value)> = Vec::new();
        for (k, v) in parse_pairs(&var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default())
            .context("OTEL_RESOURCE_ATTRIBUTES")?
        {
            resource.retain(|(key, _)| *key != k);
            resource.push((k, Value::Str(v)));
        }
        let service = var("OTEL_SERVICE_NAME")
            .or_else(|| {
                resource.iter().find_map(|(k, v)| match v {
                    Value::Str(s) if k == "service.name" => Some(s.clone()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| "toolwarden".to_owned());
        resource.retain(|(k, _)| k != "service.name");
        resource.insert(0, ("service.name".to_owned(), Value::Str(service)));
        resource.push((
            "service.version".to_owned(),
            Value::Str(env!("CARGO_PKG_VERSION").to_owned()),
        ));
        resource.push((
            "process.pid".to_owned(),
            Value::Int(i64::from(std::process::id())),
        ));
        let millis = |name: &str, default: u64| -> Result<Duration> {
            match var(name) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Duration::from_millis)
                    .with_context(|| format!("{name}={v}: not a number of milliseconds")),
            }
        };
        Ok(Some(Config {
            traces,
            metrics,
            resource,
            metric_interval: millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
            span_delay: millis("OTEL_BSP_SCHEDULE_DELAY", 1_000)?,
            timeout: millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
        }))
    }
}

impl Config {
    /// The session's id on the resource: the audit log's `session`.
    pub fn with_session(mut self, session: &str) -> Config {
        self.resource.push((
            "toolwarden.session.id".to_owned(),
            Value::Str(session.to_owned()),
        ));
        self
    }
}

/// An endpoint's URL: http or https, with a host.
fn parse(text: &str) -> Result<Url> {
    let url = Url::parse(text.trim()).map_err(|e| {
        let shown = crate::redact::command(&[text]);
        anyhow!("{shown}: not a URL ({e})")
    })?;
    // Shown only in errors: hiding its secrets compiles a regex.
    let shown = || crate::upstream::remote::http::shown(&url);
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "{}: an OTLP endpoint is an http:// or https:// URL",
            shown()
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("{}: no host", shown());
    }
    Ok(url)
}

fn endpoint(url: Url, headers: Vec<(String, String)>) -> Result<Endpoint> {
    // Checked here so that a bad header stops the start, not every export.
    for (k, v) in &headers {
        HeaderName::from_bytes(k.as_bytes()).map_err(|_| anyhow!("{k:?} is not a header name"))?;
        HeaderValue::from_str(v).map_err(|_| anyhow!("the value of {k} is not a header value"))?;
    }
    Ok(Endpoint { url, headers })
}

/// `k1=v1,k2=v2`, percent-decoded (the W3C baggage form the
/// specification uses for headers and resource attributes).
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for item in text.split(',').filter(|i| !i.trim().is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            bail!("{:?} is not key=value", item.trim());
        };
        let (k, v) = (decode(k.trim())?, decode(v.trim())?);
        if k.is_empty() || k.contains(['\r', '\n']) || v.contains(['\r', '\n']) {
            bail!("{:?} is not a valid key=value", item.trim());
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

fn decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .context("a % without two hex digits")?;
            out.push(u8::from_str_radix(hex, 16).context("a % without two hex digits")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).context("not UTF-8 once decoded")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(otlp: Option<&str>, vars: &[(&str, &str)]) -> Result<Option<Config>> {
        Config::read(otlp, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn nothing_configured_exports_nothing() {
        assert_eq!(read(None, &[]).unwrap(), None);
        assert_eq!(read(None, &[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
    }

    #[test]
    fn the_base_endpoint_gets_each_signals_path() {
        let c = read(
            None,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.traces.unwrap().url.as_str(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            c.metrics.unwrap().url.as_str(),
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(
            c.resource[0],
            (
                "service.name".to_owned(),
                Value::Str("toolwarden".to_owned())
            )
        );
    }

    #[test]
    fn a_signals_own_endpoint_is_used_as_it_is() {
        let c = read(
            None,
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a/t"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20x"),
                ("OTEL_SERVICE_NAME", "agent-tools"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=dev,service.name=y",
                ),
            ],
        )
        .unwrap()
        .unwrap();
        let traces = c.traces.unwrap();
        assert_eq!(traces.url.as_str(), "http://a/t");
        assert_eq!(
            traces.headers,
            [("authorization".to_owned(), "Bearer x".to_owned())]
        );
        assert_eq!(c.metrics, None);
        assert_eq!(c.resource[0].1, Value::Str("agent-tools".to_owned()));
        assert!(c.resource.contains(&(
            "deployment.environment".to_owned(),
            Value::Str("dev".to_owned())
        )));
    }

    #[test]
    fn otlp_flag_wins_and_other_protocols_are_refused() {
        let c = read(
            Some("http://127.0.0.1:9"),
            &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a/t")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.traces.unwrap().url.as_str(),
            "http://127.0.0.1:9/v1/traces"
        );
        assert!(read(Some("http://h"), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_err());
        assert_eq!(
            read(Some("http://h"), &[("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
    }

    #[test]
    fn https_is_taken_and_other_schemes_and_bad_headers_are_refused() {
        let c = read(Some("https://collector.example:4318"), &[])
            .unwrap()
            .unwrap();
        assert_eq!(
            c.metrics.unwrap().url.as_str(),
            "https://collector.example:4318/v1/metrics"
        );
        for url in ["ftp://h", "http://", "collector:4318", "unix:/run/otel"] {
            assert!(read(Some(url), &[]).is_err(), "{url}");
        }
        let bad = read(
            Some("http://h"),
            &[("OTEL_EXPORTER_OTLP_HEADERS", "x%20y=1")],
        );
        assert!(bad.is_err());
        let bad = read(Some("http://h"), &[("OTEL_EXPORTER_OTLP_HEADERS", "x=%00")]);
        assert!(bad.is_err());
    }
}
