//! `gridtap._native`: the hot paths of gridtap. This file only registers; each wire format
//! lives in its own module.

use pyo3::prelude::*;

pub mod crc;
pub mod errors;
pub mod exposition;
pub mod goodwe;
pub mod intergas;
pub mod lineproto;
pub mod modbus;
pub mod listener;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DecodeError", py.get_type::<errors::DecodeError>())?;
    m.add("LengthError", py.get_type::<errors::LengthError>())?;
    m.add("ChecksumError", py.get_type::<errors::ChecksumError>())?;
    m.add("FormatError", py.get_type::<errors::FormatError>())?;
    m.add("EncodeError", py.get_type::<errors::EncodeError>())?;
    lineproto::register(m)?;
    intergas::register(m)?;
    goodwe::register(m)?;
    modbus::register(m)?;
    exposition::register(m)?;
    listener::register(m)?;
    Ok(())
}
