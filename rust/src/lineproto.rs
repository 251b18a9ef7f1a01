//! Influx line protocol encoder.
//!
//! Rules (shared/specs/ecosystem.md §1b): measurement escapes comma and space; tag keys,
//! tag values and field keys escape comma, equals and space; string fields escape `"` and
//! `\`; TAB/LF/FF/CR become `\t \n \f \r` as Telegraf's serializer writes them. NaN and ±Inf
//! fields are dropped, empty tag values are dropped, trailing backslashes are trimmed (they
//! cannot be represented), and a line left with no field is not written. Floats use the
//! shortest round-trip form Python's `repr` gives, so the pure-Python reference
//! (`gridtap.outputs.lineproto_ref`) can produce the same bytes.
//!
//! Grouping: within one batch, metrics with the same label set share one line, in order of
//! first appearance; the field key is the metric name without the `<plugin>_` prefix.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::intern;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (rustc's hasher): the keys here are short, trusted and per call, so SipHash's
/// flood resistance buys nothing and costs a measurable share of the encode time.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A field value after type resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    /// Borrowed from the Python string, which outlives the encode call.
    Str(&'a str),
}

/// Decimal digits of `n` appended to `out`, without the heap string `to_string` would make
/// (one allocation per integer field was a visible share of the encode time).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_u64(out, n.unsigned_abs());
}

fn push_escaped(out: &mut Vec<u8>, s: &str, specials: &[u8]) {
    // Trailing backslashes cannot be represented (influxd rejects them); Telegraf trims them.
    let s = s.trim_end_matches('\\');
    for &b in s.as_bytes() {
        match b {
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                if specials.contains(&b) {
                    out.push(b'\\');
                }
                out.push(b);
            }
        }
    }
}

pub fn escape_measurement(out: &mut Vec<u8>, s: &str) {
    push_escaped(out, s, b", ");
}

pub fn escape_key(out: &mut Vec<u8>, s: &str) {
    push_escaped(out, s, b",= ");
}

fn escape_string_field(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Python's `repr(float)` for finite values: shortest round-trip digits, fixed notation
/// for decimal exponents in [-4, 16), otherwise `d.ddde+XX` with at least two exponent digits.
pub fn format_float(out: &mut Vec<u8>, x: f64) {
    // ryu gives the shortest round-trip digits and, like Python's dtoa, breaks ties to
    // even (std's `{:e}` rounds ties up: 70368744177664.125 -> ...13, Python says ...12).
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x);
    // Where Python writes fixed notation, ryu's fixed output is already the same text (same
    // shortest digits, same `.0` on integral values): the common case skips the rewrite below.
    let magnitude = x.abs();
    if (1e-4..1e16).contains(&magnitude) && !text.contains('e') {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let (neg, text) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mantissa, exp_part) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu writes an integer exponent")),
        None => (text, 0),
    };
    // Significant digits and the decimal exponent of the first one.
    let mut digit_buf = [0u8; 40];
    let mut n = 0;
    let mut point = None;
    for (i, &b) in mantissa.as_bytes().iter().enumerate() {
        if b == b'.' {
            point = Some(i);
        } else {
            digit_buf[n] = b;
            n += 1;
        }
    }
    let int_digits = point.unwrap_or(mantissa.len()) as i32;
    let lead = digit_buf[..n].iter().take_while(|&&d| d == b'0').count();
    let mut digits = &digit_buf[lead..n];
    while digits.len() > 1 && digits[digits.len() - 1] == b'0' {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() {
        digits = b"0";
    }
    let exp = if digits == b"0" { 0 } else { int_digits - 1 - lead as i32 + exp_part };
    if neg {
        out.push(b'-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        push_u64(out, u64::from(e));
    }
}

/// Append `value` as a field value; false when the value cannot be written (NaN, ±Inf).
pub fn format_value(out: &mut Vec<u8>, value: &FieldValue) -> bool {
    match value {
        FieldValue::Float(x) => {
            if !x.is_finite() {
                return false;
            }
            format_float(out, *x);
        }
        FieldValue::Int(i) => {
            push_i64(out, *i);
            out.push(b'i');
        }
        FieldValue::UInt(u) => {
            push_u64(out, *u);
            out.push(b'u');
        }
        FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        FieldValue::Str(s) => escape_string_field(out, s),
    }
    true
}

/// Append `,key=value` for each tag (keys and values escaped; empty ones dropped, as
/// influxd rejects them and Telegraf drops them).
fn push_tags(series: &mut Vec<u8>, tags: &[(&str, &str)]) {
    for (k, v) in tags {
        // Escaped in place; a key or value that escapes to nothing takes its tag back out.
        let mark = series.len();
        series.push(b',');
        escape_key(series, k);
        let key_end = series.len();
        series.push(b'=');
        escape_key(series, v);
        if key_end == mark + 1 || series.len() == key_end + 1 {
            series.truncate(mark);
        }
    }
}

/// One line being assembled: its escaped series key and its fields as (key id, value
/// range in `values`). Values live in one arena per line; a repeated key appends the new
/// value and moves its range, so the old bytes are simply left unused.
struct Line {
    series: Vec<u8>,
    fields: Vec<(u32, u32, u32)>,
    values: Vec<u8>,
    /// Bit `id % 64` set for every key id in `fields`: a clear bit proves a key is new,
    /// which spares the duplicate scan in the common case.
    seen: u64,
    /// The next line whose series text has the same hash (see `BatchEncoder::index`).
    next: Option<usize>,
}

fn fx_hash(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.finish()
}

/// Assembles the lines of one batch (one measurement, one timestamp).
pub struct BatchEncoder {
    measurement: Vec<u8>,
    prefix: String,
    lines: Vec<Line>,
    /// First line by the hash of its escaped series text (equal hashes chain through
    /// `Line::next`), so a series is hashed once and never copied to be a key.
    index: FxMap<u64, usize>,
    /// Line index by the raw (unescaped) label set, so a label set seen before costs one
    /// hash lookup instead of escaping and joining its tags again.
    raw_index: FxMap<Vec<u8>, usize>,
    /// Escaped field keys, interned: a field is its key's id.
    keys: Vec<Vec<u8>>,
    key_ids: FxMap<Vec<u8>, u32>,
    /// Lines of earlier batches, emptied: their buffers are reused, so a batch allocates
    /// nothing for lines the one before had (most batches repeat the previous one's shape).
    spare: Vec<Line>,
}

impl BatchEncoder {
    pub fn plugin_prefix(&self) -> &str {
        &self.prefix
    }

    pub fn new(plugin: &str) -> Self {
        let mut measurement = Vec::with_capacity(plugin.len());
        escape_measurement(&mut measurement, plugin);
        BatchEncoder {
            measurement,
            prefix: format!("{plugin}_"),
            lines: Vec::new(),
            index: FxMap::default(),
            raw_index: FxMap::default(),
            keys: Vec::new(),
            key_ids: FxMap::default(),
            spare: Vec::new(),
        }
    }

    /// The id of the field a metric called `name` writes to; None if its key is empty.
    pub fn field_id(&mut self, name: &str) -> Option<u32> {
        let field = name.strip_prefix(&self.prefix).unwrap_or(name);
        let mut key = Vec::with_capacity(field.len());
        escape_key(&mut key, field);
        if key.is_empty() {
            return None;
        }
        if let Some(&id) = self.key_ids.get(&key) {
            return Some(id);
        }
        let id = self.keys.len() as u32;
        self.keys.push(key.clone());
        self.key_ids.insert(key, id);
        Some(id)
    }

    /// The line for a label set (sorted by key), created on first sight. `raw_key`, if
    /// given, is any byte string equal exactly when the label sets are equal.
    pub fn line_for(&mut self, tags: &[(&str, &str)], raw_key: Option<&[u8]>) -> usize {
        if let Some(&idx) = raw_key.and_then(|k| self.raw_index.get(k)) {
            return idx;
        }
        let mut series = self.measurement.clone();
        push_tags(&mut series, tags);
        let idx = self.line_for_series(&series, 16, 256);
        if let Some(k) = raw_key {
            self.raw_index.insert(k.to_vec(), idx);
        }
        idx
    }

    /// The line whose escaped series text is `series`, created on first sight with room for
    /// `fields` fields and `bytes` bytes of values.
    pub fn line_for_series(&mut self, series: &[u8], fields: usize, bytes: usize) -> usize {
        let hash = fx_hash(series);
        let first = self.index.get(&hash).copied();
        let mut at = first;
        while let Some(i) = at {
            if self.lines[i].series == series {
                return i;
            }
            at = self.lines[i].next;
        }
        let line = match self.spare.pop() {
            Some(mut line) => {
                line.series.clear();
                line.series.extend_from_slice(series);
                line.fields.clear();
                line.values.clear();
                line.seen = 0;
                line.next = first;
                line
            }
            None => Line {
                series: series.to_vec(),
                fields: Vec::with_capacity(fields),
                values: Vec::with_capacity(bytes),
                seen: 0,
                next: first,
            },
        };
        self.lines.push(line);
        let idx = self.lines.len() - 1;
        self.index.insert(hash, idx);
        idx
    }

    pub fn measurement(&self) -> &[u8] {
        &self.measurement
    }

    /// Write `value` to field `key_id` of line `line`; NaN and ±Inf are dropped.
    pub fn put(&mut self, line: usize, key_id: u32, value: &FieldValue) {
        let line = &mut self.lines[line];
        let start = line.values.len();
        if !format_value(&mut line.values, value) {
            line.values.truncate(start);
            return;
        }
        let (start, end) = (start as u32, line.values.len() as u32);
        let bit = 1u64 << (key_id % 64);
        // A repeated field key replaces the earlier value in place (influxd keeps the last).
        if line.seen & bit != 0 {
            if let Some(slot) = line.fields.iter_mut().find(|(k, _, _)| *k == key_id) {
                *slot = (key_id, start, end);
                return;
            }
        }
        line.seen |= bit;
        line.fields.push((key_id, start, end));
    }

    /// Add one sample. `tags` must be sorted by key.
    pub fn add(&mut self, name: &str, tags: &[(&str, &str)], value: &FieldValue) {
        if matches!(value, FieldValue::Float(x) if !x.is_finite()) {
            return;
        }
        if let Some(id) = self.field_id(name) {
            let line = self.line_for(tags, None);
            self.put(line, id, value);
        }
    }

    /// Write the batch's lines to `out` and start the next batch. Field keys stay interned,
    /// so consecutive batches of one plugin (many devices) escape each key once.
    pub fn finish(&mut self, out: &mut Vec<u8>, timestamp_ns: Option<i64>) {
        let stamp = timestamp_ns.map(|ts| ts.to_string());
        self.index.clear();
        self.raw_index.clear();
        for line in self.lines.drain(..) {
            if line.fields.is_empty() {
                self.spare.push(line);
                continue;
            }
            out.extend_from_slice(&line.series);
            out.push(b' ');
            for (i, &(k, a, b)) in line.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&self.keys[k as usize]);
                out.push(b'=');
                out.extend_from_slice(&line.values[a as usize..b as usize]);
            }
            if let Some(ts) = &stamp {
                out.push(b' ');
                out.extend_from_slice(ts.as_bytes());
            }
            out.push(b'\n');
            self.spare.push(line);
        }
    }
}

/// A float sample; one of an `integer` metric is written as an integer, rounded half to even
/// (as Python's `round`), so an InfluxDB field never changes type between two collections.
fn float_value(x: f64, integer: bool) -> FieldValue<'static> {
    if integer && x.is_finite() && x.abs() < 9.2e18 {
        return FieldValue::Int(x.round_ties_even() as i64);
    }
    FieldValue::Float(x)
}

/// Resolve a Python sample value to a field value, following the metric definition.
fn field_value<'a>(value: &'a Bound<'_, PyAny>, integer: bool, uint: bool) -> PyResult<FieldValue<'a>> {
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        return Ok(float_value(f.value(), integer)); // the common case first: a plain float
    }
    if value.is_instance_of::<PyBool>() {
        return Ok(FieldValue::Bool(value.extract::<bool>()?));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(FieldValue::Int(i));
        }
        if let Ok(u) = value.extract::<u64>() {
            // influxd 1.x rejects `u`; like Telegraf, clamp to int64 unless unsigned is asked for.
            return Ok(if uint { FieldValue::UInt(u) } else { FieldValue::Int(i64::MAX) });
        }
        return Err(crate::errors::EncodeError::new_err("integer field out of the 64-bit range"));
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(float_value(value.extract::<f64>()?, integer));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(FieldValue::Str(text.to_str()?));
    }
    Err(crate::errors::EncodeError::new_err(format!(
        "cannot encode a {} as a field",
        value.get_type().name()?
    )))
}

/// What a metric definition contributes, looked up once per definition object per batch.
#[derive(Clone, Copy)]
struct DefInfo {
    field: Option<u32>,
    integer: bool,
    /// Index into the call's state-set table for `Kind.STATESET` definitions.
    stateset: Option<usize>,
}

/// A state set's tag key (the family name, as Prometheus names the label) and its states.
struct StateSet {
    family: String,
    states: Vec<String>,
}

/// The (key, value) pairs of a label tuple, as Python objects that outlive the &str views taken of them.
fn label_items<'py>(labels: &Bound<'py, PyAny>) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let tuple = labels.cast::<PyTuple>()?;
    let mut items = Vec::with_capacity(tuple.len());
    for pair in tuple.iter() {
        let pair = pair.cast::<PyTuple>()?;
        items.push((pair.get_item(0)?, pair.get_item(1)?));
    }
    Ok(items)
}

/// The escaped series of each declared state of a (label tuple, state set, device), kept for
/// the whole call: devices report the same label sets every collection, so a state set's tags
/// are escaped once, not once per batch (that was most of its cost). The label tuples are held,
/// so no cached address can be freed and reused by another tuple while the call runs.
#[derive(Default)]
struct StatesetSeries {
    series: FxMap<(usize, usize, usize), Vec<Vec<u8>>>,
    held: Vec<Py<PyAny>>,
}

impl StatesetSeries {
    fn clear(&mut self) {
        self.series.clear();
        self.held.clear();
    }
}

/// A state set becomes one line per state: the labels plus `<family>=<state>`, field 1i for
/// the current state and 0i for the others. Telegraf's `outputs.prometheus_client` turns
/// that into exactly the samples gridtap's own /metrics serves (it drops string fields, so
/// a `state="heating"` field would be lost there). A value outside the declared states is
/// written as one more state, as the exposition does.
fn put_stateset(
    enc: &mut BatchEncoder,
    set: (usize, &StateSet),
    field: u32,
    value: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    device: (&str, usize),
    cache: &mut StatesetSeries,
) -> PyResult<()> {
    let (set_id, set) = set;
    let current = value.cast::<PyString>().map_err(|_| {
        crate::errors::EncodeError::new_err(format!("state set {} needs a state name, not a number", set.family))
    })?;
    let current = current.to_str()?;
    let declared = set.states.iter().position(|s| s == current);
    let key = (labels.as_ptr() as usize, set_id, device.1);
    if declared.is_some() {
        if let Some(series) = cache.series.get(&key) {
            for (i, series) in series.iter().enumerate() {
                let line = enc.line_for_series(series, 1, 4);
                enc.put(line, field, &FieldValue::Int(i64::from(Some(i) == declared)));
            }
            return Ok(());
        }
    }
    let items = label_items(labels)?;
    let mut base: Vec<(&str, &str)> = Vec::with_capacity(items.len() + 2);
    let mut has_device = false;
    for (k, v) in &items {
        let k = k.cast::<PyString>()?.to_str()?;
        has_device |= k == "device";
        base.push((k, v.cast::<PyString>()?.to_str()?));
    }
    if !has_device {
        base.push(("device", device.0));
    }
    base.retain(|(k, _)| *k != set.family);
    base.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    // The state's tag goes where its key sorts; the tags around it are escaped once for all states.
    let at = base.partition_point(|(k, _)| k.as_bytes() < set.family.as_bytes());
    let mut before = enc.measurement().to_vec();
    push_tags(&mut before, &base[..at]);
    let mut after = Vec::new();
    push_tags(&mut after, &base[at..]);
    let extra = declared.is_none().then_some(current);
    let mut made = Vec::with_capacity(set.states.len());
    for (i, state) in set.states.iter().map(String::as_str).chain(extra).enumerate() {
        let mut series = Vec::with_capacity(before.len() + after.len() + set.family.len() + state.len() + 2);
        series.extend_from_slice(&before);
        push_tags(&mut series, &[(set.family.as_str(), state)]);
        series.extend_from_slice(&after);
        let line = enc.line_for_series(&series, 1, 4);
        enc.put(line, field, &FieldValue::Int(i64::from(state == current)));
        if i < set.states.len() {
            made.push(series);
        }
    }
    if let std::collections::hash_map::Entry::Vacant(slot) = cache.series.entry(key) {
        slot.insert(made);
        cache.held.push(labels.to_owned().unbind());
    }
    Ok(())
}

/// `encode(batches, uint=False) -> bytes`: line protocol for a sequence of
/// `gridtap.model.Batch`, one call for the whole lot.
///
/// Definitions and label tuples are shared between samples, so both are cached by object
/// identity: definitions for the whole call (each cached one is held, so its address cannot
/// be reused), label tuples for one batch (the batch keeps them alive meanwhile).
#[pyfunction]
#[pyo3(signature = (batches, uint=false))]
fn encode<'py>(py: Python<'py>, batches: &Bound<'py, PyAny>, uint: bool) -> PyResult<Bound<'py, PyBytes>> {
    // The output buffer is kept between calls (up to OUT_KEPT bytes): a collection writes about
    // as much as the one before, and a fresh large buffer cost its growth copies and a page
    // fault per 4 KiB every call.
    let mut out = OUT.with(|kept| std::mem::take(&mut *kept.borrow_mut()));
    out.clear();
    let result = encode_into(py, batches, uint, &mut out).map(|()| PyBytes::new(py, &out));
    if out.capacity() <= OUT_KEPT {
        OUT.with(|kept| *kept.borrow_mut() = out);
    }
    result
}

const OUT_KEPT: usize = 8 << 20;

thread_local! {
    static OUT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn encode_into(py: Python<'_>, batches: &Bound<'_, PyAny>, uint: bool, out: &mut Vec<u8>) -> PyResult<()> {
    let mut raw_key: Vec<u8> = Vec::with_capacity(64);
    let mut enc: Option<BatchEncoder> = None;
    let mut defs: FxMap<usize, DefInfo> = FxMap::with_capacity_and_hasher(64, Default::default());
    // Cached definitions are held here, so no address in `defs` can be freed and reused by
    // another object while this call runs (batches may come from a generator).
    let mut held_defs: Vec<Py<PyAny>> = Vec::new();
    let mut label_lines: FxMap<usize, usize> = FxMap::with_capacity_and_hasher(64, Default::default());
    let mut stateset_series = StatesetSeries::default();
    let mut device_ids: FxMap<String, usize> = FxMap::default();
    let mut statesets: Vec<StateSet> = Vec::new();
    for batch in batches.try_iter()? {
        let batch = batch?;
        let plugin: String = batch.getattr(intern!(py, "plugin"))?.extract()?;
        let device: String = batch.getattr(intern!(py, "device"))?.extract()?;
        let ts: Option<i64> = batch.getattr(intern!(py, "timestamp_ns"))?.extract()?;
        let metrics = batch.getattr(intern!(py, "metrics"))?;
        let metrics = metrics.cast::<PyList>()?;
        out.reserve(metrics.len() * 32);
        // Keep the encoder (interned keys) and the definition cache while the plugin stays
        // the same; label sets are per batch, since the device fills in a missing label.
        if enc.as_ref().is_none_or(|e| e.plugin_prefix().strip_suffix('_') != Some(plugin.as_str())) {
            enc = Some(BatchEncoder::new(&plugin));
            defs.clear();
            stateset_series.clear(); // its series start with the measurement
        }
        let next_id = device_ids.len();
        let device_id = *device_ids.entry(device.clone()).or_insert(next_id);
        let enc = enc.as_mut().expect("set above");
        label_lines.clear();
        for m in metrics.iter() {
            // gridtap.model.Metric is a NamedTuple: read it by position, borrowing the items
            // (no reference-count traffic); anything else with the three attributes works
            // too, only slower.
            let owned;
            let tuple;
            let (def, value, labels) = match m.cast::<PyTuple>() {
                Ok(t) if t.len() == 3 => {
                    tuple = t;
                    (tuple.get_borrowed_item(0)?, tuple.get_borrowed_item(1)?, tuple.get_borrowed_item(2)?)
                }
                _ => {
                    owned = (
                        m.getattr(intern!(py, "definition"))?,
                        m.getattr(intern!(py, "value"))?,
                        m.getattr(intern!(py, "labels"))?,
                    );
                    (owned.0.as_borrowed(), owned.1.as_borrowed(), owned.2.as_borrowed())
                }
            };
            let info = match defs.get(&(def.as_ptr() as usize)) {
                Some(info) => *info,
                None => {
                    let name_obj = def.getattr(intern!(py, "name"))?;
                    let name = name_obj.cast::<PyString>()?.to_str()?;
                    // Duck-typed definitions without a kind are plain values.
                    let kind = def.getattr_opt(intern!(py, "kind"))?;
                    let is_stateset = match &kind {
                        Some(k) => k.str()?.to_str()? == "stateset",
                        None => false,
                    };
                    let stateset = if is_stateset {
                        let states: Vec<String> = def.getattr(intern!(py, "states"))?.extract()?;
                        let family = name.strip_suffix("_total").unwrap_or(name).to_string();
                        statesets.push(StateSet { family, states });
                        Some(statesets.len() - 1)
                    } else {
                        None
                    };
                    let info = DefInfo {
                        field: enc.field_id(name),
                        integer: def.getattr(intern!(py, "integer"))?.extract()?,
                        stateset,
                    };
                    defs.insert(def.as_ptr() as usize, info);
                    held_defs.push(def.to_owned().unbind());
                    info
                }
            };
            if let Some(set) = info.stateset {
                let Some(field) = info.field else { continue };
                put_stateset(enc, (set, &statesets[set]), field, &value, &labels, (&device, device_id),
                             &mut stateset_series)?;
                continue;
            }
            let fv = field_value(&value, info.integer, uint)?;
            let Some(field) = info.field else { continue };
            if matches!(fv, FieldValue::Float(x) if !x.is_finite()) {
                continue; // dropped before it can open a line, as the reference does
            }
            let line = match label_lines.get(&(labels.as_ptr() as usize)) {
                Some(&line) => line,
                None => {
                    // The items stay alive in `items`, so borrowed &str views are valid here.
                    let items = label_items(&labels)?;
                    let mut tags: Vec<(&str, &str)> = Vec::with_capacity(items.len() + 1);
                    raw_key.clear();
                    let mut has_device = false;
                    for (k, v) in &items {
                        let k = k.cast::<PyString>()?.to_str()?;
                        let v = v.cast::<PyString>()?.to_str()?;
                        has_device |= k == "device";
                        raw_key.extend_from_slice(k.as_bytes());
                        raw_key.push(0xff); // 0xff never occurs in UTF-8, so the key is unambiguous
                        raw_key.extend_from_slice(v.as_bytes());
                        raw_key.push(0xff);
                        tags.push((k, v));
                    }
                    if !has_device {
                        tags.push(("device", device.as_str()));
                    }
                    tags.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    let line = enc.line_for(&tags, Some(&raw_key));
                    label_lines.insert(labels.as_ptr() as usize, line);
                    line
                }
            };
            enc.put(line, field, &fv);
        }
        enc.finish(out, ts);
    }
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(x: f64) -> String {
        let mut v = Vec::new();
        format_float(&mut v, x);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn floats_match_python_repr() {
        for (x, want) in [
            (0.0, "0.0"), (-0.0, "-0.0"), (1.0, "1.0"), (47.59, "47.59"), (0.1, "0.1"),
            (1e16, "1e+16"), (1.5e-5, "1.5e-05"), (0.0001, "0.0001"), (123456.789, "123456.789"),
            (1e300, "1e+300"), (-2.5e-300, "-2.5e-300"), (9999999999999998.0, "9999999999999998.0"),
            (1.7976931348623157e308, "1.7976931348623157e+308"), (5e-324, "5e-324"),
            (70368744177664.0 + 0.125, "70368744177664.12"), (1e-5, "1e-05"), (123e20, "1.23e+22"),
        ] {
            assert_eq!(float(x), want, "{x}");
        }
    }

    #[test]
    fn groups_escapes_and_drops() {
        let mut enc = BatchEncoder::new("intergas");
        enc.add("intergas_temperature_celsius", &[("device", "boiler"), ("sensor", "flow")], &FieldValue::Float(47.59));
        enc.add("intergas_flag", &[("device", "boiler"), ("name", "a b,c=d")], &FieldValue::Int(1));
        enc.add("intergas_pressure_pascals", &[("device", "boiler"), ("sensor", "flow")], &FieldValue::Float(f64::NAN));
        enc.add("intergas_state", &[("device", "boiler"), ("sensor", "flow")], &FieldValue::Str("say \"hi\"\\"));
        enc.add("intergas_x", &[("device", "boiler"), ("empty", "")], &FieldValue::Bool(true));
        let mut out = Vec::new();
        enc.finish(&mut out, Some(17));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "intergas,device=boiler,sensor=flow temperature_celsius=47.59,state=\"say \\\"hi\\\"\\\\\" 17\n\
             intergas,device=boiler,name=a\\ b\\,c\\=d flag=1i 17\n\
             intergas,device=boiler x=true 17\n"
        );
    }

    #[test]
    fn line_with_only_nan_is_not_written() {
        let mut enc = BatchEncoder::new("m");
        enc.add("m_a", &[], &FieldValue::Float(f64::INFINITY));
        let mut out = Vec::new();
        enc.finish(&mut out, None);
        assert!(out.is_empty());
    }
}
