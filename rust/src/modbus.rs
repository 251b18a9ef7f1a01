//! Modbus register blocks (Stiebel Eltron ISG, spec `isg.md` §2): a register map compiled
//! once, then one call per block read that returns every value.
//!
//! The map is a list of blocks; each block is the register count of one read request and the
//! outputs computed from it. An output reads one register (or a LOW/HIGH pair) of that block,
//! applies the sentinels on the raw 16-bit value *before* any sign conversion or scaling
//! (0x8000 is "not available" everywhere), and scales by an exact integer fraction, so
//! `raw * mul / div` is rounded once (203 / 10 = 20.3, never 20.300000000000004).
//!
//! Outputs:
//! * `value`: one register, signed (int16) or not, `absent` raw values (0x8000 always, 0x9000
//!   where "off" means no value, the LWZ sensor-fault values); `float` keeps whole results floats;
//! * `bit`: bit `n` of its own register (`(raw >> n) & 1`);
//! * `pair`: `LOW + factor * HIGH` (energy totals); either half 0x8000 makes it absent;
//! * `code`: a raw value looked up in a table (0/1 flags where anything else is unknown, the
//!   0x9000 "off" switch, sensor-fault codes).
//!
//! `plugins/isg/reference.py` is the pure-Python reference with the same semantics; the
//! differential test compares the two on arbitrary maps and registers.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::errors::Error;

/// The ISG's "object not available" raw value (spec §2.1).
pub const NOT_AVAILABLE: u16 = 0x8000;
/// A Modbus read request carries at most 125 registers.
pub const MAX_BLOCK: usize = 125;

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Value { reg: usize, signed: bool, mul: i64, div: i64, absent: Vec<u16>, float: bool },
    Bit { reg: usize, bit: u8 },
    Pair { lo: usize, hi: usize, factor: i64, mul: i64, div: i64, float: bool },
    Code { reg: usize, table: Vec<(u16, i64)>, default: Option<i64> },
}

/// One decoded output: absent (sentinel, unknown code) or a number. Integers stay integers
/// when the scale has no divisor, so counters and codes are exact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Out {
    Absent,
    Int(i64),
    Float(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockMap {
    pub len: usize,
    pub ops: Vec<Op>,
}

/// `x * mul / div`, an integer when `div` is 1 unless `float` asks for a float (a metric whose
/// samples must all be floats, so a line-protocol field never changes type).
fn scaled(x: i64, mul: i64, div: i64, float: bool) -> Out {
    if div == 1 && !float {
        Out::Int(x * mul)
    } else {
        Out::Float((x as f64 * mul as f64) / div as f64)
    }
}

impl Op {
    fn registers(&self) -> Vec<usize> {
        match self {
            Op::Value { reg, .. } | Op::Bit { reg, .. } | Op::Code { reg, .. } => vec![*reg],
            Op::Pair { lo, hi, .. } => vec![*lo, *hi],
        }
    }

    /// Checked when the map is built, so decoding never indexes out of range.
    fn check(&self, len: usize) -> Result<(), Error> {
        for r in self.registers() {
            if r >= len {
                return Err(Error::Format(format!("output reads register {r} of a {len}-register block")));
            }
        }
        let (scale, factor, bit) = match self {
            Op::Value { mul, div, .. } => (Some((*mul, *div)), 1, 0),
            Op::Pair { mul, div, factor, .. } => (Some((*mul, *div)), *factor, 0),
            Op::Bit { bit, .. } => (None, 1, *bit),
            Op::Code { .. } => (None, 1, 0),
        };
        // Bounded so `raw * mul` (and a pair's total times mul) never overflows an i64.
        if let Some((mul, div)) = scale {
            if div < 1 || mul == 0 || mul.unsigned_abs() > 1 << 31 || div > 1 << 31 {
                return Err(Error::Format(format!("scale {mul}/{div} is not a usable fraction")));
            }
        }
        if !(1..=1 << 15).contains(&factor) {
            return Err(Error::Format(format!("pair factor {factor} out of range")));
        }
        if bit > 15 {
            return Err(Error::Format(format!("bit {bit} of a 16-bit register")));
        }
        Ok(())
    }

    #[inline]
    fn apply(&self, regs: &[u16]) -> Out {
        match self {
            Op::Value { reg, signed, mul, div, absent, float } => {
                let raw = regs[*reg];
                if raw == NOT_AVAILABLE || absent.contains(&raw) {
                    return Out::Absent;
                }
                let x = if *signed { raw as i16 as i64 } else { raw as i64 };
                scaled(x, *mul, *div, *float)
            }
            Op::Bit { reg, bit } => {
                let raw = regs[*reg];
                if raw == NOT_AVAILABLE {
                    Out::Absent
                } else {
                    Out::Int(((raw >> bit) & 1) as i64)
                }
            }
            Op::Pair { lo, hi, factor, mul, div, float } => {
                let (l, h) = (regs[*lo], regs[*hi]);
                if l == NOT_AVAILABLE || h == NOT_AVAILABLE {
                    return Out::Absent;
                }
                scaled(l as i64 + factor * h as i64, *mul, *div, *float)
            }
            Op::Code { reg, table, default } => {
                let raw = regs[*reg];
                if raw == NOT_AVAILABLE {
                    return Out::Absent;
                }
                match table.iter().find(|(r, _)| *r == raw) {
                    Some((_, code)) => Out::Int(*code),
                    None => default.map_or(Out::Absent, Out::Int),
                }
            }
        }
    }
}

impl BlockMap {
    pub fn new(len: usize, ops: Vec<Op>) -> Result<Self, Error> {
        if len == 0 || len > MAX_BLOCK {
            return Err(Error::Format(format!("a block is 1-{MAX_BLOCK} registers, not {len}")));
        }
        for op in &ops {
            op.check(len)?;
        }
        Ok(BlockMap { len, ops })
    }

    /// Every output of one block, in map order.
    pub fn decode(&self, regs: &[u16]) -> Result<Vec<Out>, Error> {
        if regs.len() != self.len {
            return Err(Error::Length(format!(
                "block has {} registers, the map expects {}",
                regs.len(),
                self.len
            )));
        }
        Ok(self.ops.iter().map(|op| op.apply(regs)).collect())
    }
}

/// Big-endian register bytes (as on the wire) to registers.
pub fn registers_from_bytes(data: &[u8]) -> Result<Vec<u16>, Error> {
    if !data.len().is_multiple_of(2) {
        return Err(Error::Length(format!("{} bytes is not a whole number of registers", data.len())));
    }
    Ok(data.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect())
}

// --- Python side ----------------------------------------------------------------------------

/// What `metrics()` makes of one output: the MetricDef, the label tuple and, for state sets,
/// the state name of each code.
struct Template {
    definition: Py<PyAny>,
    labels: Py<PyAny>,
    words: Option<Words>,
}

/// State names by code, and the name of any other code.
type Words = (Vec<(i64, Py<PyString>)>, Py<PyString>);

/// A register map compiled once: `ModbusMap(blocks, metric_type=None)`, `blocks` a list of
/// `(register_count, [output, ...])` where an output is a dict (see the module docs and
/// `plugins/isg/reference.py`). `decode(i, registers)` returns the outputs of block `i`;
/// `metrics(i, registers)` the samples of the outputs that name a metric.
#[pyclass(frozen, name = "ModbusMap", module = "gridtap._native")]
pub struct PyModbusMap {
    blocks: Vec<BlockMap>,
    templates: Vec<Vec<Option<Template>>>,
    metric_type: Option<Py<PyType>>,
}

fn bad(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

fn get_req<'py, T: FromPyObjectOwned<'py>>(spec: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
    match spec.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|_| bad(format!("output key {key:?} has the wrong type"))),
        None => Err(bad(format!("output is missing {key:?}"))),
    }
}

fn get_opt<'py, T: FromPyObjectOwned<'py>>(spec: &Bound<'py, PyDict>, key: &str, default: T) -> PyResult<T> {
    match spec.get_item(key)? {
        Some(v) if !v.is_none() => {
            v.extract::<T>().map_err(|_| bad(format!("output key {key:?} has the wrong type")))
        }
        _ => Ok(default),
    }
}

fn parse_op(spec: &Bound<'_, PyDict>) -> PyResult<Op> {
    let kind: String = get_req(spec, "op")?;
    Ok(match kind.as_str() {
        "value" => Op::Value {
            reg: get_req(spec, "reg")?,
            signed: get_opt(spec, "signed", false)?,
            mul: get_opt(spec, "mul", 1)?,
            div: get_opt(spec, "div", 1)?,
            absent: get_opt(spec, "absent", Vec::new())?,
            float: get_opt(spec, "float", false)?,
        },
        "bit" => Op::Bit { reg: get_req(spec, "reg")?, bit: get_req(spec, "bit")? },
        "pair" => Op::Pair {
            lo: get_req(spec, "lo")?,
            hi: get_req(spec, "hi")?,
            factor: get_opt(spec, "factor", 1000)?,
            mul: get_opt(spec, "mul", 1)?,
            div: get_opt(spec, "div", 1)?,
            float: get_opt(spec, "float", false)?,
        },
        "code" => {
            let table: Vec<(u16, i64)> = match spec.get_item("table")? {
                Some(t) => {
                    let t = t.cast::<PyDict>().map_err(|_| bad("code table must be a dict"))?;
                    let mut out = Vec::with_capacity(t.len());
                    for (k, v) in t.iter() {
                        let raw = k.extract::<u16>().map_err(|_| bad("code table keys are raw values 0..65535"))?;
                        out.push((raw, v.extract::<i64>().map_err(|_| bad("code table values are integers"))?));
                    }
                    out
                }
                None => Vec::new(),
            };
            Op::Code { reg: get_req(spec, "reg")?, table, default: get_opt(spec, "default", None)? }
        }
        other => return Err(bad(format!("unknown output op {other:?}"))),
    })
}

fn parse_template(py: Python<'_>, spec: &Bound<'_, PyDict>) -> PyResult<Option<Template>> {
    let Some(metric) = spec.get_item("metric")? else { return Ok(None) };
    if metric.is_none() {
        return Ok(None);
    }
    let (definition, labels): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
        metric.extract().map_err(|_| bad("output 'metric' must be (definition, labels)"))?;
    if !labels.is_instance_of::<PyTuple>() {
        return Err(bad("output labels must be a tuple of (name, value) pairs"));
    }
    let words = match spec.get_item("words")? {
        Some(w) if !w.is_none() => {
            let w = w.cast::<PyDict>().map_err(|_| bad("output 'words' must be a dict"))?;
            let mut table = Vec::with_capacity(w.len());
            for (k, v) in w.iter() {
                let name = v.cast::<PyString>().map_err(|_| bad("state names are strings"))?;
                let code = k.extract::<i64>().map_err(|_| bad("state codes are integers"))?;
                table.push((code, name.clone().unbind()));
            }
            let other: String = get_opt(spec, "other_word", "unknown".to_owned())?;
            Some((table, PyString::intern(py, &other).unbind()))
        }
        _ => None,
    };
    Ok(Some(Template { definition: definition.unbind(), labels: labels.unbind(), words }))
}

/// Registers from `bytes`/`bytearray` (big-endian pairs) or a sequence of ints 0..65535.
fn registers_arg(value: &Bound<'_, PyAny>) -> Result<Vec<u16>, PyErr> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(registers_from_bytes(b.as_bytes())?);
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(registers_from_bytes(&b.to_vec())?);
    }
    let not_register = |i: usize| Error::Format(format!("register {i} is not an integer 0..65535"));
    if let Ok(list) = value.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            if item.is_instance_of::<PyBool>() {
                return Err(not_register(i).into());
            }
            out.push(item.extract::<u16>().map_err(|_| not_register(i))?);
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    let iter = value.try_iter().map_err(|_| Error::Format("registers must be bytes or a sequence of ints".into()))?;
    for (i, item) in iter.enumerate() {
        if i > MAX_BLOCK {
            return Err(Error::Length(format!("more than {MAX_BLOCK} registers")).into());
        }
        let item = item?;
        if item.is_instance_of::<PyBool>() {
            return Err(not_register(i).into());
        }
        out.push(item.extract::<u16>().map_err(|_| not_register(i))?);
    }
    Ok(out)
}

fn out_object<'py>(py: Python<'py>, out: Out) -> PyResult<Bound<'py, PyAny>> {
    Ok(match out {
        Out::Absent => py.None().into_bound(py),
        Out::Int(v) => v.into_pyobject(py)?.into_any(),
        Out::Float(v) => v.into_pyobject(py)?.into_any(),
    })
}

static TUPLE_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl PyModbusMap {
    fn block(&self, index: usize) -> PyResult<&BlockMap> {
        self.blocks
            .get(index)
            .ok_or_else(|| Error::Format(format!("no block {index} in a {}-block map", self.blocks.len())).into())
    }
}

#[pymethods]
impl PyModbusMap {
    #[new]
    #[pyo3(signature = (blocks, metric_type = None))]
    fn new(py: Python<'_>, blocks: &Bound<'_, PyAny>, metric_type: Option<Bound<'_, PyType>>) -> PyResult<Self> {
        let mut maps = Vec::new();
        let mut templates = Vec::new();
        for (i, block) in blocks.try_iter()?.enumerate() {
            let block = block?;
            let (len, outputs): (usize, Bound<'_, PyAny>) =
                block.extract().map_err(|_| bad(format!("block {i}: expected (register_count, outputs)")))?;
            let mut ops = Vec::new();
            let mut temps = Vec::new();
            for (j, spec) in outputs.try_iter()?.enumerate() {
                let spec = spec?;
                let spec = spec.cast::<PyDict>().map_err(|_| bad(format!("block {i} output {j}: expected a dict")))?;
                ops.push(parse_op(spec).map_err(|e| bad(format!("block {i} output {j}: {e}")))?);
                temps.push(parse_template(py, spec).map_err(|e| bad(format!("block {i} output {j}: {e}")))?);
            }
            maps.push(BlockMap::new(len, ops).map_err(|e| bad(format!("block {i}: {e}")))?);
            templates.push(temps);
        }
        if templates.iter().flatten().any(|t| t.is_some()) && metric_type.is_none() {
            return Err(bad("outputs name metrics: give metric_type"));
        }
        Ok(PyModbusMap { blocks: maps, templates, metric_type: metric_type.map(|t| t.unbind()) })
    }

    /// Number of blocks.
    fn __len__(&self) -> usize {
        self.blocks.len()
    }

    /// Register count of block `index`.
    fn block_length(&self, index: usize) -> PyResult<usize> {
        Ok(self.block(index)?.len)
    }

    /// Every output of block `index` (None where absent), in map order.
    fn decode<'py>(&self, py: Python<'py>, index: usize, registers: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let block = self.block(index)?;
        let regs = registers_arg(registers)?;
        let outs = block.decode(&regs)?;
        let list = PyList::empty(py);
        for out in outs {
            list.append(out_object(py, out)?)?;
        }
        Ok(list)
    }

    /// Samples (`metric_type(definition, value, labels)`) of the outputs of block `index` that
    /// name a metric and are present; state-set outputs carry their state name.
    fn metrics<'py>(&self, py: Python<'py>, index: usize, registers: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let block = self.block(index)?;
        let regs = registers_arg(registers)?;
        let outs = block.decode(&regs)?;
        let list = PyList::empty(py);
        let Some(metric_type) = &self.metric_type else { return Ok(list) };
        let metric_type = metric_type.bind(py);
        let tuple_new = TUPLE_NEW.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.get_type::<PyTuple>().getattr("__new__")?.unbind())
        })?;
        let tuple_new = tuple_new.bind(py);
        for (out, template) in outs.into_iter().zip(&self.templates[index]) {
            let Some(t) = template else { continue };
            let value = match (out, &t.words) {
                (Out::Absent, _) => continue,
                (Out::Int(code), Some((table, other))) => {
                    let word = table.iter().find(|(c, _)| *c == code).map_or(other, |(_, w)| w);
                    word.bind(py).clone().into_any()
                }
                (out, _) => out_object(py, out)?,
            };
            let fields = PyTuple::new(py, [t.definition.bind(py).clone(), value, t.labels.bind(py).clone()])?;
            list.append(tuple_new.call1((metric_type, fields))?)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        let outputs: usize = self.blocks.iter().map(|b| b.ops.len()).sum();
        format!("ModbusMap({} blocks, {} outputs)", self.blocks.len(), outputs)
    }
}

/// Registers of a big-endian register dump (`gridtap decode isg FILE --address N`).
#[pyfunction]
fn modbus_registers(data: &[u8]) -> PyResult<Vec<u16>> {
    Ok(registers_from_bytes(data)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyModbusMap>()?;
    m.add_function(wrap_pyfunction!(modbus_registers, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(reg: usize, signed: bool, mul: i64, div: i64) -> Op {
        Op::Value { reg, signed, mul, div, absent: vec![], float: false }
    }

    #[test]
    fn type_2_is_signed_tenths_and_sentinel_is_checked_raw() {
        let m = BlockMap::new(3, vec![value(0, true, 1, 10), value(1, true, 1, 10), value(2, true, 1, 10)]).unwrap();
        let out = m.decode(&[203, 0xFFCE, 0x8000]).unwrap();
        assert_eq!(out, vec![Out::Float(20.3), Out::Float(-5.0), Out::Absent]);
    }

    #[test]
    fn type_7_bar_to_pascals_is_exact() {
        // 1.21 bar (raw 121, type 7) = 121000 Pa: mul 1000 / div 1 keeps it an integer.
        let m = BlockMap::new(1, vec![value(0, true, 1000, 1)]).unwrap();
        assert_eq!(m.decode(&[121]).unwrap(), vec![Out::Int(121_000)]);
        let float = Op::Value { reg: 0, signed: true, mul: 1000, div: 1, absent: vec![], float: true };
        assert_eq!(BlockMap::new(1, vec![float]).unwrap().decode(&[121]).unwrap(), vec![Out::Float(121_000.0)]);
    }

    #[test]
    fn off_value_and_unsigned() {
        let off = Op::Value { reg: 0, signed: true, mul: 1, div: 10, absent: vec![0x9000], float: false };
        let switch = Op::Code { reg: 0, table: vec![(0x9000, 0)], default: Some(1) };
        let m = BlockMap::new(2, vec![off.clone(), switch.clone(), value(1, false, 1, 1)]).unwrap();
        assert_eq!(m.decode(&[0x9000, 65535]).unwrap(), vec![Out::Absent, Out::Int(0), Out::Int(65535)]);
        assert_eq!(m.decode(&[450, 7]).unwrap(), vec![Out::Float(45.0), Out::Int(1), Out::Int(7)]);
        assert_eq!(m.decode(&[0x8000, 7]).unwrap()[..2], [Out::Absent, Out::Absent]);
    }

    #[test]
    fn bits_come_from_their_own_register() {
        let ops = vec![Op::Bit { reg: 0, bit: 1 }, Op::Bit { reg: 3, bit: 0 }, Op::Bit { reg: 4, bit: 1 }];
        let m = BlockMap::new(5, ops).unwrap();
        assert_eq!(m.decode(&[0b10, 0, 0, 0b1, 0b10]).unwrap(), vec![Out::Int(1), Out::Int(1), Out::Int(1)]);
        assert_eq!(m.decode(&[0, 0xFFFF, 0xFFFF, 0, 0]).unwrap(), vec![Out::Int(0), Out::Int(0), Out::Int(0)]);
    }

    #[test]
    fn pairs_are_low_plus_1000_high_and_absent_with_either_half() {
        let pair = Op::Pair { lo: 0, hi: 1, factor: 1000, mul: 3_600_000, div: 1, float: false };
        let m = BlockMap::new(2, vec![pair]).unwrap();
        assert_eq!(m.decode(&[341, 44]).unwrap(), vec![Out::Int(44_341 * 3_600_000)]);
        assert_eq!(m.decode(&[341, 0x8000]).unwrap(), vec![Out::Absent]);
        assert_eq!(m.decode(&[0x8000, 44]).unwrap(), vec![Out::Absent]);
    }

    #[test]
    fn codes_unknown_values_are_absent() {
        let flag = Op::Code { reg: 0, table: vec![(0, 0), (1, 1)], default: None };
        let m = BlockMap::new(1, vec![flag]).unwrap();
        assert_eq!(m.decode(&[1]).unwrap(), vec![Out::Int(1)]);
        assert_eq!(m.decode(&[2]).unwrap(), vec![Out::Absent]);
    }

    #[test]
    fn malformed_maps_and_blocks_are_errors() {
        assert!(matches!(BlockMap::new(0, vec![]), Err(Error::Format(_))));
        assert!(matches!(BlockMap::new(126, vec![]), Err(Error::Format(_))));
        assert!(matches!(BlockMap::new(2, vec![value(2, false, 1, 1)]), Err(Error::Format(_))));
        assert!(matches!(BlockMap::new(2, vec![value(0, false, 1, 0)]), Err(Error::Format(_))));
        assert!(matches!(BlockMap::new(1, vec![Op::Bit { reg: 0, bit: 16 }]), Err(Error::Format(_))));
        let m = BlockMap::new(2, vec![value(1, false, 1, 1)]).unwrap();
        assert!(matches!(m.decode(&[1]), Err(Error::Length(_))));
        assert!(matches!(m.decode(&[1, 2, 3]), Err(Error::Length(_))));
        assert!(matches!(registers_from_bytes(&[1, 2, 3]), Err(Error::Length(_))));
        assert_eq!(registers_from_bytes(&[0x12, 0x34, 0x80, 0x00]).unwrap(), vec![0x1234, 0x8000]);
    }
}
