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
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple};
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
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
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
    format_float_with(out, x, &mut String::new());
}

fn format_float_with(out: &mut Vec<u8>, x: f64, _scratch: &mut String) {
    // ryu gives the shortest round-trip digits and, like Python's dtoa, breaks ties to
    // even (std's `{:e}` rounds ties up: 70368744177664.125 -> ...13, Python says ...12).
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x);
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
        out.extend_from_slice(e.to_string().as_bytes());
    }
}

/// Append `value` as a field value; false when the value cannot be written (NaN, ±Inf).
pub fn format_value(out: &mut Vec<u8>, value: &FieldValue) -> bool {
    format_value_with(out, value, &mut String::new())
}

fn format_value_with(out: &mut Vec<u8>, value: &FieldValue, scratch: &mut String) -> bool {
    match value {
        FieldValue::Float(x) => {
            if !x.is_finite() {
                return false;
            }
            format_float_with(out, *x, scratch);
        }
        FieldValue::Int(i) => {
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'i');
        }
        FieldValue::UInt(u) => {
            out.extend_from_slice(u.to_string().as_bytes());
            out.push(b'u');
        }
        FieldValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        FieldValue::Str(s) => escape_string_field(out, s),
    }
    true
}

/// One line being assembled: its escaped series key and its fields (escaped key, value).
struct Line {
    series: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Assembles the lines of one batch (one measurement, one timestamp).
pub struct BatchEncoder {
    measurement: Vec<u8>,
    prefix: String,
    lines: Vec<Line>,
    index: FxMap<Vec<u8>, usize>,
    /// Line index by the raw (unescaped) label set, so a label set seen before costs one
    /// hash lookup instead of escaping and joining its tags again.
    raw_index: FxMap<Vec<u8>, usize>,
    scratch: String,
}

impl BatchEncoder {
    pub fn new(plugin: &str) -> Self {
        let mut measurement = Vec::with_capacity(plugin.len());
        escape_measurement(&mut measurement, plugin);
        BatchEncoder {
            measurement,
            prefix: format!("{plugin}_"),
            lines: Vec::new(),
            index: FxMap::default(),
            raw_index: FxMap::default(),
            scratch: String::with_capacity(32),
        }
    }

    /// Add one sample. `tags` must be sorted by key.
    pub fn add(&mut self, name: &str, tags: &[(&str, &str)], value: &FieldValue) {
        self.add_with_raw_key(name, tags, value, None);
    }

    /// As [`add`], with `raw_key` identifying the label set (any bytes that are equal
    /// exactly when the label sets are equal) to skip rebuilding a known series.
    pub fn add_with_raw_key(&mut self, name: &str, tags: &[(&str, &str)], value: &FieldValue, raw_key: Option<&[u8]>) {
        let mut val = Vec::with_capacity(24);
        if !format_value_with(&mut val, value, &mut self.scratch) {
            return;
        }
        let field = name.strip_prefix(&self.prefix).unwrap_or(name);
        let mut key = Vec::with_capacity(field.len());
        escape_key(&mut key, field);
        if key.is_empty() {
            return;
        }
        if let Some(&idx) = raw_key.and_then(|k| self.raw_index.get(k)) {
            Self::put_field(&mut self.lines[idx].fields, key, val);
            return;
        }
        let mut series = self.measurement.clone();
        for (k, v) in tags {
            let (mut ek, mut ev) = (Vec::new(), Vec::new());
            escape_key(&mut ek, k);
            escape_key(&mut ev, v);
            if ek.is_empty() || ev.is_empty() {
                continue; // influxd rejects empty tag keys and values; Telegraf drops them
            }
            series.push(b',');
            series.extend_from_slice(&ek);
            series.push(b'=');
            series.extend_from_slice(&ev);
        }
        let idx = match self.index.get(&series) {
            Some(&i) => i,
            None => {
                self.lines.push(Line { series: series.clone(), fields: Vec::new() });
                self.index.insert(series, self.lines.len() - 1);
                self.lines.len() - 1
            }
        };
        if let Some(k) = raw_key {
            self.raw_index.insert(k.to_vec(), idx);
        }
        Self::put_field(&mut self.lines[idx].fields, key, val);
    }

    fn put_field(fields: &mut Vec<(Vec<u8>, Vec<u8>)>, key: Vec<u8>, val: Vec<u8>) {
        // A repeated field key replaces the earlier value in place (influxd keeps the last).
        if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = val;
        } else {
            fields.push((key, val));
        }
    }

    pub fn finish(self, out: &mut Vec<u8>, timestamp_ns: Option<i64>) {
        for line in self.lines {
            if line.fields.is_empty() {
                continue;
            }
            out.extend_from_slice(&line.series);
            out.push(b' ');
            for (i, (k, v)) in line.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(k);
                out.push(b'=');
                out.extend_from_slice(v);
            }
            if let Some(ts) = timestamp_ns {
                out.push(b' ');
                out.extend_from_slice(ts.to_string().as_bytes());
            }
            out.push(b'\n');
        }
    }
}

/// Resolve a Python sample value to a field value, following the metric definition.
fn field_value(value: &Bound<'_, PyAny>, integer: bool, uint: bool) -> PyResult<Option<FieldValue>> {
    if value.is_instance_of::<PyBool>() {
        return Ok(Some(FieldValue::Bool(value.extract::<bool>()?)));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(Some(FieldValue::Int(i)));
        }
        if let Ok(u) = value.extract::<u64>() {
            // influxd 1.x rejects `u`; like Telegraf, clamp to int64 unless unsigned is asked for.
            return Ok(Some(if uint { FieldValue::UInt(u) } else { FieldValue::Int(i64::MAX) }));
        }
        return Err(crate::errors::EncodeError::new_err("integer field out of the 64-bit range"));
    }
    if value.is_instance_of::<PyFloat>() {
        let x: f64 = value.extract()?;
        if integer && x.is_finite() && x.fract() == 0.0 && x.abs() < 9.2e18 {
            return Ok(Some(FieldValue::Int(x as i64)));
        }
        return Ok(Some(FieldValue::Float(x)));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(Some(FieldValue::Str(value.extract::<String>()?)));
    }
    Err(crate::errors::EncodeError::new_err(format!(
        "cannot encode a {} as a field",
        value.get_type().name()?
    )))
}

/// `encode(batches, uint=False) -> bytes`: line protocol for a sequence of
/// `gridtap.model.Batch`, one call for the whole lot.
#[pyfunction]
#[pyo3(signature = (batches, uint=false))]
fn encode(py: Python<'_>, batches: &Bound<'_, PyAny>, uint: bool) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    for batch in batches.try_iter()? {
        let batch = batch?;
        let plugin: String = batch.getattr(intern!(py, "plugin"))?.extract()?;
        let device: String = batch.getattr(intern!(py, "device"))?.extract()?;
        let ts: Option<i64> = batch.getattr(intern!(py, "timestamp_ns"))?.extract()?;
        let metrics = batch.getattr(intern!(py, "metrics"))?;
        let metrics = metrics.cast::<PyList>()?;
        let mut enc = BatchEncoder::new(&plugin);
        let mut raw_key: Vec<u8> = Vec::with_capacity(64);
        for m in metrics.iter() {
            let def = m.getattr(intern!(py, "definition"))?;
            let name_obj = def.getattr(intern!(py, "name"))?;
            let name = name_obj.cast::<PyString>()?.to_str()?;
            let integer: bool = def.getattr(intern!(py, "integer"))?.extract()?;
            let value = m.getattr(intern!(py, "value"))?;
            let Some(fv) = field_value(&value, integer, uint)? else { continue };
            let labels = m.getattr(intern!(py, "labels"))?;
            let labels = labels.cast::<PyTuple>()?;
            // The items stay alive in `labels`, so borrowed &str views are valid here.
            let mut items: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = Vec::with_capacity(labels.len());
            for pair in labels.iter() {
                let pair = pair.cast::<PyTuple>()?;
                items.push((pair.get_item(0)?, pair.get_item(1)?));
            }
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
            enc.add_with_raw_key(name, &tags, &fv, Some(&raw_key));
        }
        enc.finish(&mut out, ts);
    }
    Ok(out)
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
        enc.add("intergas_state", &[("device", "boiler"), ("sensor", "flow")], &FieldValue::Str("say \"hi\"\\".into()));
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
