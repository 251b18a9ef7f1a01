//! Goodwe SEMS-portal frames: stream splitting, CRC, AES-128-CBC and register dumps.
//!
//! A Goodwe Wi-Fi dongle uploads `POSTGW` frames to the SEMS cloud and gets `GW` frames
//! back (spec: shared/specs/goodwe.md). The proxy sits in between, so this module must
//! cut a TCP byte stream into frames (partial reads, several frames per read, junk, the
//! bare `01 02` keepalive) and decode one frame in one call: check the CRC in the byte
//! order of its direction, split the envelope, decrypt with the fixed all-0xFF key, and
//! parse the cleartext as a list of Modbus register blocks, so metrics are looked up by
//! register number and any block order decodes.
//!
//! Everything above the `python` section is plain Rust so `cargo test` needs no Python.

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use crate::crc::crc16_modbus;
use crate::errors::Error;

/// Device-to-cloud frames start with this.
pub const OUTBOUND_PREFIX: &[u8] = b"POSTGW";
/// Cloud-to-device frames start with this.
pub const INBOUND_PREFIX: &[u8] = b"GW";
/// The unframed keepalive the cloud sends.
pub const KEEPALIVE: [u8; 2] = [0x01, 0x02];
/// The fixed AES-128 key every SEMS device uses.
pub const KEY: [u8; 16] = [0xFF; 16];
/// Largest LEN field the splitter waits for. Real frames are under 1 KiB; anything far
/// larger is junk, and waiting for it would let one bad header grow the buffer unbounded.
pub const DEFAULT_MAX_LENGTH: u32 = 16 * 1024;

/// Which way a frame travels; it decides the prefix, the CRC byte order and the envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Device to SEMS: `POSTGW`, CRC big-endian.
    Outbound,
    /// SEMS to device: `GW`, CRC little-endian.
    Inbound,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "outbound" => Ok(Direction::Outbound),
            "inbound" => Ok(Direction::Inbound),
            _ => Err(Error::Format(format!("direction must be 'outbound' or 'inbound', not {s:?}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }

    pub fn prefix(self) -> &'static [u8] {
        match self {
            Direction::Outbound => OUTBOUND_PREFIX,
            Direction::Inbound => INBOUND_PREFIX,
        }
    }

    /// The CRC as stored at the end of a frame of this direction.
    pub fn crc_bytes(self, crc: u16) -> [u8; 2] {
        match self {
            Direction::Outbound => crc.to_be_bytes(),
            Direction::Inbound => crc.to_le_bytes(),
        }
    }
}

/// Total frame length for a LEN field: prefix + LEN(4) + TYPE(2) + BODY(LEN-1) + CRC(2).
pub fn frame_length(direction: Direction, length_field: u32) -> usize {
    direction.prefix().len() + length_field as usize + 7
}

/// Whether a frame carries the 40-byte envelope with pad and timestamp (outbound
/// `xx03`, `xx04`, `xx45`) rather than the 32-byte one.
pub fn has_timestamp_envelope(direction: Direction, packet_type: u16) -> bool {
    direction == Direction::Outbound && matches!(packet_type & 0xFF, 0x03 | 0x04 | 0x45)
}

/// One register block of a cleartext dump; `offset` is where its first value starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub start: u16,
    pub end: u16,
    pub offset: usize,
}

/// A decoded frame. `blocks` is set for frames whose cleartext is a register dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub direction: Direction,
    pub packet_type: u16,
    pub length_field: u32,
    pub envelope_pad: Option<u16>,
    pub timestamp: Option<[u8; 6]>,
    pub device_id: [u8; 8],
    pub device_serial: [u8; 8],
    pub iv: [u8; 16],
    pub cleartext: Vec<u8>,
    pub blocks: Option<Vec<Block>>,
}

impl Decoded {
    /// Every (register, raw value) pair, in block order; a later block wins on overlap.
    pub fn registers(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        for b in self.blocks.iter().flatten() {
            for (i, reg) in (b.start..=b.end).enumerate() {
                let o = b.offset + 2 * i;
                out.push((reg, u16::from_be_bytes([self.cleartext[o], self.cleartext[o + 1]])));
            }
        }
        out
    }
}

/// Check framing and CRC of exactly one frame; return (type, LEN, body).
pub fn check_frame(data: &[u8], direction: Direction) -> Result<(u16, u32, &[u8]), Error> {
    let prefix = direction.prefix();
    let header = prefix.len() + 6;
    if data.len() < header + 2 {
        return Err(Error::Length(format!("{} bytes is shorter than any frame", data.len())));
    }
    if &data[..prefix.len()] != prefix {
        return Err(Error::Format(format!(
            "{} frame must start with {:?}",
            direction.name(),
            String::from_utf8_lossy(prefix)
        )));
    }
    let p = prefix.len();
    let length_field = u32::from_be_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
    if length_field == 0 {
        return Err(Error::Length("LEN field is 0".into()));
    }
    let expected = (length_field as u64) + p as u64 + 7;
    if expected != data.len() as u64 {
        return Err(Error::Length(format!(
            "LEN {length_field} means a {expected}-byte frame, got {} bytes",
            data.len()
        )));
    }
    let n = data.len();
    let crc = crc16_modbus(&data[..n - 2]);
    if data[n - 2..] != direction.crc_bytes(crc) {
        return Err(Error::Checksum(format!(
            "CRC mismatch: stored {:02x}{:02x}, computed {:04x} ({})",
            data[n - 2],
            data[n - 1],
            crc,
            if direction == Direction::Outbound { "big-endian" } else { "little-endian" }
        )));
    }
    let packet_type = u16::from_be_bytes([data[p + 4], data[p + 5]]);
    Ok((packet_type, length_field, &data[header..n - 2]))
}

/// AES-128-CBC decrypt with the fixed key; the length must be a multiple of 16.
pub fn decrypt(iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(Error::Length(format!(
            "ciphertext of {} bytes is not a positive multiple of 16",
            ciphertext.len()
        )));
    }
    let mut out = ciphertext.to_vec();
    let mut dec = cbc::Decryptor::<Aes128>::new(&KEY.into(), iv.into());
    for chunk in out.chunks_exact_mut(16) {
        dec.decrypt_block_mut(chunk.into());
    }
    Ok(out)
}

/// AES-128-CBC encrypt with the fixed key (no padding; the caller pads to 16).
pub fn encrypt(iv: &[u8; 16], cleartext: &[u8]) -> Result<Vec<u8>, Error> {
    if !cleartext.len().is_multiple_of(16) {
        return Err(Error::Length(format!("cleartext of {} bytes is not a multiple of 16", cleartext.len())));
    }
    let mut out = cleartext.to_vec();
    let mut enc = cbc::Encryptor::<Aes128>::new(&KEY.into(), iv.into());
    for chunk in out.chunks_exact_mut(16) {
        enc.encrypt_block_mut(chunk.into());
    }
    Ok(out)
}

/// Parse `count, (start, end, values...)*` at the start of a cleartext.
pub fn parse_blocks(cleartext: &[u8]) -> Result<Vec<Block>, Error> {
    let Some(&count) = cleartext.first() else {
        return Err(Error::Format("empty register dump".into()));
    };
    let mut pos = 1usize;
    let mut blocks = Vec::with_capacity(count as usize);
    for i in 0..count {
        if pos + 4 > cleartext.len() {
            return Err(Error::Format(format!("register block {i} of {count} starts past the end")));
        }
        let start = u16::from_be_bytes([cleartext[pos], cleartext[pos + 1]]);
        let end = u16::from_be_bytes([cleartext[pos + 2], cleartext[pos + 3]]);
        if end < start {
            return Err(Error::Format(format!("register block {start:#06x}-{end:#06x} ends before it starts")));
        }
        let values = 2 * (end as usize - start as usize + 1);
        let offset = pos + 4;
        if offset + values > cleartext.len() {
            return Err(Error::Format(format!(
                "register block {start:#06x}-{end:#06x} runs past the cleartext"
            )));
        }
        blocks.push(Block { start, end, offset });
        pos = offset + values;
    }
    Ok(blocks)
}

/// Decode a frame body (after TYPE, before CRC): envelope, decryption, register blocks.
pub fn decode_body(
    body: &[u8],
    direction: Direction,
    packet_type: u16,
    length_field: u32,
) -> Result<Decoded, Error> {
    let timestamped = has_timestamp_envelope(direction, packet_type);
    let envelope = if timestamped { 40 } else { 32 };
    if body.len() < envelope {
        return Err(Error::Length(format!(
            "body of {} bytes is shorter than its {envelope}-byte envelope",
            body.len()
        )));
    }
    let base = if timestamped { 2 } else { 0 };
    let mut device_id = [0u8; 8];
    let mut device_serial = [0u8; 8];
    let mut iv = [0u8; 16];
    device_id.copy_from_slice(&body[base..base + 8]);
    device_serial.copy_from_slice(&body[base + 8..base + 16]);
    iv.copy_from_slice(&body[base + 16..base + 32]);
    let (envelope_pad, timestamp) = if timestamped {
        let mut ts = [0u8; 6];
        ts.copy_from_slice(&body[34..40]);
        (Some(u16::from_be_bytes([body[0], body[1]])), Some(ts))
    } else {
        (None, None)
    };
    let cleartext = decrypt(&iv, &body[envelope..])?;
    let blocks = if timestamped { Some(parse_blocks(&cleartext)?) } else { None };
    Ok(Decoded {
        direction,
        packet_type,
        length_field,
        envelope_pad,
        timestamp,
        device_id,
        device_serial,
        iv,
        cleartext,
        blocks,
    })
}

/// Decode exactly one complete frame.
pub fn decode_frame(data: &[u8], direction: Direction) -> Result<Decoded, Error> {
    let (packet_type, length_field, body) = check_frame(data, direction)?;
    decode_body(body, direction, packet_type, length_field)
}

/// Build a complete frame around an already-encrypted body (envelope + ciphertext).
pub fn build_frame(direction: Direction, packet_type: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame_length(direction, body.len() as u32 + 1));
    out.extend_from_slice(direction.prefix());
    out.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
    out.extend_from_slice(&packet_type.to_be_bytes());
    out.extend_from_slice(body);
    let crc = crc16_modbus(&out);
    out.extend_from_slice(&direction.crc_bytes(crc));
    out
}

/// One piece of a byte stream, in stream order. Concatenating every unit's bytes gives
/// back exactly the bytes fed (keepalive = `01 02`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Prefix, LEN and all declared bytes; the CRC is not checked yet.
    Frame(Vec<u8>),
    /// The raw inbound `01 02`.
    Keepalive,
    /// Bytes that start no frame: skipped up to the next possible frame start.
    Junk(Vec<u8>),
}

/// A [`Unit`] borrowed from the splitter's buffer, for callers that need no copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitRef<'a> {
    Frame(&'a [u8]),
    Keepalive,
    Junk(&'a [u8]),
}

impl UnitRef<'_> {
    pub fn to_unit(self) -> Unit {
        match self {
            UnitRef::Frame(b) => Unit::Frame(b.to_vec()),
            UnitRef::Keepalive => Unit::Keepalive,
            UnitRef::Junk(b) => Unit::Junk(b.to_vec()),
        }
    }

    pub fn len(self) -> usize {
        match self {
            UnitRef::Frame(b) | UnitRef::Junk(b) => b.len(),
            UnitRef::Keepalive => KEEPALIVE.len(),
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// What starts at a buffer position.
enum Start {
    /// A frame or keepalive of this many bytes.
    Frame(usize),
    Keepalive,
    /// Nothing: this byte is junk.
    Nothing,
    /// Cannot tell yet: more bytes are needed.
    Wait,
}

/// Cuts a byte stream into [`Unit`]s across reads.
///
/// A frame is taken as its declared length, as the reference does: a truncated frame
/// swallows the start of the next one, fails its CRC, and the splitter then skips to the
/// next prefix byte (`P`/`G`) or keepalive. A LEN above `max_length` is junk, which
/// bounds the buffer to one maximal frame.
#[derive(Clone, Debug)]
pub struct Splitter {
    direction: Direction,
    max_length: u32,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`: every byte ever fed minus those still held.
    consumed: u64,
}

impl Splitter {
    pub fn new(direction: Direction, max_length: u32) -> Self {
        Splitter { direction, max_length, buf: Vec::new(), consumed: 0 }
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Bytes held back waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Stream offset (bytes fed since creation) where the held bytes start.
    pub fn offset(&self) -> u64 {
        self.consumed
    }

    /// Give up on a partial frame: return its bytes as junk.
    pub fn flush(&mut self) -> Vec<Unit> {
        if self.buf.is_empty() {
            Vec::new()
        } else {
            self.consumed += self.buf.len() as u64;
            vec![Unit::Junk(std::mem::take(&mut self.buf))]
        }
    }

    fn is_candidate(&self, i: usize) -> bool {
        let b = self.buf[i];
        b == self.direction.prefix()[0] || (self.direction == Direction::Inbound && b == KEEPALIVE[0])
    }

    fn start_at(&self, pos: usize) -> Start {
        let rest = &self.buf[pos..];
        let prefix = self.direction.prefix();
        if self.direction == Direction::Inbound && rest[0] == KEEPALIVE[0] {
            return match rest.get(1) {
                None => Start::Wait,
                Some(&b) if b == KEEPALIVE[1] => Start::Keepalive,
                Some(_) => Start::Nothing,
            };
        }
        let n = rest.len().min(prefix.len());
        if rest[..n] != prefix[..n] {
            return Start::Nothing;
        }
        if rest.len() < prefix.len() + 4 {
            return Start::Wait;
        }
        let p = prefix.len();
        let length_field = u32::from_be_bytes([rest[p], rest[p + 1], rest[p + 2], rest[p + 3]]);
        if length_field == 0 || length_field > self.max_length {
            return Start::Nothing;
        }
        let total = frame_length(self.direction, length_field);
        if rest.len() < total {
            return Start::Wait;
        }
        Start::Frame(total)
    }

    /// Add bytes and hand every unit now complete to `each`, with its stream offset, in
    /// order, borrowed from the buffer (no copy).
    pub fn feed_with(&mut self, data: &[u8], mut each: impl FnMut(u64, UnitRef<'_>)) {
        self.buf.extend_from_slice(data);
        let mut pos = 0usize;
        let mut junk_start: Option<usize> = None;
        let base = self.consumed;
        while pos < self.buf.len() {
            let (unit_len, keepalive) = match self.start_at(pos) {
                Start::Wait => break,
                Start::Frame(n) => (n, false),
                Start::Keepalive => (KEEPALIVE.len(), true),
                Start::Nothing => {
                    junk_start.get_or_insert(pos);
                    pos += 1;
                    while pos < self.buf.len() && !self.is_candidate(pos) {
                        pos += 1;
                    }
                    continue;
                }
            };
            if let Some(js) = junk_start.take() {
                each(base + js as u64, UnitRef::Junk(&self.buf[js..pos]));
            }
            let unit = if keepalive { UnitRef::Keepalive } else { UnitRef::Frame(&self.buf[pos..pos + unit_len]) };
            each(base + pos as u64, unit);
            pos += unit_len;
        }
        if let Some(js) = junk_start {
            each(base + js as u64, UnitRef::Junk(&self.buf[js..pos]));
        }
        self.buf.drain(..pos);
        self.consumed += pos as u64;
    }

    /// Add bytes; return every unit now complete.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Unit> {
        let mut out = Vec::new();
        self.feed_with(data, |_, u| out.push(u.to_unit()));
        out
    }
}

/// Why a frame failed, as the proxy counts it: `checksum`, `length` or `format`.
pub fn error_reason(e: &Error) -> &'static str {
    match e {
        Error::Checksum(_) => "checksum",
        Error::Length(_) => "length",
        Error::Format(_) => "format",
    }
}

/// The 16 ASCII bytes DeviceID ‖ DeviceSerial of a decoded frame.
pub fn full_serial(d: &Decoded) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&d.device_id);
    s[8..].copy_from_slice(&d.device_serial);
    s
}

/// What the proxy keeps of one outbound frame: checked, decrypted and parsed in full (so a
/// frame counts as valid only if it would decode), but no registers extracted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub packet_type: u16,
    pub serial: [u8; 16],
    /// The cleartext is a register dump (a data or info upload): worth keeping for metrics.
    pub has_blocks: bool,
}

pub fn check_outbound(frame: &[u8]) -> Result<Checked, Error> {
    let d = decode_frame(frame, Direction::Outbound)?;
    Ok(Checked { packet_type: d.packet_type, serial: full_serial(&d), has_blocks: d.blocks.is_some() })
}

/// Why a SEMS-to-device frame is not forwarded.
pub const DROP_UNKNOWN_TYPE: &str = "unknown_type";
pub const DROP_DEVICE_MISMATCH: &str = "device_mismatch";
pub const DROP_JUNK: &str = "junk";

/// The proxy's verdict on one inbound frame: Ok(type) = forward it; Err((type if it
/// decoded, reason)) = drop it.
///
/// Forwarded: a valid frame (CRC, length, envelope, whole cipher blocks) of an allowed type
/// whose cleartext is exactly one 16-byte block, addressed to `serial` when that is known.
pub fn inbound_verdict(
    frame: &[u8],
    allowed: impl Fn(u16) -> bool,
    serial: Option<&[u8; 16]>,
) -> Result<u16, (Option<u16>, &'static str)> {
    let d = decode_frame(frame, Direction::Inbound).map_err(|e| (None, error_reason(&e)))?;
    if !allowed(d.packet_type) || d.cleartext.len() != 16 {
        return Err((Some(d.packet_type), DROP_UNKNOWN_TYPE));
    }
    if let Some(s) = serial {
        if &full_serial(&d) != s {
            return Err((Some(d.packet_type), DROP_DEVICE_MISMATCH));
        }
    }
    Ok(d.packet_type)
}

/// One inbound unit the proxy did something about (keepalives are forwarded silently).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundEvent {
    /// The frame's type when it decoded (even if then dropped).
    pub packet_type: Option<u16>,
    /// Why it was dropped; None when forwarded.
    pub reason: Option<&'static str>,
    pub length: usize,
}

/// The SEMS-to-device allow-list over a byte stream: what to forward, and why not the rest.
#[derive(Clone, Debug)]
pub struct InboundFilter {
    split: Splitter,
    allow: Vec<u64>,
    serial: Option<[u8; 16]>,
}

impl InboundFilter {
    pub fn new(allow: &[u16], max_length: u32) -> Self {
        let mut bits = vec![0u64; 1024];
        for &t in allow {
            bits[t as usize / 64] |= 1 << (t % 64);
        }
        InboundFilter { split: Splitter::new(Direction::Inbound, max_length), allow: bits, serial: None }
    }

    pub fn allows(&self, t: u16) -> bool {
        self.allow[t as usize / 64] & (1 << (t % 64)) != 0
    }

    /// Frames addressed to another device are dropped once this is set.
    pub fn set_serial(&mut self, serial: Option<[u8; 16]>) {
        self.serial = serial;
    }

    pub fn pending(&self) -> usize {
        self.split.pending()
    }

    /// Feed bytes: append what may reach the device to `out`, one event per frame or junk
    /// run to `events`. Returns true when everything fed (and nothing held from before) was
    /// forwarded as is, so a caller can pass its own buffer on instead of `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>, events: &mut Vec<InboundEvent>) -> bool {
        let held = self.split.pending();
        let allow = &self.allow;
        let serial = self.serial;
        let mut all = held == 0;
        self.split.feed_with(data, |_, unit| match unit {
            UnitRef::Keepalive => out.extend_from_slice(&KEEPALIVE),
            UnitRef::Junk(b) => {
                all = false;
                events.push(InboundEvent { packet_type: None, reason: Some(DROP_JUNK), length: b.len() });
            }
            UnitRef::Frame(b) => {
                let ok = |t: u16| allow[t as usize / 64] & (1 << (t % 64)) != 0;
                match inbound_verdict(b, ok, serial.as_ref()) {
                    Ok(t) => {
                        out.extend_from_slice(b);
                        events.push(InboundEvent { packet_type: Some(t), reason: None, length: b.len() });
                    }
                    Err((t, reason)) => {
                        all = false;
                        events.push(InboundEvent { packet_type: t, reason: Some(reason), length: b.len() });
                    }
                }
            }
        });
        all && self.split.pending() == 0
    }

    /// Give up on a partial frame (the read deadline passed): its length, if any.
    pub fn flush(&mut self) -> Option<usize> {
        self.split.flush().first().map(|u| match u {
            Unit::Junk(b) | Unit::Frame(b) => b.len(),
            Unit::Keepalive => KEEPALIVE.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// A 0x0304 meter frame built from the spec's §14 cleartext.
    fn meter_frame() -> Vec<u8> {
        let clear = hex("04080008170000000069c600000000e25500000000000000000001320400000001391b000000000007000000000000000000011f0c083008400986098800000000029400000444000000000000061500000a29000000000000103f150015036400000000000041160016000002ffffff");
        let mut iv = [0u8; 16];
        iv[..6].copy_from_slice(&[0x17, 0x09, 0x12, 0x09, 0x09, 0x1b]);
        let mut body = vec![0, 0];
        body.extend_from_slice(b"91000HKU01234567");
        body.extend_from_slice(&iv);
        body.extend_from_slice(&iv[..6]);
        body.extend_from_slice(&encrypt(&iv, &clear).unwrap());
        build_frame(Direction::Outbound, 0x0304, &body)
    }

    #[test]
    fn crc_vectors() {
        assert_eq!(crc16_modbus(&[1, 3]), 0x2140);
        assert_eq!(Direction::Outbound.crc_bytes(0x4BCD), [0x4B, 0xCD]);
        assert_eq!(Direction::Inbound.crc_bytes(0xFCED), [0xED, 0xFC]);
    }

    #[test]
    fn meter_frame_decodes_by_register() {
        let f = meter_frame();
        assert_eq!(f.len(), 166);
        let d = decode_frame(&f, Direction::Outbound).unwrap();
        assert_eq!(d.packet_type, 0x0304);
        assert_eq!(d.length_field, 153);
        assert_eq!(&d.device_id, b"91000HKU");
        let blocks = d.blocks.as_ref().unwrap();
        assert_eq!(blocks.len(), 4);
        assert_eq!((blocks[1].start, blocks[1].end), (0x0830, 0x0840));
        let regs: std::collections::HashMap<u16, u16> = d.registers().into_iter().collect();
        let i32_at = |r: u16| ((regs[&r] as u32) << 16 | regs[&(r + 1)] as u32) as i32;
        assert_eq!(i32_at(0x0801), 27078);
        assert_eq!(i32_at(0x0839), 1557);
        assert_eq!(i32_at(0x083b), 2601);
    }

    #[test]
    fn bit_flip_is_checksum_error() {
        let mut f = meter_frame();
        f[40] ^= 0x01;
        assert!(matches!(decode_frame(&f, Direction::Outbound), Err(Error::Checksum(_))));
    }

    #[test]
    fn wrong_crc_order_and_length() {
        let f = meter_frame();
        // Outbound frame read as inbound: prefix mismatch.
        assert!(matches!(decode_frame(&f, Direction::Inbound), Err(Error::Format(_))));
        assert!(matches!(decode_frame(&f[..100], Direction::Outbound), Err(Error::Length(_))));
        // LEN one too large, CRC recomputed: still a length error.
        let mut g = f[..f.len() - 2].to_vec();
        g[9] += 1;
        let crc = crc16_modbus(&g);
        g.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode_frame(&g, Direction::Outbound), Err(Error::Length(_))));
        // Little-endian CRC on an outbound frame.
        let mut h = f[..f.len() - 2].to_vec();
        let crc = crc16_modbus(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode_frame(&h, Direction::Outbound), Err(Error::Checksum(_))));
    }

    #[test]
    fn encrypt_decrypt_roundtrip() {
        let iv = [7u8; 16];
        let clear: Vec<u8> = (0..64).collect();
        assert_eq!(decrypt(&iv, &encrypt(&iv, &clear).unwrap()).unwrap(), clear);
        assert!(decrypt(&iv, &clear[..15]).is_err());
    }

    #[test]
    fn blocks_out_of_order_and_overrun() {
        let b = parse_blocks(&hex("0200100010abcd0005000600010002ff")).unwrap();
        assert_eq!(b, vec![Block { start: 0x10, end: 0x10, offset: 5 }, Block { start: 5, end: 6, offset: 11 }]);
        assert!(parse_blocks(&hex("0100100020abcd")).is_err());
        assert!(parse_blocks(&hex("0100200010abcd")).is_err());
        assert!(parse_blocks(&[]).is_err());
    }

    #[test]
    fn splitter_any_split_gives_same_units() {
        let f = meter_frame();
        let mut stream = b"junk".to_vec();
        stream.extend_from_slice(&f);
        stream.extend_from_slice(&f);
        let whole = Splitter::new(Direction::Outbound, DEFAULT_MAX_LENGTH).feed(&stream);
        assert_eq!(whole, vec![Unit::Junk(b"junk".to_vec()), Unit::Frame(f.clone()), Unit::Frame(f.clone())]);
        for cut in 0..stream.len() {
            let mut s = Splitter::new(Direction::Outbound, DEFAULT_MAX_LENGTH);
            let mut units = s.feed(&stream[..cut]);
            units.extend(s.feed(&stream[cut..]));
            let frames: Vec<_> = units.iter().filter(|u| matches!(u, Unit::Frame(_))).collect();
            assert_eq!(frames.len(), 2, "cut at {cut}");
            let total: usize = units
                .iter()
                .map(|u| match u {
                    Unit::Frame(b) | Unit::Junk(b) => b.len(),
                    Unit::Keepalive => 2,
                })
                .sum();
            assert_eq!(total, stream.len());
        }
    }

    /// An inbound ACK frame for the meter of `meter_frame()`.
    fn ack_frame(ptype: u16, serial: &[u8; 16], cleartext_blocks: usize) -> Vec<u8> {
        let iv = [3u8; 16];
        let mut body = serial.to_vec();
        body.extend_from_slice(&iv);
        body.extend_from_slice(&encrypt(&iv, &vec![0u8; 16 * cleartext_blocks]).unwrap());
        build_frame(Direction::Inbound, ptype, &body)
    }

    #[test]
    fn feed_with_gives_offsets_and_borrowed_units() {
        let f = meter_frame();
        let mut s = Splitter::new(Direction::Outbound, DEFAULT_MAX_LENGTH);
        let mut seen = Vec::new();
        s.feed_with(b"xy", |o, u| seen.push((o, u.to_unit())));
        s.feed_with(&f[..10], |o, u| seen.push((o, u.to_unit())));
        assert_eq!(s.offset(), 2);
        s.feed_with(&f[10..], |o, u| seen.push((o, u.to_unit())));
        assert_eq!(seen, vec![(0, Unit::Junk(b"xy".to_vec())), (2, Unit::Frame(f.clone()))]);
        assert_eq!(s.offset(), 2 + f.len() as u64);
        let c = check_outbound(&f).unwrap();
        assert_eq!((c.packet_type, &c.serial, c.has_blocks), (0x0304, b"91000HKU01234567", true));
    }

    #[test]
    fn inbound_filter_forwards_only_allowed_frames() {
        let me = *b"91000HKU01234567";
        let other = *b"91000HKU99999999";
        let ack = ack_frame(0x0304, &me, 1);
        let firmware = ack_frame(0x01F0, &me, 1);
        let long = ack_frame(0x0304, &me, 2);
        let theirs = ack_frame(0x0304, &other, 1);
        let mut bad = ack.clone();
        bad[20] ^= 1;
        let mut f = InboundFilter::new(&[0x0304, 0x0116], DEFAULT_MAX_LENGTH);
        f.set_serial(Some(me));
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        // All allowed: forwarded as is.
        let mut stream = ack.clone();
        stream.extend_from_slice(&KEEPALIVE);
        assert!(f.feed(&stream, &mut out, &mut ev));
        assert_eq!(out, stream);
        assert_eq!(ev, vec![InboundEvent { packet_type: Some(0x0304), reason: None, length: ack.len() }]);
        // Everything else dropped, each with its reason.
        let mut stream = Vec::new();
        for part in [&firmware, &long, &theirs, &bad, &b"zz"[..].to_vec(), &ack] {
            stream.extend_from_slice(part);
        }
        out.clear();
        ev.clear();
        assert!(!f.feed(&stream, &mut out, &mut ev));
        assert_eq!(out, ack);
        let reasons: Vec<_> = ev.iter().map(|e| (e.packet_type, e.reason)).collect();
        assert_eq!(reasons, vec![
            (Some(0x01F0), Some(DROP_UNKNOWN_TYPE)),
            (Some(0x0304), Some(DROP_UNKNOWN_TYPE)),
            (Some(0x0304), Some(DROP_DEVICE_MISMATCH)),
            (None, Some("checksum")),
            (None, Some(DROP_JUNK)),
            (Some(0x0304), None),
        ]);
        // A partial frame is held, then given up.
        out.clear();
        ev.clear();
        assert!(!f.feed(&ack[..20], &mut out, &mut ev));
        assert!(out.is_empty() && ev.is_empty() && f.pending() == 20);
        assert_eq!(f.flush(), Some(20));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn splitter_keepalive_and_absurd_length() {
        let mut s = Splitter::new(Direction::Inbound, DEFAULT_MAX_LENGTH);
        assert_eq!(s.feed(&[1]), vec![]);
        assert_eq!(s.feed(&[2]), vec![Unit::Keepalive]);
        let units = s.feed(b"GW\xff\xff\xff\xffxx\x01\x02");
        assert_eq!(units, vec![Unit::Junk(b"GW\xff\xff\xff\xffxx".to_vec()), Unit::Keepalive]);
        assert_eq!(s.pending(), 0);
        // A plausible header waits, bounded by max_length.
        assert_eq!(s.feed(b"GW\x00\x00\x00\x31\x03\x04"), vec![]);
        assert_eq!(s.pending(), 8);
        assert_eq!(s.flush(), vec![Unit::Junk(b"GW\x00\x00\x00\x31\x03\x04".to_vec())]);
    }
}

// ------------------------------------------------------------------------------------
// Python bindings: one call per frame or per read chunk.
// ------------------------------------------------------------------------------------

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn decoded_to_dict<'py>(py: Python<'py>, d: &Decoded) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("direction", d.direction.name())?;
    out.set_item("type", d.packet_type)?;
    out.set_item("length", d.length_field)?;
    out.set_item("envelope_pad", d.envelope_pad)?;
    out.set_item("timestamp", d.timestamp.map(|t| PyBytes::new(py, &t)))?;
    out.set_item("device_id", latin1(&d.device_id))?;
    out.set_item("device_serial", latin1(&d.device_serial))?;
    out.set_item("iv", PyBytes::new(py, &d.iv))?;
    out.set_item("cleartext", PyBytes::new(py, &d.cleartext))?;
    match &d.blocks {
        None => {
            out.set_item("blocks", py.None())?;
        }
        Some(blocks) => {
            let list = PyList::empty(py);
            for b in blocks {
                list.append(PyTuple::new(py, [b.start as usize, b.end as usize, b.offset])?)?;
            }
            out.set_item("blocks", list)?;
        }
    }
    let regs = PyDict::new(py);
    for (r, v) in d.registers() {
        regs.set_item(r, v)?;
    }
    out.set_item("registers", regs)?;
    Ok(out)
}

/// Decode one complete frame; raises LengthError, ChecksumError or FormatError.
#[pyfunction]
fn goodwe_decode_frame<'py>(py: Python<'py>, data: &[u8], direction: &str) -> PyResult<Bound<'py, PyDict>> {
    let d = decode_frame(data, Direction::parse(direction)?)?;
    decoded_to_dict(py, &d)
}

/// Decode a frame body (between TYPE and CRC), for captures that kept only the body.
#[pyfunction]
#[pyo3(signature = (body, direction, packet_type))]
fn goodwe_decode_body<'py>(
    py: Python<'py>,
    body: &[u8],
    direction: &str,
    packet_type: u16,
) -> PyResult<Bound<'py, PyDict>> {
    let d = decode_body(body, Direction::parse(direction)?, packet_type, body.len() as u32 + 1)?;
    decoded_to_dict(py, &d)
}

/// AES-128-CBC with the fixed all-0xFF key; the cleartext length must be a multiple of 16.
#[pyfunction]
fn goodwe_encrypt<'py>(py: Python<'py>, iv: &[u8], cleartext: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let iv: [u8; 16] = iv.try_into().map_err(|_| Error::Length("IV must be 16 bytes".into()))?;
    Ok(PyBytes::new(py, &encrypt(&iv, cleartext)?))
}

/// Stateful stream splitter: `feed(bytes)` returns `[(kind, bytes), ...]` with kind one of
/// "frame", "keepalive", "junk"; the bytes of all units concatenate to the input.
#[pyclass(name = "GoodweSplitter", module = "gridtap._native")]
struct PySplitter {
    inner: Splitter,
}

fn units_to_list<'py>(py: Python<'py>, units: Vec<Unit>) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for u in units {
        let (kind, bytes): (&str, &[u8]) = match &u {
            Unit::Frame(b) => ("frame", b),
            Unit::Keepalive => ("keepalive", &KEEPALIVE),
            Unit::Junk(b) => ("junk", b),
        };
        list.append((kind, PyBytes::new(py, bytes)))?;
    }
    Ok(list)
}

#[pymethods]
impl PySplitter {
    #[new]
    #[pyo3(signature = (direction, max_length = DEFAULT_MAX_LENGTH))]
    fn new(direction: &str, max_length: u32) -> PyResult<Self> {
        Ok(PySplitter { inner: Splitter::new(Direction::parse(direction)?, max_length) })
    }

    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let units = self.inner.feed(data);
        units_to_list(py, units)
    }

    /// Split and check in one call, for the proxy: one tuple per complete outbound frame,
    /// `(offset, type, serial, error, frame)`. A valid frame has `error` None and, when its
    /// cleartext is a register dump (data and info uploads), its bytes in `frame`; a bad one
    /// has `error` = "checksum" | "length" | "format" (and `type`/`serial` None unless it got
    /// past the CRC). Junk is skipped silently; `offset` counts from the first byte fed.
    fn scan<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        if self.inner.direction() != Direction::Outbound {
            return Err(Error::Format("scan() is for outbound streams".into()).into());
        }
        // Frames worth keeping are copied once, straight from the splitter's buffer into
        // their PyBytes.
        let list = PyList::empty(py);
        let mut err: Option<PyErr> = None;
        self.inner.feed_with(data, |offset, unit| {
            let UnitRef::Frame(b) = unit else { return };
            let item = match check_outbound(b) {
                Ok(c) => (
                    offset,
                    Some(c.packet_type),
                    Some(latin1(&c.serial)),
                    None,
                    if c.has_blocks { Some(PyBytes::new(py, b)) } else { None },
                ),
                Err(e) => {
                    // Past the CRC the envelope is trustworthy: say whose frame it was.
                    let who = check_frame(b, Direction::Outbound).ok().and_then(|(t, _, body)| {
                        let base = if has_timestamp_envelope(Direction::Outbound, t) { 2 } else { 0 };
                        body.get(base..base + 16).map(|s| (t, latin1(s)))
                    });
                    let (t, serial) = match who {
                        Some((t, s)) => (Some(t), Some(s)),
                        None => (None, None),
                    };
                    (offset, t, serial, Some(error_reason(&e)), None)
                }
            };
            if let Err(e) = list.append(item) {
                err.get_or_insert(e);
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(list),
        }
    }

    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let units = self.inner.flush();
        units_to_list(py, units)
    }

    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// Stream offset of the first byte still held (bytes fed minus `pending`).
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset()
    }
}

/// The proxy's SEMS-to-device allow-list: `feed(data)` -> `(forward, events)`.
///
/// `forward` is what may reach the device (None for nothing; `data` itself when all of it
/// may, so the common case copies nothing); `events` has one `(type, reason, length)` per
/// frame or junk run: `type` when the frame decoded, `reason` None when forwarded, else
/// "checksum" | "length" | "format" | "unknown_type" | "device_mismatch" | "junk".
#[pyclass(name = "GoodweInboundFilter", module = "gridtap._native")]
struct PyInboundFilter {
    inner: InboundFilter,
    out: Vec<u8>,
    events: Vec<InboundEvent>,
}

#[pymethods]
impl PyInboundFilter {
    #[new]
    #[pyo3(signature = (allow, max_length = DEFAULT_MAX_LENGTH))]
    fn new(allow: Vec<u16>, max_length: u32) -> Self {
        PyInboundFilter { inner: InboundFilter::new(&allow, max_length), out: Vec::new(), events: Vec::new() }
    }

    /// The connection's device (16-character serial), once known; None = not checked.
    fn set_serial(&mut self, serial: Option<&str>) -> PyResult<()> {
        let parsed = match serial {
            None => None,
            Some(s) => {
                let chars: Vec<u32> = s.chars().map(|c| c as u32).collect();
                if chars.len() != 16 || chars.iter().any(|&c| c > 0xFF) {
                    return Err(Error::Format(format!("serial must be 16 latin-1 characters, got {s:?}")).into());
                }
                let mut b = [0u8; 16];
                for (i, c) in chars.into_iter().enumerate() {
                    b[i] = c as u8;
                }
                Some(b)
            }
        };
        self.inner.set_serial(parsed);
        Ok(())
    }

    fn feed<'py>(&mut self, py: Python<'py>, data: &Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyTuple>> {
        self.out.clear();
        self.events.clear();
        let all = self.inner.feed(data.as_bytes(), &mut self.out, &mut self.events);
        let forward: Bound<'py, PyAny> = if all {
            data.clone().into_any()
        } else if self.out.is_empty() {
            py.None().into_bound(py)
        } else {
            PyBytes::new(py, &self.out).into_any()
        };
        let events = PyList::empty(py);
        for e in &self.events {
            events.append((e.packet_type, e.reason, e.length))?;
        }
        PyTuple::new(py, [forward, events.into_any()])
    }

    /// Give up on a held partial frame: its length, or None when nothing was held.
    fn flush(&mut self) -> Option<usize> {
        self.inner.flush()
    }

    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(goodwe_decode_frame, m)?)?;
    m.add_function(wrap_pyfunction!(goodwe_decode_body, m)?)?;
    m.add_function(wrap_pyfunction!(goodwe_encrypt, m)?)?;
    m.add_class::<PySplitter>()?;
    m.add_class::<PyInboundFilter>()?;
    Ok(())
}
