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

    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
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
pub fn key_value(key: &str, value: &Value) -> Msg {
    let mut any = Msg::default();
    match value {
        Value::Str(s) => any.str(1, s),
        Value::Bool(b) => any.int(2, i64::from(*b)),
        Value::Int(i) => any.int(3, *i),
        Value::Double(d) => any.double(4, *d),
    };
    let mut kv = Msg::default();
    kv.str(1, key).msg(2, &any);
    kv
}

pub type Attributes = Vec<(&'static str, Value)>;

pub fn attributes(m: &mut Msg, field: u32, attrs: &[(impl AsRef<str>, Value)]) {
    for (k, v) in attrs {
        m.msg(field, &key_value(k.as_ref(), v));
    }
}

/// `Resource { attributes = 1 }`.
pub fn resource(attrs: &[(String, Value)]) -> Msg {
    let mut r = Msg::default();
    attributes(&mut r, 1, attrs);
    r
}

/// `InstrumentationScope { name = 1; version = 2 }`.
pub fn scope() -> Msg {
    let mut s = Msg::default();
    s.str(1, "toolwarden").str(2, env!("CARGO_PKG_VERSION"));
    s
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
fn span(s: &Span) -> Msg {
    let mut m = Msg::default();
    m.bytes(1, &s.trace_id).bytes(2, &s.span_id);
    if let Some(parent) = &s.parent_span_id {
        m.bytes(4, parent);
    }
    m.str(5, &s.name)
        .uint(6, 2)
        .fixed64(7, s.start_unix_nano)
        .fixed64(8, s.end_unix_nano);
    attributes(&mut m, 9, &s.attributes);
    if let Some(message) = &s.error {
        // Status { message = 2; code = 3 }, code 2 = ERROR.
        let mut status = Msg::default();
        status.str(2, message).uint(3, 2);
        m.msg(15, &status);
    }
    m
}

/// `ExportTraceServiceRequest { resource_spans = 1 }`, `ResourceSpans {
/// resource = 1; scope_spans = 2 }`, `ScopeSpans { scope = 1; spans = 2 }`.
pub fn export_traces(resource_attrs: &[(String, Value)], spans: &[Span]) -> Vec<u8> {
    let mut scoped = Msg::default();
    scoped.msg(1, &scope());
    for s in spans {
        scoped.msg(2, &span(s));
    }
    let mut rs = Msg::default();
    rs.msg(1, &resource(resource_attrs)).msg(2, &scoped);
    let mut req = Msg::default();
    req.msg(1, &rs);
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
fn metric(m: &Metric<'_>, start: u64, now: u64) -> Msg {
    let mut out = Msg::default();
    out.str(1, m.name).str(2, m.description).str(3, m.unit);
    match &m.points {
        Points::Sum(points) => {
            let mut sum = Msg::default();
            for (attrs, value) in points {
                let mut p = Msg::default();
                p.fixed64(2, start).fixed64(3, now).fixed64(6, *value);
                attributes(&mut p, 7, attrs);
                sum.msg(1, &p);
            }
            sum.uint(2, 2).uint(3, 1);
            out.msg(7, &sum);
        }
        Points::Histogram(bounds, points) => {
            let mut hist = Msg::default();
            for (attrs, h) in points {
                let mut p = Msg::default();
                p.fixed64(2, start)
                    .fixed64(3, now)
                    .fixed64(4, h.count)
                    .double(5, h.sum)
                    .packed64(6, h.buckets.iter().copied())
                    .packed64(7, bounds.iter().map(|b| b.to_bits()));
                attributes(&mut p, 9, attrs);
                p.double(11, h.min).double(12, h.max);
                hist.msg(1, &p);
            }
            hist.uint(2, 2);
            out.msg(9, &hist);
        }
    }
    out
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
    let mut scoped = Msg::default();
    scoped.msg(1, &scope());
    for m in metrics {
        scoped.msg(2, &metric(m, start, now));
    }
    let mut rm = Msg::default();
    rm.msg(1, &resource(resource_attrs)).msg(2, &scoped);
    let mut req = Msg::default();
    req.msg(1, &rm);
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
    fn a_string_is_length_delimited() {
        let mut m = Msg::default();
        m.str(2, "hi");
        assert_eq!(m.0, [0x12, 2, b'h', b'i']);
    }
}
