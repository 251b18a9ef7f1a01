//! Typed decode errors shared by every wire format.
//!
//! Python sees one hierarchy: `gridtap._native.DecodeError` and its subclasses, so a
//! caller can catch every malformed input with one `except` and still tell the cases apart.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;

create_exception!(_native, DecodeError, PyValueError, "Input bytes could not be decoded.");
create_exception!(_native, LengthError, DecodeError, "A frame or block has the wrong length.");
create_exception!(_native, ChecksumError, DecodeError, "A CRC or checksum did not match.");
create_exception!(_native, FormatError, DecodeError, "A frame's structure or content is invalid.");
create_exception!(_native, EncodeError, PyValueError, "A value cannot be encoded.");

/// A decode failure before it becomes a Python exception, so the pure-Rust code and its
/// `cargo test`s need no interpreter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Length(String),
    Checksum(String),
    Format(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Length(m) | Error::Checksum(m) | Error::Format(m) => f.write_str(m),
        }
    }
}

impl From<Error> for pyo3::PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Length(m) => LengthError::new_err(m),
            Error::Checksum(m) => ChecksumError::new_err(m),
            Error::Format(m) => FormatError::new_err(m),
        }
    }
}
