//! Prometheus exposition: text format 0.0.4 and OpenMetrics 1.0, for a list of
//! `gridtap.model.Batch` in one call.
//!
//! The output is byte-identical to what `gridtap.outputs.prometheus` produced through
//! prometheus_client 0.26 for the same batches (so this is a drop-in; the pure-Python
//! reference `gridtap.outputs.exposition_ref` spells the same rules out readably):
//!
//! * One family per metric name, in order of first appearance, samples in batch order. The
//!   family name is the metric name without `_total` / `_info`; the text format declares a
//!   counter as `<family>_total` and an info metric as a `<family>_info` gauge, a state set as
//!   a gauge; OpenMetrics declares `counter` / `info` / `stateset` under the family name and
//!   writes `# UNIT` when the family name ends with `_<unit>`, and ends with `# EOF`.
//! * Every sample gets `device="<batch.device>"` unless it has a `device` label; labels are
//!   sorted by name. A state set writes one sample per state (`<family>{<family>="<state>"}`,
//!   1 for the current one), plus the current value when it is not one of the states.
//! * Values as prometheus_client's `floatToGoString`: Python's `repr` of the float, except
//!   positive numbers with more than six integer digits, which Go writes with an exponent
//!   (`1.234567e+06`); `NaN`, `+Inf`, `-Inf`. Info samples are always 1.
//! * Escaping: label values escape `\`, newline and `"`; HELP escapes `\` and newline (and
//!   `"` in OpenMetrics). Names that are not legacy Prometheus names get their odd characters
//!   replaced by `_`, as prometheus_client's "underscores" escaping does; an OpenMetrics
//!   sample name is always escaped as a label name would be (so `:` becomes `_`, as there).
//!
//! Malformed input (a non-number gauge value, a label that is not a str, a definition
//! without a name) raises `EncodeError`; nothing is written halfway.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyList, PyString, PyTuple};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::errors::EncodeError;
use crate::lineproto::format_float;

/// Hashes the object addresses used as cache keys: they are unique and aligned, so a
/// multiply spreads them well and costs a fraction of SipHash.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Info,
    StateSet,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "gauge" => Some(Kind::Gauge),
            "counter" => Some(Kind::Counter),
            "info" => Some(Kind::Info),
            "stateset" => Some(Kind::StateSet),
            _ => None,
        }
    }

    fn openmetrics_type(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Info => "info",
            Kind::StateSet => "stateset",
        }
    }
}

/// `MetricDef.family`: the name without a `_total` or `_info` suffix.
pub fn family_name(name: &str) -> &str {
    name.strip_suffix("_total").or_else(|| name.strip_suffix("_info")).unwrap_or(name)
}

// --- names and escaping -------------------------------------------------------------------

fn is_alpha_(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Python's `re.match(r"^[first][rest]*$", s)`: `$` also matches before one final newline,
/// which prometheus_client's validity checks inherit, so a name may end in `\n` there.
fn python_full_match(s: &str, first: fn(char) -> bool, rest: fn(char) -> bool) -> bool {
    let s = s.strip_suffix('\n').unwrap_or(s);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if first(c) => chars.all(rest),
        _ => false,
    }
}

fn metric_first(c: char) -> bool {
    is_alpha_(c) || c == ':'
}

fn metric_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn label_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

pub fn is_legacy_metric_name(s: &str) -> bool {
    python_full_match(s, metric_first, metric_rest)
}

pub fn is_legacy_label_name(s: &str) -> bool {
    python_full_match(s, is_alpha_, label_rest) && !s.starts_with("__")
}

/// Each character that is not allowed at its position becomes `_` (prometheus_client's
/// "underscores" escaping); `colon` says whether `:` is allowed (metric names) or not.
fn push_underscored(out: &mut Vec<u8>, s: &str, colon: bool) {
    for (i, c) in s.chars().enumerate() {
        let ok = is_alpha_(c) || (c.is_ascii_digit() && i > 0) || (colon && c == ':');
        if ok {
            out.push(c as u8);
        } else {
            out.push(b'_');
        }
    }
}

/// `escape_metric_name(s, UNDERSCORES)`: unchanged when it is a legacy name.
pub fn push_metric_name(out: &mut Vec<u8>, s: &str) {
    if is_legacy_metric_name(s) {
        out.extend_from_slice(s.as_bytes());
    } else {
        push_underscored(out, s, true);
    }
}

/// `escape_label_name(s, UNDERSCORES)`: unchanged when it is a legacy (non-reserved) name.
pub fn push_label_name(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() || is_legacy_label_name(s) {
        out.extend_from_slice(s.as_bytes());
    } else {
        push_underscored(out, s, false);
    }
}

/// Label values (both formats) and OpenMetrics HELP: `\` `\n` `"` escaped.
pub fn push_quoted_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'"' => out.extend_from_slice(b"\\\""),
            _ => out.push(b),
        }
    }
}

/// Text-format HELP: `\` and `\n` escaped, `"` kept.
pub fn push_text_help(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// prometheus_client's `floatToGoString`.
pub fn push_go_float(out: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    let start = out.len();
    format_float(out, x);
    // Python's repr writes fixed notation below 1e16; Go switches to an exponent once there
    // are more than six integer digits. prometheus_client rewrites positive values so.
    if x > 0.0 {
        let text = &out[start..];
        if let Some(dot) = text.iter().position(|&b| b == b'.') {
            if dot > 6 {
                let mut mantissa: Vec<u8> = Vec::with_capacity(text.len() + 1);
                mantissa.push(text[0]);
                mantissa.push(b'.');
                mantissa.extend_from_slice(&text[1..dot]);
                mantissa.extend_from_slice(&text[dot + 1..]);
                while matches!(mantissa.last(), Some(b'0' | b'.')) {
                    mantissa.pop();
                }
                out.truncate(start);
                out.extend_from_slice(&mantissa);
                out.extend_from_slice(b"e+");
                let exp = dot - 1;
                if exp < 10 {
                    out.push(b'0');
                }
                out.extend_from_slice(exp.to_string().as_bytes());
            }
        }
    }
}

// --- families -----------------------------------------------------------------------------

/// The header of a family (HELP, TYPE, UNIT) as the first definition with its name says.
pub struct FamilySpec<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: Kind,
    pub unit: &'a str,
}

struct Family {
    header: Vec<u8>,
    samples: Vec<u8>,
}

/// Families of one exposition, in order of first appearance.
pub struct Exposition {
    openmetrics: bool,
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
}

impl Exposition {
    pub fn new(openmetrics: bool) -> Self {
        Exposition { openmetrics, families: Vec::new(), by_name: HashMap::new() }
    }

    /// The family of metric `spec.name`, created (header written) on first sight.
    pub fn family(&mut self, spec: &FamilySpec) -> Result<usize, String> {
        if let Some(&i) = self.by_name.get(spec.name) {
            return Ok(i);
        }
        let family = family_name(spec.name);
        if family.is_empty() {
            return Err(format!("metric {:?}: the family name is empty", spec.name));
        }
        let unit = if !spec.unit.is_empty() && family.len() > spec.unit.len()
            && family.ends_with(spec.unit) && family.as_bytes()[family.len() - spec.unit.len() - 1] == b'_'
        {
            spec.unit
        } else {
            ""
        };
        let mut header = Vec::with_capacity(family.len() * 3 + spec.help.len() + 32);
        if self.openmetrics {
            let mut name = Vec::with_capacity(family.len());
            push_metric_name(&mut name, family);
            header.extend_from_slice(b"# HELP ");
            header.extend_from_slice(&name);
            header.push(b' ');
            push_quoted_escaped(&mut header, spec.help);
            header.extend_from_slice(b"\n# TYPE ");
            header.extend_from_slice(&name);
            header.push(b' ');
            header.extend_from_slice(spec.kind.openmetrics_type().as_bytes());
            header.push(b'\n');
            if !unit.is_empty() {
                header.extend_from_slice(b"# UNIT ");
                header.extend_from_slice(&name);
                header.push(b' ');
                header.extend_from_slice(unit.as_bytes());
                header.push(b'\n');
            }
        } else {
            let (declared, typ): (String, &str) = match spec.kind {
                Kind::Gauge => (family.to_owned(), "gauge"),
                Kind::Counter => (format!("{family}_total"), "counter"),
                Kind::Info => (format!("{family}_info"), "gauge"),
                Kind::StateSet => (family.to_owned(), "gauge"),
            };
            let mut name = Vec::with_capacity(declared.len());
            push_metric_name(&mut name, &declared);
            header.extend_from_slice(b"# HELP ");
            header.extend_from_slice(&name);
            header.push(b' ');
            push_text_help(&mut header, spec.help);
            header.extend_from_slice(b"\n# TYPE ");
            header.extend_from_slice(&name);
            header.push(b' ');
            header.extend_from_slice(typ.as_bytes());
            header.push(b'\n');
        }
        self.families.push(Family { header, samples: Vec::with_capacity(256) });
        self.by_name.insert(spec.name.to_owned(), self.families.len() - 1);
        Ok(self.families.len() - 1)
    }

    /// A sample name as this format writes it.
    pub fn sample_name(&self, out: &mut Vec<u8>, name: &str) {
        if self.openmetrics {
            push_underscored(out, name, false);
        } else {
            push_metric_name(out, name);
        }
    }

    /// Append `<name>{<labels>} <value>\n` to `family`; `labels` are pieces of the rendered
    /// `k="v",...` text without braces (all empty for none).
    pub fn sample(&mut self, family: usize, name: &[u8], labels: &[&[u8]], value: f64) {
        let out = &mut self.families[family].samples;
        out.extend_from_slice(name);
        if labels.iter().any(|p| !p.is_empty()) {
            out.push(b'{');
            for p in labels {
                out.extend_from_slice(p);
            }
            out.push(b'}');
        }
        out.push(b' ');
        push_go_float(out, value);
        out.push(b'\n');
    }

    /// Write the families (and `# EOF` for OpenMetrics, when `eof`) to `out`.
    pub fn finish(self, out: &mut Vec<u8>, eof: bool) {
        for f in self.families {
            out.extend_from_slice(&f.header);
            out.extend_from_slice(&f.samples);
        }
        if self.openmetrics && eof {
            out.extend_from_slice(b"# EOF\n");
        }
    }
}

/// One label as written: its raw name (what the sort is by) and `name="value"`.
#[derive(Clone)]
pub struct Label {
    pub key: String,
    pub text: Vec<u8>,
}

pub fn render_label(key: &str, value: &str) -> Label {
    let mut text = Vec::with_capacity(key.len() + value.len() + 3);
    push_label_name(&mut text, key);
    text.extend_from_slice(b"=\"");
    push_quoted_escaped(&mut text, value);
    text.push(b'"');
    Label { key: key.to_owned(), text }
}

/// A labels tuple as `dict(...)` then `sorted(...items())` see it: one value per name (the
/// last one), sorted by name. `adds_device`: the batch's `device` label will be added (the
/// tuple has none), and then `Metric.with_labels` has re-sorted the pairs by (name, value),
/// so a repeated name keeps its greatest value; otherwise the last one given.
pub fn normalize_labels(pairs: &mut Vec<(&str, &str)>, adds_device: bool) {
    if adds_device {
        pairs.sort_unstable_by(|a, b| (a.0.as_bytes(), a.1.as_bytes()).cmp(&(b.0.as_bytes(), b.1.as_bytes())));
    } else {
        pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    // Keep the last of each run of equal names (the sort above is stable / value-ordered).
    let mut i = 0;
    while i + 1 < pairs.len() {
        if pairs[i].0 == pairs[i + 1].0 {
            pairs.remove(i);
        } else {
            i += 1;
        }
    }
}

/// A rendered labels tuple: its labels sorted, joined with commas, and where the batch's
/// `device` label goes when the tuple has none (label index and byte offset in `joined`).
pub struct LabelSet {
    pub labels: Vec<Label>,
    pub joined: Vec<u8>,
    pub device_at: Option<(usize, usize)>,
}

impl LabelSet {
    pub fn new(pairs: &[(&str, &str)], adds_device: bool) -> Self {
        let labels: Vec<Label> = pairs.iter().map(|(k, v)| render_label(k, v)).collect();
        let mut joined = Vec::new();
        join_labels(&mut joined, &labels);
        let device_at = adds_device.then(|| {
            let index = labels.iter().position(|l| l.key.as_bytes() > b"device".as_slice()).unwrap_or(labels.len());
            let offset: usize = labels[..index].iter().map(|l| l.text.len() + 1).sum();
            (index, offset)
        });
        LabelSet { labels, joined, device_at }
    }

    /// The pieces of `k="v",...` for a sample of a batch whose device label is `device`.
    pub fn pieces<'a>(&'a self, device: Option<&'a Label>) -> [&'a [u8]; 4] {
        match (self.device_at, device) {
            (Some((index, offset)), Some(dev)) => {
                if index == self.labels.len() {
                    let comma: &[u8] = if self.labels.is_empty() { b"" } else { b"," };
                    [&self.joined, comma, &dev.text, b""]
                } else {
                    [&self.joined[..offset], &dev.text, b",", &self.joined[offset..]]
                }
            }
            _ => [&self.joined, b"", b"", b""],
        }
    }

    /// The labels with the device label in place, for merging a state set's own label.
    pub fn with_device(&self, device: Option<&Label>) -> Vec<Label> {
        let mut out = self.labels.clone();
        if let (Some((index, _)), Some(dev)) = (self.device_at, device) {
            out.insert(index, dev.clone());
        }
        out
    }
}

fn join_labels(out: &mut Vec<u8>, labels: &[Label]) {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&l.text);
    }
}

/// `labels` with `key="value"` set (replacing a label of that name), still sorted.
fn join_with(out: &mut Vec<u8>, labels: &[Label], extra: &Label) {
    let mut written = false;
    let mut first = true;
    for l in labels {
        if l.key == extra.key {
            continue;
        }
        if !written && l.key.as_bytes() > extra.key.as_bytes() {
            if !first {
                out.push(b',');
            }
            out.extend_from_slice(&extra.text);
            written = true;
            first = false;
        }
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(&l.text);
        first = false;
    }
    if !written {
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(&extra.text);
    }
}

// --- reading Python objects ---------------------------------------------------------------

fn encode_error(what: impl Into<String>) -> PyErr {
    EncodeError::new_err(what.into())
}

fn as_str<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a str> {
    let s = obj
        .cast::<PyString>()
        .map_err(|_| encode_error(format!("{what} must be a str, not {}", type_name(obj))))?;
    s.to_str().map_err(|_| encode_error(format!("{what} is not valid UTF-8 (a lone surrogate)")))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// `float(value)` for a gauge or counter sample; a str (or anything else without a float
/// value) is refused rather than parsed.
fn sample_value(value: &Bound<'_, PyAny>, name: &str) -> PyResult<f64> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Ok(f.value());
    }
    if value.is_instance_of::<PyBool>() {
        return Ok(if value.is_truthy()? { 1.0 } else { 0.0 });
    }
    if value.is_instance_of::<PyString>() {
        let shown = value.repr().map(|r| r.to_string()).unwrap_or_default();
        return Err(encode_error(format!("{name}: a str value ({shown}) is not a number")));
    }
    value
        .extract::<f64>()
        .map_err(|e| encode_error(format!("{name}: cannot use a {} as a sample value: {e}", type_name(value))))
}

/// What one definition contributes, read once per definition object per call.
struct DefInfo {
    family: usize,
    kind: Kind,
    /// The sample name as written (the family name for a state set).
    sample_name: Vec<u8>,
    /// State set only: the raw family name (the state label's name) and the states.
    state_key: String,
    states: Vec<String>,
}

struct Renderer<'py> {
    py: Python<'py>,
    exposition: Exposition,
    defs: AddrMap<DefInfo>,
    /// Rendered labels tuples, by identity. `model.label_set` interns them, so devices with the
    /// same sensors share them across batches.
    labels: AddrMap<LabelSet>,
    /// Cached definitions and labels tuples are held, so no address in the caches is freed and
    /// reused by another object meanwhile (batches may come from a generator).
    held: Vec<Py<PyAny>>,
    scratch: Vec<u8>,
    /// Samples since the clock was last looked at, and when the GIL was last let go.
    since_check: u32,
    last_yield: std::time::Instant,
}

/// A render holds the GIL while it reads the samples; one of 20,000 samples takes ~10 ms,
/// which a proxy relaying uploads in another thread would see as added latency. So it lets
/// go of the GIL about every `YIELD_EVERY` (waiting threads run), and small renders never do.
const YIELD_EVERY: std::time::Duration = std::time::Duration::from_millis(1);
const YIELD_FOR: std::time::Duration = std::time::Duration::from_micros(50);
const CHECK_EVERY: u32 = 256;

impl<'py> Renderer<'py> {
    fn new(py: Python<'py>, openmetrics: bool) -> Self {
        Renderer {
            py,
            exposition: Exposition::new(openmetrics),
            defs: AddrMap::default(),
            labels: AddrMap::default(),
            held: Vec::new(),
            scratch: Vec::with_capacity(256),
            since_check: 0,
            last_yield: std::time::Instant::now(),
        }
    }

    /// Let other Python threads run when this render has held the GIL for `YIELD_EVERY`. The
    /// samples read so far are held (`held`, the batches' lists), so nothing they point to
    /// can go away meanwhile.
    fn maybe_yield(&mut self) {
        self.since_check += 1;
        if self.since_check < CHECK_EVERY {
            return;
        }
        self.since_check = 0;
        if self.last_yield.elapsed() >= YIELD_EVERY {
            // A bare release is re-taken before a waiting thread wakes up; a short pause is not.
            self.py.detach(|| std::thread::sleep(YIELD_FOR));
            self.last_yield = std::time::Instant::now();
        }
    }

    fn def_info(&mut self, def: &Bound<'py, PyAny>) -> PyResult<usize> {
        let key = def.as_ptr() as usize;
        if self.defs.contains_key(&key) {
            return Ok(key);
        }
        let py = self.py;
        let name_obj = def.getattr(intern!(py, "name"))?;
        let name = as_str(&name_obj, "a metric name")?;
        let kind_obj = def.getattr(intern!(py, "kind"))?;
        let kind_text = as_str(&kind_obj, "a metric kind")?;
        let kind = Kind::parse(kind_text)
            .ok_or_else(|| encode_error(format!("{name}: unknown metric kind {kind_text:?}")))?;
        let help_obj = def.getattr(intern!(py, "help"))?;
        let help = as_str(&help_obj, "a metric's help")?;
        let unit_obj = def.getattr(intern!(py, "unit"))?;
        let unit = as_str(&unit_obj, "a metric's unit")?;
        let family = self
            .exposition
            .family(&FamilySpec { name, help, kind, unit })
            .map_err(encode_error)?;
        let family_text = family_name(name);
        let mut sample_name = Vec::with_capacity(name.len());
        let mut states = Vec::new();
        if kind == Kind::StateSet {
            self.exposition.sample_name(&mut sample_name, family_text);
            for s in def.getattr(intern!(py, "states"))?.try_iter()? {
                states.push(as_str(&s?, "a state")?.to_owned());
            }
        } else {
            self.exposition.sample_name(&mut sample_name, name);
        }
        let state_key = if kind == Kind::StateSet { family_text.to_owned() } else { String::new() };
        self.defs.insert(key, DefInfo { family, kind, sample_name, state_key, states });
        self.held.push(def.clone().unbind());
        Ok(key)
    }

    /// The rendered labels tuple (cached by identity for the whole call).
    fn label_set(&mut self, labels: &Bound<'py, PyAny>, with_device: bool) -> PyResult<usize> {
        let key = labels.as_ptr() as usize;
        if self.labels.contains_key(&key) {
            return Ok(key);
        }
        let not_pairs = || encode_error("labels must be a tuple of (name, value) pairs");
        let tuple = labels.cast::<PyTuple>().map_err(|_| not_pairs())?;
        let mut items: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::with_capacity(tuple.len());
        for pair in tuple.iter() {
            let pair = pair
                .cast_into::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| encode_error("a label must be a (name, value) pair"))?;
            items.push((pair.get_item(0)?, pair.get_item(1)?));
        }
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(items.len());
        for (k, v) in &items {
            pairs.push((as_str(k, "a label name")?, as_str(v, "a label value")?));
        }
        let adds_device = with_device && !pairs.iter().any(|(k, _)| *k == "device");
        normalize_labels(&mut pairs, adds_device);
        let set = LabelSet::new(&pairs, adds_device);
        self.labels.insert(key, set);
        self.held.push(labels.clone().unbind());
        Ok(key)
    }

    fn metric(&mut self, m: &Bound<'py, PyAny>, device: Option<&Label>) -> PyResult<()> {
        let py = self.py;
        // gridtap.model.Metric is a NamedTuple: read it by position; anything else with the
        // three attributes works too, only slower.
        let (def, value, labels) = match m.cast::<PyTuple>() {
            Ok(t) if t.len() == 3 => (t.get_item(0)?, t.get_item(1)?, t.get_item(2)?),
            _ => (
                m.getattr(intern!(py, "definition"))?,
                m.getattr(intern!(py, "value"))?,
                m.getattr(intern!(py, "labels"))?,
            ),
        };
        let dkey = self.def_info(&def)?;
        let lkey = self.label_set(&labels, device.is_some())?;
        let info = &self.defs[&dkey];
        let set = &self.labels[&lkey];
        match info.kind {
            Kind::Gauge | Kind::Counter => {
                let x = match value.cast_exact::<PyFloat>() {
                    Ok(f) => f.value(),
                    Err(_) => sample_value(&value, std::str::from_utf8(&info.sample_name).unwrap_or("metric"))?,
                };
                self.exposition.sample(info.family, &info.sample_name, &set.pieces(device), x);
            }
            Kind::Info => self.exposition.sample(info.family, &info.sample_name, &set.pieces(device), 1.0),
            Kind::StateSet => {
                let current: Option<&str> = match value.cast::<PyString>() {
                    Ok(s) => Some(s.to_str().map_err(|_| encode_error("a state is not valid UTF-8"))?),
                    Err(_) => None,
                };
                let listed = current.is_some_and(|c| info.states.iter().any(|s| s == c));
                let extra: Option<String> = if listed {
                    None
                } else {
                    Some(match current {
                        Some(c) => c.to_owned(),
                        None => value.str()?.to_str()?.to_owned(),
                    })
                };
                let base = set.with_device(device);
                for state in info.states.iter().map(String::as_str).chain(extra.as_deref()) {
                    let label = render_label(&info.state_key, state);
                    self.scratch.clear();
                    join_with(&mut self.scratch, &base, &label);
                    let x = if current == Some(state) { 1.0 } else { 0.0 };
                    self.exposition.sample(info.family, &info.sample_name, &[&self.scratch], x);
                }
            }
        }
        Ok(())
    }

    fn metrics(&mut self, metrics: &Bound<'py, PyAny>, device: Option<&str>) -> PyResult<()> {
        let device = device.map(|d| render_label("device", d));
        if let Ok(list) = metrics.cast::<PyList>() {
            for m in list.iter() {
                self.metric(&m, device.as_ref())?;
                self.maybe_yield();
            }
        } else {
            for m in metrics.try_iter()? {
                self.metric(&m?, device.as_ref())?;
                self.maybe_yield();
            }
        }
        Ok(())
    }
}

/// `exposition_render(batches, openmetrics=False, head=()) -> bytes`.
///
/// `head`: samples written first, as families of their own and without a `device` label
/// (`gridtap_build_info`).
#[pyfunction]
#[pyo3(signature = (batches, openmetrics=false, head=None))]
fn exposition_render(
    py: Python<'_>,
    batches: &Bound<'_, PyAny>,
    openmetrics: bool,
    head: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(8192);
    if let Some(head) = head {
        let mut r = Renderer::new(py, openmetrics);
        r.metrics(head, None)?;
        r.exposition.finish(&mut out, false);
    }
    let mut r = Renderer::new(py, openmetrics);
    for batch in batches.try_iter()? {
        let batch = batch?;
        let device_obj = batch.getattr(intern!(py, "device"))?;
        let device = as_str(&device_obj, "a batch's device")?;
        let metrics = batch.getattr(intern!(py, "metrics"))?;
        r.metrics(&metrics, Some(device))?;
    }
    r.exposition.finish(&mut out, true);
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(exposition_render, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(x: f64) -> String {
        let mut v = Vec::new();
        push_go_float(&mut v, x);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn floats_as_prometheus_client_writes_them() {
        for (x, want) in [
            (0.0, "0.0"), (-0.0, "-0.0"), (1.0, "1.0"), (47.59, "47.59"), (999999.0, "999999.0"),
            (1000000.0, "1e+06"), (1234567.0, "1.234567e+06"), (10000000.5, "1.00000005e+07"),
            (-1234567.0, "-1234567.0"), (1e16, "1e+16"), (1.5e-7, "1.5e-07"), (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"), (f64::NEG_INFINITY, "-Inf"), (123456.75, "123456.75"),
            (9999999999999998.0, "9.999999999999998e+15"),
        ] {
            assert_eq!(go(x), want, "{x}");
        }
    }

    #[test]
    fn names_are_escaped_like_prometheus_client() {
        let mut v = Vec::new();
        push_label_name(&mut v, "9a-b\u{e9}");
        assert_eq!(v, b"_a_b_");
        v.clear();
        push_label_name(&mut v, "ok\n"); // Python's `$` matches before a final newline
        assert_eq!(v, b"ok\n");
        v.clear();
        push_metric_name(&mut v, "a:b");
        assert_eq!(v, b"a:b");
        v.clear();
        push_underscored(&mut v, "a:b", false);
        assert_eq!(v, b"a_b");
        assert!(!is_legacy_label_name("__reserved"));
    }

    #[test]
    fn labels_sorted_deduplicated_and_with_device() {
        let mut pairs = vec![("z", "1"), ("a", "2"), ("a", "0")];
        normalize_labels(&mut pairs, true);
        assert_eq!(pairs, vec![("a", "2"), ("z", "1")]);
        let set = LabelSet::new(&pairs, true);
        let device = render_label("device", "boiler");
        assert_eq!(set.pieces(Some(&device)).concat(), b"a=\"2\",device=\"boiler\",z=\"1\"");
        let mut pairs = vec![("device", "x"), ("a", "2"), ("a", "0")];
        normalize_labels(&mut pairs, false);
        assert_eq!(pairs, vec![("a", "0"), ("device", "x")]);
        assert_eq!(LabelSet::new(&pairs, false).pieces(Some(&device)).concat(), b"a=\"0\",device=\"x\"");
        assert_eq!(LabelSet::new(&[], true).pieces(Some(&device)).concat(), b"device=\"boiler\"");
        assert_eq!(LabelSet::new(&[("z", "1")], true).pieces(Some(&device)).concat(), b"device=\"boiler\",z=\"1\"");
    }

    #[test]
    fn text_and_openmetrics_families() {
        for (om, want) in [
            (false, "# HELP m_energy_joules_total E \"q\"\\n\n# TYPE m_energy_joules_total counter\n\
                      m_energy_joules_total{device=\"d\"} 1.5\n"),
            (true, "# HELP m_energy_joules E \\\"q\\\"\\n\n# TYPE m_energy_joules counter\n\
                     # UNIT m_energy_joules joules\nm_energy_joules_total{device=\"d\"} 1.5\n# EOF\n"),
        ] {
            let mut e = Exposition::new(om);
            let f = e
                .family(&FamilySpec { name: "m_energy_joules_total", help: "E \"q\"\n", kind: Kind::Counter, unit: "joules" })
                .unwrap();
            let mut name = Vec::new();
            e.sample_name(&mut name, "m_energy_joules_total");
            let label = render_label("device", "d");
            e.sample(f, &name, &[&label.text], 1.5);
            let mut out = Vec::new();
            e.finish(&mut out, true);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn state_label_is_merged_in_order() {
        let labels = vec![render_label("a", "1"), render_label("z", "2")];
        let mut out = Vec::new();
        join_with(&mut out, &labels, &render_label("m_state", "on"));
        assert_eq!(out, b"a=\"1\",m_state=\"on\",z=\"2\"");
        out.clear();
        join_with(&mut out, &[render_label("m_state", "old")], &render_label("m_state", "on"));
        assert_eq!(out, b"m_state=\"on\"");
    }

    #[test]
    fn empty_family_is_an_error() {
        let mut e = Exposition::new(false);
        assert!(e.family(&FamilySpec { name: "_total", help: "", kind: Kind::Counter, unit: "" }).is_err());
    }
}
