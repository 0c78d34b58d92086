//! The OTLP messages toolwarden sends, written in protobuf's wire format
//! by hand: a span, a sum and a histogram are all it needs, and the field
//! numbers below are those of opentelemetry-proto (v1), which the
//! end-to-end test decodes with the reference package.

/// A message being written: fields appended in order.
#[derive(Default)]
pub struct Msg(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }

    pub fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        varint(&mut self.0, v);
        self
    }

    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.uint(field, v as u64)
    }

    pub fn fixed64(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn double(&mut self, field: u32, v: f64) -> &mut Self {
        self.fixed64(field, v.to_bits())
    }

    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, 2);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    pub fn str(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// A message field written in place: `write` puts its fields
    /// straight into this buffer, and its length goes in front once it is
    /// known (one byte kept for it; the message is moved over only when
    /// it is 128 bytes or more). No buffer of its own to copy.
    pub fn nested(&mut self, field: u32, write: impl FnOnce(&mut Msg)) -> &mut Self {
        self.key(field, 2);
        let at = self.0.len();
        self.0.push(0);
        write(self);
        let mut len = Vec::with_capacity(10);
        varint(&mut len, (self.0.len() - at - 1) as u64);
        self.0[at] = len[0];
        if len.len() > 1 {
            self.0.splice(at + 1..at + 1, len[1..].iter().copied());
        }
        self
    }

    /// A packed `repeated fixed64` or `repeated double`.
    pub fn packed64(&mut self, field: u32, values: impl Iterator<Item = u64>) -> &mut Self {
        let mut body = Vec::new();
        for v in values {
            body.extend_from_slice(&v.to_le_bytes());
        }
        self.bytes(field, &body)
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    Int(i64),
    Double(f64),
}

/// `KeyValue { key = 1; value = 2 }`, `AnyValue { string_value = 1;
/// bool_value = 2; int_value = 3; double_value = 4 }`.
fn key_value(kv: &mut Msg, key: &str, value: &Value) {
    kv.str(1, key).nested(2, |any| {
        match value {
            Value::Str(s) => any.str(1, s),
            Value::Bool(b) => any.int(2, i64::from(*b)),
            Value::Int(i) => any.int(3, *i),
            Value::Double(d) => any.double(4, *d),
        };
    });
}

pub type Attributes = Vec<(&'static str, Value)>;

pub fn attributes(m: &mut Msg, field: u32, attrs: &[(impl AsRef<str>, Value)]) {
    for (k, v) in attrs {
        m.nested(field, |kv| key_value(kv, k.as_ref(), v));
    }
}

/// `Resource { attributes = 1 }`.
fn resource(r: &mut Msg, attrs: &[(String, Value)]) {
    attributes(r, 1, attrs);
}

/// `InstrumentationScope { name = 1; version = 2 }`.
fn scope(s: &mut Msg) {
    s.str(1, "toolwarden").str(2, env!("CARGO_PKG_VERSION"));
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Attributes,
    /// `Status.message` when the span ended in error.
    pub error: Option<String>,
}

/// `Span { trace_id = 1; span_id = 2; parent_span_id = 4; name = 5;
/// kind = 6; start_time_unix_nano = 7; end_time_unix_nano = 8;
/// attributes = 9; status = 15 }`; kind 2 is SERVER: toolwarden is the
/// server its client talks to.
fn span(m: &mut Msg, s: &Span) {
    m.bytes(1, &s.trace_id).bytes(2, &s.span_id);
    if let Some(parent) = &s.parent_span_id {
        m.bytes(4, parent);
    }
    m.str(5, &s.name)
        .uint(6, 2)
        .fixed64(7, s.start_unix_nano)
        .fixed64(8, s.end_unix_nano);
    attributes(m, 9, &s.attributes);
    if let Some(message) = &s.error {
        // Status { message = 2; code = 3 }, code 2 = ERROR.
        m.nested(15, |status| {
            status.str(2, message).uint(3, 2);
        });
    }
}

/// `ExportTraceServiceRequest { resource_spans = 1 }`, `ResourceSpans {
/// resource = 1; scope_spans = 2 }`, `ScopeSpans { scope = 1; spans = 2 }`.
pub fn export_traces(resource_attrs: &[(String, Value)], spans: &[Span]) -> Vec<u8> {
    let mut req = Msg::default();
    req.nested(1, |rs| {
        rs.nested(1, |r| resource(r, resource_attrs))
            .nested(2, |scoped| {
                scoped.nested(1, scope);
                for s in spans {
                    scoped.nested(2, |m| span(m, s));
                }
            });
    });
    req.0
}

/// One metric's points, cumulative since the session began.
pub enum Points<'a> {
    /// A monotonic sum of integers.
    Sum(Vec<(&'a [(&'static str, Value)], u64)>),
    /// A histogram: bounds, then per point its bucket counts, sum, min
    /// and max.
    Histogram(
        &'a [f64],
        Vec<(&'a [(&'static str, Value)], &'a HistogramPoint)>,
    ),
}

#[derive(Debug, Clone, Default)]
pub struct HistogramPoint {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

pub struct Metric<'a> {
    pub name: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub points: Points<'a>,
}

/// `Metric { name = 1; description = 2; unit = 3; sum = 7; histogram = 9 }`;
/// `Sum { data_points = 1; aggregation_temporality = 2; is_monotonic = 3 }`;
/// `NumberDataPoint { start_time_unix_nano = 2; time_unix_nano = 3;
/// as_int = 6 (sfixed64); attributes = 7 }`; `Histogram { data_points = 1;
/// aggregation_temporality = 2 }`; `HistogramDataPoint {
/// start_time_unix_nano = 2; time_unix_nano = 3; count = 4; sum = 5;
/// bucket_counts = 6; explicit_bounds = 7; attributes = 9; min = 11;
/// max = 12 }`. Temporality 2 is CUMULATIVE.
fn metric(out: &mut Msg, m: &Metric<'_>, start: u64, now: u64) {
    out.str(1, m.name).str(2, m.description).str(3, m.unit);
    match &m.points {
        Points::Sum(points) => {
            out.nested(7, |sum| {
                for (attrs, value) in points {
                    sum.nested(1, |p| {
                        p.fixed64(2, start).fixed64(3, now).fixed64(6, *value);
                        attributes(p, 7, attrs);
                    });
                }
                sum.uint(2, 2).uint(3, 1);
            });
        }
        Points::Histogram(bounds, points) => {
            out.nested(9, |hist| {
                for (attrs, h) in points {
                    hist.nested(1, |p| {
                        p.fixed64(2, start)
                            .fixed64(3, now)
                            .fixed64(4, h.count)
                            .double(5, h.sum)
                            .packed64(6, h.buckets.iter().copied())
                            .packed64(7, bounds.iter().map(|b| b.to_bits()));
                        attributes(p, 9, attrs);
                        p.double(11, h.min).double(12, h.max);
                    });
                }
                hist.uint(2, 2);
            });
        }
    }
}

/// `ExportMetricsServiceRequest { resource_metrics = 1 }`,
/// `ResourceMetrics { resource = 1; scope_metrics = 2 }`, `ScopeMetrics {
/// scope = 1; metrics = 2 }`.
pub fn export_metrics(
    resource_attrs: &[(String, Value)],
    metrics: &[Metric<'_>],
    start: u64,
    now: u64,
) -> Vec<u8> {
    let mut req = Msg::default();
    req.nested(1, |rm| {
        rm.nested(1, |r| resource(r, resource_attrs))
            .nested(2, |scoped| {
                scoped.nested(1, scope);
                for m in metrics {
                    scoped.nested(2, |out| metric(out, m, start, now));
                }
            });
    });
    req.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_little_endian_groups_of_seven() {
        let mut m = Msg::default();
        m.uint(1, 300);
        assert_eq!(m.0, [0x08, 0xac, 0x02]);
        let mut m = Msg::default();
        m.int(3, -1);
        assert_eq!(m.0.len(), 1 + 10);
    }

    #[test]
    fn a_nested_message_has_its_length_in_front_short_or_long() {
        for len in [0usize, 1, 127, 128, 300, 20_000] {
            let mut m = Msg::default();
            m.uint(1, 7).nested(2, |inner| {
                inner.bytes(3, &vec![b'x'; len]);
            });
            let mut inner = Msg::default();
            inner.bytes(3, &vec![b'x'; len]);
            let mut expected = Msg::default();
            expected.uint(1, 7).bytes(2, &inner.0);
            assert_eq!(m.0, expected.0, "{len}");
        }
    }

    #[test]
    fn a_string_is_length_delimited() {
        let mut m = Msg::default();
        m.str(2, "hi");
        assert_eq!(m.0, [0x12, 2, b'h', b'i']);
    }
}
