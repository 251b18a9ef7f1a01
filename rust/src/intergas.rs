//! Intergas HRE/IC2 service-port blocks (spec `intergas.md` §4–§13).
//!
//! Every reply is a fixed 32-byte block with no framing or checksum, so decoding is pure
//! arithmetic on byte offsets. The pure-Rust decoders return an ordered list of typed fields
//! (so `cargo test` needs no interpreter); the PyO3 wrappers turn that list into a `dict`
//! whose keys and values match `plugins/intergas/reference.py` exactly (the differential
//! test compares them on arbitrary input).

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::exceptions::PyKeyError;
use pyo3::types::{PyBool, PyDict, PyList, PyString};

use crate::errors::Error;

/// Every classic (HRE/IC2) reply is exactly this long.
pub const BLOCK_LEN: usize = 32;

/// Flag names of status byte 26 and byte 28, bit 0 (LSB) first (spec §6, normative).
pub const FLAGS1: [&str; 8] = [
    "gp_switch",
    "tap_switch",
    "roomtherm",
    "pump",
    "dwk",
    "alarm_status",
    "ch_cascade_relay",
    "opentherm",
];
pub const FLAGS2: [&str; 8] = [
    "gasvalve",
    "spark",
    "io_signal",
    "ch_ot_disabled",
    "low_water_pressure",
    "pressure_sensor",
    "burner_block",
    "grad_flag",
];

/// `V?` parameter names, byte 0..30 (spec §11). Case and the trailing dot matter.
pub const PARAMETERS: [&str; 31] = [
    "heater_on",
    "comfort_mode",
    "ch_set_max",
    "dhw_set",
    "eco_days",
    "comfort_set",
    "dhw_at_night",
    "ch_at_night",
    "param_1",
    "param_2",
    "param_3",
    "param_4",
    "param_5",
    "param_6",
    "param_7",
    "param_8",
    "param_9",
    "param_A",
    "param_b",
    "param_C",
    "param_c",
    "param_d",
    "param_E",
    "param_E.",
    "param_F",
    "param_H",
    "param_n",
    "param_o",
    "param_P",
    "param_r",
    "param_F.",
];

/// Display code (byte 24) → state name (spec §7). Open-ended: anything else is "unknown".
pub fn display_text(code: i32) -> &'static str {
    match code {
        0 => "opentherm",
        15 => "boiler_ext",
        24 => "frost",
        37 => "central_heating_rf",
        51 => "tapwater_int",
        85 => "sensortest",
        102 => "central_heating",
        103 => "central_heating_wait",
        104 => "central_heating_low",
        106 => "hp_error_recovery",
        126 => "standby",
        127 => "off",
        153 => "postrun_boiler",
        170 => "service",
        204 => "tapwater",
        230 => "starting_ch",
        231 => "postrun_ch",
        240 => "boiler_int",
        255 => "buffer",
        256..=511 => "fault",
        _ => "unknown",
    }
}

/// One decoded value. Floats, integers, booleans, text, and the flag map of `S?`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    F(f64),
    I(i64),
    B(bool),
    /// Borrowed for table texts (display states), owned for text read from the frame.
    S(Cow<'static, str>),
    Flags(Vec<(&'static str, u8)>),
}

/// A decoded block: field names in a fixed order with their values.
pub type Fields = Vec<(&'static str, Value)>;

/// Which command a block answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Status,
    Status2,
    Crc,
    Counters,
    Parameters,
    Revision,
}

impl Kind {
    /// The command name as written in the spec and on the CLI (`S?`, `S2`, `CRC`, `HN`, `V?`, `REV`).
    pub fn parse(name: &str) -> Result<Kind, Error> {
        Ok(match name {
            "S?" => Kind::Status,
            "S2" => Kind::Status2,
            "CRC" => Kind::Crc,
            "HN" => Kind::Counters,
            "V?" => Kind::Parameters,
            "REV" => Kind::Revision,
            other => return Err(Error::Format(format!("unknown Intergas block {other:?}"))),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Status => "S?",
            Kind::Status2 => "S2",
            Kind::Crc => "CRC",
            Kind::Counters => "HN",
            Kind::Parameters => "V?",
            Kind::Revision => "REV",
        }
    }
}

fn check_len(data: &[u8], what: &str) -> Result<(), Error> {
    if data.len() != BLOCK_LEN {
        return Err(Error::Length(format!(
            "Intergas {what} block must be {BLOCK_LEN} bytes, got {}",
            data.len()
        )));
    }
    Ok(())
}

fn i16le(d: &[u8], at: usize) -> i64 {
    i16::from_le_bytes([d[at], d[at + 1]]) as i64
}

fn u16le(d: &[u8], at: usize) -> i64 {
    u16::from_le_bytes([d[at], d[at + 1]]) as i64
}

/// int16le / 100 (spec §4 `f100`).
fn f100(d: &[u8], at: usize) -> f64 {
    i16le(d, at) as f64 / 100.0
}

fn hex(bytes: &[u8]) -> String {
    // A table lookup: one `format!` per byte cost more than the rest of the CRC block.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// The 16 flags of bytes 26 and 28. `reference_order` reproduces the seed exporter's
/// reversed reading (bit 7 first), which spec §6 shows to be a bug.
pub fn flags(b26: u8, b28: u8, reference_order: bool) -> Vec<(&'static str, u8)> {
    let bit = |byte: u8, i: usize| -> u8 {
        let shift = if reference_order { 7 - i } else { i };
        (byte >> shift) & 1
    };
    let mut out = Vec::with_capacity(16);
    for (i, name) in FLAGS1.iter().enumerate() {
        out.push((*name, bit(b26, i)));
    }
    for (i, name) in FLAGS2.iter().enumerate() {
        out.push((*name, bit(b28, i)));
    }
    out
}

/// `S?` main status (spec §5), fault override when byte 27 == 0x80 exactly.
pub fn decode_status(d: &[u8], reference_order: bool) -> Result<Fields, Error> {
    check_len(d, "S?")?;
    let fault_active = d[27] == 0x80;
    let displ_code = if fault_active {
        256 + d[29] as i64
    } else {
        d[24] as i64
    };
    Ok(vec![
        ("t1_aanvoer", Value::F(f100(d, 0))),
        ("t2_flow", Value::F(f100(d, 2))),
        ("t3_retour", Value::F(f100(d, 4))),
        ("t4_warmwater", Value::F(f100(d, 6))),
        ("t5_boiler", Value::F(f100(d, 8))),
        ("t6_buiten", Value::F(f100(d, 10))),
        ("ch_pressure", Value::F(f100(d, 12))),
        ("temp_set", Value::F(f100(d, 14))),
        ("fanspeed_set_rpm", Value::I(i16le(d, 16))),
        ("fanspeed_rpm", Value::I(i16le(d, 18))),
        ("fan_pwm_pct", Value::F(i16le(d, 20) as f64 / 10.0)),
        ("io_curr_uA", Value::F(f100(d, 22))),
        ("display_raw", Value::I(d[24] as i64)),
        ("fault_indicator", Value::I(d[27] as i64)),
        ("fault_active", Value::B(fault_active)),
        ("fault_code", Value::I(d[29] as i64)),
        ("displ_code", Value::I(displ_code)),
        (
            "display_text",
            Value::S(Cow::Borrowed(display_text(displ_code as i32))),
        ),
        ("status_flags1", Value::I(d[26] as i64)),
        ("status_flags2", Value::I(d[28] as i64)),
        ("flags", Value::Flags(flags(d[26], d[28], reference_order))),
    ])
}

/// `S2` extra status (spec §8). Pump PWM is reported unclamped.
pub fn decode_status2(d: &[u8]) -> Result<Fields, Error> {
    check_len(d, "S2")?;
    Ok(vec![
        ("tapflow_lpm", Value::F(f100(d, 0))),
        ("pump_pwm_pct", Value::F((200 - d[2] as i64) as f64 / 2.0)),
        ("ot_master_member_id", Value::I(d[3] as i64)),
        ("room_override_zone1", Value::F(f100(d, 4))),
        ("room_set_zone1", Value::F(f100(d, 6))),
        ("room_temp_zone1", Value::F(f100(d, 8))),
        ("room_override_zone2", Value::F(f100(d, 10))),
        ("room_set_zone2", Value::F(f100(d, 12))),
        ("room_temp_zone2", Value::F(f100(d, 14))),
        ("override_outside_temp", Value::F(f100(d, 16))),
        ("ot_product_version", Value::I(d[18] as i64)),
        ("ot_product_type", Value::I(d[19] as i64)),
    ])
}

/// `CRC` burner-controller diagnostics (spec §9).
pub fn decode_crc(d: &[u8]) -> Result<Fields, Error> {
    check_len(d, "CRC")?;
    let freq_raw = u16le(d, 6);
    let freq = if freq_raw == 0 {
        0.0
    } else {
        2000.0 / freq_raw as f64
    };
    Ok(vec![
        ("interrupt_time", Value::F(u16le(d, 0) as f64 / 5.0)),
        ("interrupt_load_pct", Value::F(u16le(d, 2) as f64 / 6.25)),
        ("main_load_pct", Value::F(u16le(d, 4) as f64 / 8.0)),
        ("net_frequency_hz", Value::F(freq)),
        (
            "voltage_reference_v",
            Value::F((u16le(d, 8) * 5) as f64 / 1024.0),
        ),
        ("checksum1", Value::S(hex(&d[24..28]).into())),
        ("checksum2", Value::S(hex(&d[28..32]).into())),
    ])
}

/// `HN` hours and counters (spec §10): wide counters keep their high byte at 28–31.
pub fn decode_counters(d: &[u8]) -> Result<Fields, Error> {
    check_len(d, "HN")?;
    let u32le = |at: usize| u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]) as i64;
    let gas_ch = u32le(16);
    let gas_dhw = u32le(20);
    let water = d[24] as i64 + 256 * d[25] as i64 + 65536 * d[28] as i64;
    Ok(vec![
        (
            "line_power_connected_hours",
            Value::I(u16le(d, 0) + 65536 * d[30] as i64),
        ),
        ("line_power_disconnect", Value::I(u16le(d, 2))),
        ("ch_function_hours", Value::I(u16le(d, 4))),
        ("dhw_function_hours", Value::I(u16le(d, 6))),
        ("burnerstarts", Value::I(u16le(d, 8) + 65536 * d[31] as i64)),
        ("ignition_failed", Value::I(u16le(d, 10))),
        ("flame_lost", Value::I(u16le(d, 12))),
        ("reset", Value::I(u16le(d, 14))),
        ("gasmeter_ch_raw", Value::I(gas_ch)),
        ("gasmeter_dhw_raw", Value::I(gas_dhw)),
        ("watermeter_raw", Value::I(water)),
        (
            "burnerstarts_dhw",
            Value::I(d[26] as i64 + 256 * d[27] as i64 + 65536 * d[29] as i64),
        ),
        ("gasmeter_ch_m3", Value::F(gas_ch as f64 / 10000.0)),
        ("gasmeter_dhw_m3", Value::F(gas_dhw as f64 / 10000.0)),
        ("watermeter_m3", Value::F(water as f64 / 10000.0)),
    ])
}

/// `V?` parameters (spec §11): bytes 0..30 as signed bytes; byte 31 unused.
pub fn decode_parameters(d: &[u8]) -> Result<Fields, Error> {
    check_len(d, "V?")?;
    Ok(PARAMETERS
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, Value::I(d[i] as i8 as i64)))
        .collect())
}

/// `REV` release strings (spec §13). Text bytes map 1:1 to code points (Latin-1).
pub fn decode_revision(d: &[u8]) -> Result<Fields, Error> {
    check_len(d, "REV")?;
    Ok(vec![
        ("hardware_release", Value::S(latin1(&d[0..18]).into())),
        ("software_release", Value::S(latin1(&d[18..23]).into())),
        ("separator", Value::S(latin1(&d[23..24]).into())),
        ("rom_checksum1", Value::S(hex(&d[24..28]).into())),
        ("rom_checksum2", Value::S(hex(&d[28..32]).into())),
        ("controller_type", Value::S(latin1(&d[2..3]).into())),
    ])
}

/// Decode any block by kind.
pub fn decode(kind: Kind, d: &[u8], reference_order: bool) -> Result<Fields, Error> {
    match kind {
        Kind::Status => decode_status(d, reference_order),
        Kind::Status2 => decode_status2(d),
        Kind::Crc => decode_crc(d),
        Kind::Counters => decode_counters(d),
        Kind::Parameters => decode_parameters(d),
        Kind::Revision => decode_revision(d),
    }
}

// ------------------------------------------------------------------ Python bindings

/// One empty-valued dict per block kind (and one for the flags), made once. Each decode
/// copies its template and overwrites the values: a copy of a compact dict duplicates the
/// key table in one step, so no key is created, hashed or inserted with table growth.
static TEMPLATES: [PyOnceLock<Py<PyDict>>; 6] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];
static FLAG_TEMPLATE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static KEYS: [PyOnceLock<Vec<Py<PyString>>>; 6] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];
static FLAG_KEYS: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();

fn interned(py: Python<'_>, names: impl Iterator<Item = &'static str>) -> Vec<Py<PyString>> {
    names.map(|k| PyString::intern(py, k).unbind()).collect()
}

fn template(py: Python<'_>, keys: &[Py<PyString>]) -> PyResult<Py<PyDict>> {
    let dict = PyDict::new(py);
    for key in keys {
        dict.set_item(key.bind(py), py.None())?;
    }
    Ok(dict.unbind())
}

fn to_dict<'py>(py: Python<'py>, kind: Kind, fields: Fields) -> PyResult<Bound<'py, PyDict>> {
    let keys = KEYS[kind as usize].get_or_init(py, || interned(py, fields.iter().map(|(k, _)| *k)));
    debug_assert_eq!(keys.len(), fields.len());
    let dict = TEMPLATES[kind as usize]
        .get_or_try_init(py, || template(py, keys))?
        .bind(py)
        .copy()?;
    for (key, (_, value)) in keys.iter().zip(fields) {
        let key = key.bind(py);
        match value {
            Value::F(v) => dict.set_item(key, v)?,
            Value::I(v) => dict.set_item(key, v)?,
            Value::B(v) => dict.set_item(key, v)?,
            Value::S(v) => dict.set_item(key, v)?,
            Value::Flags(list) => {
                let names =
                    FLAG_KEYS.get_or_init(py, || interned(py, list.iter().map(|(k, _)| *k)));
                let sub = FLAG_TEMPLATE
                    .get_or_try_init(py, || template(py, names))?
                    .bind(py)
                    .copy()?;
                for (name, (_, bit)) in names.iter().zip(list) {
                    sub.set_item(name.bind(py), bit)?;
                }
                dict.set_item(key, sub)?
            }
        }
    }
    Ok(dict)
}

/// A decoded block as Python sees it: a read-only mapping (``block["t1_aanvoer"]``,
/// ``.items()``, ``.to_dict()``) over values kept in Rust.
///
/// Why not a dict: building ~30 Python objects per block is most of the cost of decoding,
/// and the metric mapping reads each value once; here a value becomes a Python object only
/// when it is read. It compares equal to the reference decoder's dict.
#[pyclass(frozen, mapping, name = "IntergasBlock", module = "gridtap._native")]
pub struct Block {
    kind: Kind,
    fields: Fields,
}

fn value_object<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::F(v) => v.into_pyobject(py)?.into_any(),
        Value::I(v) => v.into_pyobject(py)?.into_any(),
        Value::B(v) => PyBool::new(py, *v).to_owned().into_any(),
        Value::S(v) => PyString::new(py, v.as_ref()).into_any(),
        Value::Flags(list) => {
            let names = FLAG_KEYS.get_or_init(py, || interned(py, list.iter().map(|(k, _)| *k)));
            let sub = FLAG_TEMPLATE.get_or_try_init(py, || template(py, names))?.bind(py).copy()?;
            for (name, (_, bit)) in names.iter().zip(list) {
                sub.set_item(name.bind(py), bit)?;
            }
            sub.into_any()
        }
    })
}

impl Block {
    fn find(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[pymethods]
impl Block {
    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        match self.find(key) {
            Some(v) => value_object(py, v),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    fn __len__(&self) -> usize {
        self.fields.len()
    }

    fn __contains__(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py).into_any().try_iter().map(|it| it.into_any())
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(&self, py: Python<'py>, key: &str, default: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        match self.find(key) {
            Some(v) => value_object(py, v),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn keys<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        PyList::new(py, self.fields.iter().map(|(k, _)| *k)).expect("a list of str")
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (_, v) in &self.fields {
            out.append(value_object(py, v)?)?;
        }
        Ok(out)
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (k, v) in &self.fields {
            out.append((*k, value_object(py, v)?))?;
        }
        Ok(out)
    }

    /// A plain dict with the same keys and values as the pure-Python reference decoder.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        to_dict(py, self.kind, self.fields.clone())
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        if let Ok(other) = other.cast::<Block>() {
            return self.to_dict(py)?.eq(other.get().to_dict(py)?);
        }
        self.to_dict(py)?.eq(other)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("IntergasBlock({})", self.to_dict(py)?.repr()?))
    }

    /// The command this block answers (`S?`, `S2`, `CRC`, `HN`, `V?`, `REV`).
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.name()
    }
}

fn block(py: Python<'_>, kind: Kind, fields: Fields) -> PyResult<Bound<'_, Block>> {
    Bound::new(py, Block { kind, fields })
}

/// Decode any block by its command name (`S?`, `S2`, `CRC`, `HN`, `V?`, `REV`).
#[pyfunction(name = "intergas_decode_block")]
#[pyo3(signature = (kind, data, reference_flag_order = false))]
fn py_decode_block<'py>(
    py: Python<'py>,
    kind: &str,
    data: &[u8],
    reference_flag_order: bool,
) -> PyResult<Bound<'py, Block>> {
    let kind = Kind::parse(kind)?;
    block(py, kind, decode(kind, data, reference_flag_order)?)
}

/// The state name of a display code (256+ = fault, otherwise "unknown" if not in the table).
#[pyfunction(name = "intergas_display_text")]
fn py_display_text(code: i64) -> &'static str {
    i32::try_from(code).map(display_text).unwrap_or("unknown")
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Block>()?;
    m.add_function(wrap_pyfunction!(py_decode_block, m)?)?;
    m.add_function(wrap_pyfunction!(py_display_text, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn get<'a>(fields: &'a Fields, name: &str) -> &'a Value {
        &fields
            .iter()
            .find(|(k, _)| *k == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1
    }

    // Meewis idle capture (spec §16), written out here so cargo test needs no shared folder.
    const MEEWIS: &str = "bc 0f cd 0f d4 0f 4e 0d 14 ec 14 ec 95 00 00 00 00 00 00 00 00 00 00 00 7e 00 80 40 20 ff 00 ff";

    #[test]
    fn status_idle_capture() {
        let f = decode_status(&unhex(MEEWIS), false).unwrap();
        assert_eq!(get(&f, "t1_aanvoer"), &Value::F(40.28));
        assert_eq!(get(&f, "t5_boiler"), &Value::F(-51.0));
        assert_eq!(get(&f, "ch_pressure"), &Value::F(1.49));
        assert_eq!(get(&f, "displ_code"), &Value::I(126));
        assert_eq!(get(&f, "display_text"), &Value::S("standby".into()));
        assert_eq!(flags_on(&f), vec!["opentherm", "pressure_sensor"]);
        let reference = decode_status(&unhex(MEEWIS), true).unwrap();
        assert_eq!(flags_on(&reference), vec!["gp_switch", "io_signal"]);
    }

    /// Names of the flags that are set, in bit order.
    fn flags_on(fields: &Fields) -> Vec<&'static str> {
        let Value::Flags(list) = get(fields, "flags") else {
            panic!("flags is not a flag list")
        };
        list.iter().filter(|(_, bit)| *bit == 1).map(|(name, _)| *name).collect()
    }

    #[test]
    fn fault_override_only_on_exact_0x80() {
        let mut d = unhex(MEEWIS);
        d[27] = 0x80;
        d[29] = 10;
        let f = decode_status(&d, false).unwrap();
        assert_eq!(get(&f, "displ_code"), &Value::I(266));
        assert_eq!(get(&f, "display_text"), &Value::S("fault".into()));
        d[27] = 0xC0;
        assert_eq!(
            get(&decode_status(&d, false).unwrap(), "displ_code"),
            &Value::I(126)
        );
    }

    #[test]
    fn f100_is_twos_complement() {
        let mut d = vec![0u8; 32];
        d[0] = 0xff;
        d[1] = 0xff;
        d[2] = 0x00;
        d[3] = 0x80;
        let f = decode_status(&d, false).unwrap();
        assert_eq!(get(&f, "t1_aanvoer"), &Value::F(-0.01));
        assert_eq!(get(&f, "t2_flow"), &Value::F(-327.68));
    }

    #[test]
    fn counters_wide_bytes() {
        let d = unhex("3b 48 16 04 09 0f f6 00 d4 cc 04 00 01 00 03 00 58 70 35 03 e6 35 4f 00 09 e3 f4 37 0b 00 01 02");
        let f = decode_counters(&d).unwrap();
        assert_eq!(
            get(&f, "line_power_connected_hours"),
            &Value::I(18491 + 65536)
        );
        assert_eq!(get(&f, "burnerstarts"), &Value::I(52436 + 2 * 65536));
        assert_eq!(get(&f, "gasmeter_ch_m3"), &Value::F(5383.3816));
        assert_eq!(get(&f, "watermeter_m3"), &Value::F(77.9017));
        assert_eq!(get(&f, "burnerstarts_dhw"), &Value::I(14324));
    }

    #[test]
    fn crc_and_parameters_and_rev() {
        let d = unhex("e8 03 51 03 c9 00 28 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 12 34 56 78 9a bc de f0");
        let f = decode_crc(&d).unwrap();
        assert_eq!(get(&f, "interrupt_load_pct"), &Value::F(135.84));
        assert_eq!(get(&f, "net_frequency_hz"), &Value::F(50.0));
        assert_eq!(get(&f, "voltage_reference_v"), &Value::F(2.5));
        assert_eq!(get(&f, "checksum2"), &Value::S("9abcdef0".into()));
        assert_eq!(
            get(&decode_crc(&[0u8; 32]).unwrap(), "net_frequency_hz"),
            &Value::F(0.0)
        );
        let mut v = [0u8; 32];
        v[13] = 0xf9;
        v[23] = 1;
        let p = decode_parameters(&v).unwrap();
        assert_eq!(p.len(), 31);
        assert_eq!(get(&p, "param_6"), &Value::I(-7));
        assert_eq!(get(&p, "param_E."), &Value::I(1));
        let rev = b"ic3mk1   *P190517*V2.53-\x49\x6b\xb6\x94\xd2\x5f\x2d\xa0";
        let r = decode_revision(rev).unwrap();
        assert_eq!(
            get(&r, "hardware_release"),
            &Value::S("ic3mk1   *P190517*".into())
        );
        assert_eq!(get(&r, "software_release"), &Value::S("V2.53".into()));
        assert_eq!(get(&r, "rom_checksum1"), &Value::S("496bb694".into()));
        assert_eq!(get(&r, "controller_type"), &Value::S("3".into()));
    }

    #[test]
    fn s2_pump_pwm_and_sentinel() {
        let mut d = [0u8; 32];
        d[2] = 0xaa;
        d[16] = 0xff;
        d[17] = 0x7f;
        let f = decode_status2(&d).unwrap();
        assert_eq!(get(&f, "pump_pwm_pct"), &Value::F(15.0));
        assert_eq!(get(&f, "override_outside_temp"), &Value::F(327.67));
        d[2] = 255;
        assert_eq!(
            get(&decode_status2(&d).unwrap(), "pump_pwm_pct"),
            &Value::F(-27.5)
        );
    }

    #[test]
    fn wrong_lengths_are_length_errors() {
        for n in [0usize, 31, 33, 1000] {
            let d = vec![0u8; n];
            for kind in ["S?", "S2", "CRC", "HN", "V?", "REV"] {
                let err = decode(Kind::parse(kind).unwrap(), &d, false).unwrap_err();
                assert!(matches!(err, Error::Length(_)), "{kind} {n}: {err:?}");
            }
        }
        assert!(matches!(Kind::parse("XX"), Err(Error::Format(_))));
    }

    #[test]
    fn display_table_is_open_ended() {
        assert_eq!(display_text(0), "opentherm");
        assert_eq!(display_text(231), "postrun_ch");
        assert_eq!(display_text(1), "unknown");
        assert_eq!(display_text(266), "fault");
    }
}
