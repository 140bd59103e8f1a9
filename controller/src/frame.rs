//! The framing every diten binary file shares: the policy blob of SPEC §3.3
//! ([`crate::policy::blob`], both formats) and the recorded trace ([`crate::trace`]).
//!
//! A framed file is a header of a fixed length `N` and a payload. The header opens
//! with a 4-byte `magic` at offset 0 and a `u16` `version` at offset
//! [`OFF_VERSION`] = 4; each format places a `u32` `payload_len` and a `u32` `crc`
//! ([`crc32`] of the payload) among its own fields. Every integer is
//! little-endian. Exactly `payload_len` bytes follow the header, nothing after
//! them.
//!
//! Checking a file is two steps, so that a format checks its own header fields in
//! between: [`Frame::header`] (magic, header length, version) and
//! [`Frame::payload`] (the stated length, trailing bytes, the CRC). Each format
//! turns a [`FrameError`] into its own error enum, whose texts name the format.

/// Offset of the `u16` `version` in every framed header (right after the magic).
pub(crate) const OFF_VERSION: usize = 4;

/// Where a format keeps the framing fields of its `N`-byte header.
pub(crate) struct Frame<const N: usize> {
    /// The first 4 bytes of every file of the format.
    pub magic: [u8; 4],
    /// Offset of the `u32` `payload_len`.
    pub off_payload_len: usize,
    /// Offset of the `u32` `crc`.
    pub off_crc: usize,
}

/// A framing check that failed; each format maps it to its own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The file does not start with the magic (or a short file is not a prefix of it).
    Magic,
    /// The header's version is not one the caller reads.
    Version {
        /// The version in the header.
        found: u16,
    },
    /// Shorter than the header, or than the header plus the stated payload length.
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Longer than the header plus the stated payload length.
    Trailing {
        /// Bytes the header accounts for.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The payload's CRC-32 is not the one in the header.
    Crc {
        /// CRC-32 in the header.
        stored: u32,
        /// CRC-32 of the payload as given.
        computed: u32,
    },
}

impl<const N: usize> Frame<N> {
    /// The first checks, in this order: the magic (a file shorter than the magic
    /// must be a prefix of it: a short prefix of something else is not this format
    /// either), the header's length and a version of `versions`. Returns the header.
    pub fn header<'b>(&self, bytes: &'b [u8], versions: &[u16]) -> Result<&'b [u8; N], FrameError> {
        if !self
            .magic
            .starts_with(bytes.get(..self.magic.len()).unwrap_or(bytes))
        {
            return Err(FrameError::Magic);
        }
        let Some((header, _)) = bytes.split_first_chunk::<N>() else {
            return Err(FrameError::Truncated {
                expected: N,
                got: bytes.len(),
            });
        };
        let found = u16::from_le_bytes(field(header, OFF_VERSION));
        if !versions.contains(&found) {
            return Err(FrameError::Version { found });
        }
        Ok(header)
    }

    /// The last checks, in this order: the file is exactly the header plus the
    /// `payload_len` it states, and the payload's CRC is the header's. Returns the
    /// payload.
    pub fn payload<'b>(&self, bytes: &'b [u8]) -> Result<&'b [u8], FrameError> {
        let got = bytes.len();
        let Some((header, payload)) = bytes.split_first_chunk::<N>() else {
            return Err(FrameError::Truncated { expected: N, got });
        };
        let stated = to_usize(u32::from_le_bytes(field(header, self.off_payload_len)));
        let expected = N.saturating_add(stated);
        if got < expected {
            return Err(FrameError::Truncated { expected, got });
        }
        if got > expected {
            return Err(FrameError::Trailing { expected, got });
        }
        let stored = u32::from_le_bytes(field(header, self.off_crc));
        let computed = crc32(payload);
        if stored != computed {
            return Err(FrameError::Crc { stored, computed });
        }
        Ok(payload)
    }

    /// Writes the framing fields into `header`: the magic, `version`, the length
    /// of `payload` and its CRC. `None` (nothing written) when the payload is
    /// longer than a `u32` counts.
    pub fn seal(&self, header: &mut [u8; N], version: u16, payload: &[u8]) -> Option<()> {
        let len = u32::try_from(payload.len()).ok()?;
        put(header, 0, &self.magic);
        put(header, OFF_VERSION, &version.to_le_bytes());
        put(header, self.off_payload_len, &len.to_le_bytes());
        put(header, self.off_crc, &crc32(payload).to_le_bytes());
        Some(())
    }
}

/// CRC-32/ISO-HDLC (the zlib/PNG CRC: reflected polynomial 0xEDB88320, initial
/// value and final xor 0xFFFFFFFF), bit by bit: no table in flash.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `M` header bytes at `at` (callers read within their fixed headers, so never
/// the zero fallback).
pub(crate) fn field<const M: usize>(header: &[u8], at: usize) -> [u8; M] {
    header
        .get(at..at + M)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; M])
}

/// Copies `bytes` into `header` at `at` (callers write within their fixed headers).
pub(crate) fn put(header: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = header.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// A `u32` from a file as `usize`; one that does not fit reads as `usize::MAX`,
/// which no check accepts.
pub(crate) fn to_usize(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
