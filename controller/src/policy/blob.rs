//! The firmware policy blob (SPEC §3.3): a fixed header and a postcard payload.
//!
//! # Header
//!
//! [`HEADER_LEN`] = 38 bytes, every integer little-endian, no padding:
//!
//! | offset | size | field         | value                                              |
//! |-------:|-----:|---------------|----------------------------------------------------|
//! | 0      | 4    | `magic`       | [`MAGIC`] = `b"DTNB"`                              |
//! | 4      | 2    | `version`     | `u16`, [`FORMAT_VERSION`] = 3 (2 is read too)      |
//! | 6      | 16   | `layout`      | [`LAYOUT_ID`]: `"diten-obs-v1"` padded with zeros  |
//! | 22     | 2    | `users`       | `u16` U, 1 ..= [`MAX_USERS`]                       |
//! | 24     | 2    | `servers`     | `u16` S, 1 ..= [`MAX_SERVERS`]                     |
//! | 26     | 4    | `obs_dim`     | `u32`, must equal [`obs_dim`]`(U, S)`              |
//! | 30     | 4    | `payload_len` | `u32`, bytes of payload after the header           |
//! | 34     | 4    | `crc`         | `u32`, [`crc32`] (CRC-32/ISO-HDLC) of the payload  |
//! | 38     | —    | payload       | exactly `payload_len` bytes, nothing after it      |
//!
//! # Payload
//!
//! The [postcard](https://postcard.jamesmunns.com/wire-format) encoding of
//!
//! ```text
//! struct Payload {
//!     norm_mean:    bytes,          // obs_dim f32
//!     norm_inv_std: bytes,          // obs_dim f32
//!     layers:       seq<Layer>,     // 1 ..= MAX_LAYERS, applied in order
//!     skip:         Option<Layer>,  // obs_dim → U·S, no activation
//!     prior:        Option<Prior>,  // U·S gathered inputs, scaled
//!     cost_norm:    u8,             // the objective it was trained for: CostNorm::code
//! }
//! struct Layer {
//!     inputs:  u32,    // varint
//!     outputs: u32,    // varint
//!     weight:  bytes,  // outputs × inputs f32, row-major (torch's layout)
//!     bias:    bytes,  // outputs f32
//! }
//! struct Prior {
//!     index:   bytes,  // U·S u32: the normalised input each logit reads
//!     weight:  bytes,  // U·S f32: logits[k] += weight[k] · x'[index[k]]
//! }
//! ```
//!
//! Version 2 had no `cost_norm`: it is read as a policy trained for the paper's
//! objective ([`CostNorm::Paper`]), the only one that existed then. Version 1 had no
//! `prior`; it is not read any more (no version-1 blob shipped).
//!
//! In postcard a struct is its fields in order with nothing between them; `u32`
//! and every length is an unsigned LEB128 varint; `bytes` is a varint byte count
//! followed by the raw bytes; `seq` is a varint element count followed by the
//! elements; `Option` is a byte `0x00` (none) or `0x01` followed by the value.
//! Every `bytes` field holds `f32` (or, for `index`, `u32`) values as 4
//! little-endian bytes each, so its byte count is 4 × the value count; they are
//! read with `from_le_bytes` and need no alignment.
//!
//! # Checks
//!
//! [`Policy::parse`](super::Policy::parse) rejects, each with its own [`Error`]:
//! a wrong magic ([`BlobError::Magic`]), version ([`BlobError::Version`]) or
//! layout ([`BlobError::Layout`]); a blob shorter than the header or than
//! header + `payload_len` ([`BlobError::Truncated`]) or longer
//! ([`BlobError::Trailing`]); a payload CRC mismatch ([`BlobError::Crc`]);
//! malformed postcard data ([`BlobError::Payload`]) or bytes left after the model
//! ([`BlobError::PayloadTrailing`]); U, S, the layer count or a hidden width out of
//! range ([`BlobError::Limit`]); `obs_dim`, a layer's inputs (the first takes
//! `obs_dim`, each next one the previous one's outputs), the last layer's outputs
//! (U·S) or the skip layer's shape wrong ([`BlobError::Dim`]); an array whose
//! byte length is not 4 × its value count ([`BlobError::Length`]); a NaN or ±∞
//! value ([`BlobError::Value`]) or a prior index not below `obs_dim`
//! ([`BlobError::Index`]). [`encode`] applies the same model checks, so it never
//! writes a blob that does not parse. Each is a [`BlobError`], an [`Error::Blob`]
//! where the public functions return [`Error`].
//!
//! The magic, version, length and CRC are the framing every diten file shares
//! (`frame.rs`, with the trace); the layout and the dimensions are the blob's own.

use serde::{Serialize, Serializer};

use super::{MAX_LAYERS, MAX_WIDTH};
pub use crate::error::{BlobError, BlobField, FORMAT_VERSION};
pub use crate::frame::crc32;
use crate::frame::{field, put, to_usize, Frame, FrameError, OFF_VERSION};
use crate::obs::obs_dim;
use crate::params::CostNorm;
use crate::{Error, MAX_SERVERS, MAX_USERS};

/// First 4 bytes of every policy blob.
pub const MAGIC: [u8; 4] = *b"DTNB";

/// The previous format version, still read: no `cost_norm`, [`CostNorm::Paper`].
const FORMAT_VERSION_2: u16 = 2;

/// The header's `layout` field: [`OBS_LAYOUT`](crate::obs::OBS_LAYOUT) padded with
/// zeros to 16 bytes.
pub const LAYOUT_ID: [u8; 16] = *b"diten-obs-v1\0\0\0\0";

/// Bytes of the header before the payload.
pub const HEADER_LEN: usize = 38;

pub(super) const OFF_LAYOUT: usize = 6;
pub(super) const OFF_USERS: usize = 22;
pub(super) const OFF_SERVERS: usize = 24;
pub(super) const OFF_OBS_DIM: usize = 26;
pub(super) const OFF_PAYLOAD_LEN: usize = 30;
pub(super) const OFF_CRC: usize = 34;

/// The framing of every blob format (`policy-v1` here, `policy-v2` in
/// [`super::general`]).
pub(super) const BLOB_FRAME: Frame<HEADER_LEN> = Frame {
    magic: MAGIC,
    off_payload_len: OFF_PAYLOAD_LEN,
    off_crc: OFF_CRC,
};

impl From<FrameError> for BlobError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Magic => BlobError::Magic,
            FrameError::Version { found } => BlobError::Version {
                found,
                expected: FORMAT_VERSION,
            },
            FrameError::Truncated { expected, got } => BlobError::Truncated { expected, got },
            FrameError::Trailing { expected, got } => BlobError::Trailing { expected, got },
            FrameError::Crc { stored, computed } => BlobError::Crc { stored, computed },
        }
    }
}

/// An array of `f32` stored as 4 little-endian bytes each, borrowed from a blob
/// (or from the caller, for [`encode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F32Le<'a>(&'a [u8]);

impl<'a> F32Le<'a> {
    /// Wraps raw bytes; a length that is not a multiple of 4 is caught by the
    /// model checks ([`BlobError::Length`]).
    pub const fn new(bytes: &'a [u8]) -> Self {
        F32Le(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Number of whole values.
    pub const fn len(&self) -> usize {
        self.0.len() / 4
    }

    /// Whether there is no whole value.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<f32> {
        let (values, _) = self.0.as_chunks::<4>();
        values.get(index).map(|b| f32::from_le_bytes(*b))
    }

    /// The values in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = f32> + 'a {
        let (values, _) = self.0.as_chunks::<4>();
        values.iter().map(|b| f32::from_le_bytes(*b))
    }
}

impl Serialize for F32Le<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// The prior of a policy: `logits[k] += weight[k] · x'[index[k]]` for each of the
/// U·S logits, `x'` the normalised observation. Trained with `--stay-prior`, it
/// reads each (user, server) pair's "previous server" one-hot
/// ([`prev_server_feature`](crate::obs::prev_server_feature)): a few kilobytes
/// where a dense skip layer would take megabytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PriorRef<'a> {
    /// U·S input indices, each below `obs_dim`.
    pub index: U32Le<'a>,
    /// U·S `f32` weights.
    pub weight: F32Le<'a>,
}

/// An array of `u32` stored as 4 little-endian bytes each, borrowed like [`F32Le`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct U32Le<'a>(&'a [u8]);

impl<'a> U32Le<'a> {
    /// Wraps raw bytes (a length that is not a multiple of 4 is [`BlobError::Length`]).
    pub const fn new(bytes: &'a [u8]) -> Self {
        U32Le(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Number of whole values.
    pub const fn len(&self) -> usize {
        self.0.len() / 4
    }

    /// Whether there is no whole value.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values in order, as `usize` (a value that does not fit reads as
    /// `usize::MAX`, which no check accepts).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = usize> + 'a {
        let (values, _) = self.0.as_chunks::<4>();
        values.iter().map(|b| to_usize(u32::from_le_bytes(*b)))
    }
}

impl Serialize for U32Le<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// A dense layer `y = W·x + b` of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LayerRef<'a> {
    /// Input width.
    pub inputs: u32,
    /// Output width.
    pub outputs: u32,
    /// `outputs × inputs` weights, row-major (row `o` holds the weights of output `o`).
    pub weight: F32Le<'a>,
    /// `outputs` biases.
    pub bias: F32Le<'a>,
}

/// A policy network, borrowed: what [`encode`] writes and
/// [`Policy::model`](super::Policy::model) returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelRef<'a> {
    /// Users U the policy decides for.
    pub users: usize,
    /// Servers S the policy chooses among.
    pub servers: usize,
    /// `obs_dim(U, S)` means subtracted from the observation.
    pub norm_mean: F32Le<'a>,
    /// `obs_dim(U, S)` factors applied after the mean is subtracted.
    pub norm_inv_std: F32Le<'a>,
    /// The dense layers, 1 to [`MAX_LAYERS`], `tanh` after all but the last.
    pub layers: &'a [LayerRef<'a>],
    /// Optional linear layer `obs_dim(U, S) → U·S` from the normalised observation,
    /// added to the last layer's output.
    pub skip: Option<LayerRef<'a>>,
    /// Optional prior added to the logits last.
    pub prior: Option<PriorRef<'a>>,
    /// The objective the policy was trained for (SPEC §2.1b).
    pub cost_norm: CostNorm,
}

/// The payload as postcard serialises it (see the module docs).
#[derive(Serialize)]
struct Payload<'m, 'a> {
    norm_mean: F32Le<'a>,
    norm_inv_std: F32Le<'a>,
    layers: &'m [LayerRef<'a>],
    skip: Option<&'m LayerRef<'a>>,
    prior: Option<&'m PriorRef<'a>>,
    cost_norm: u8,
}

impl<'a> ModelRef<'a> {
    fn payload(&self) -> Payload<'_, 'a> {
        Payload {
            norm_mean: self.norm_mean,
            norm_inv_std: self.norm_inv_std,
            layers: self.layers,
            skip: self.skip.as_ref(),
            prior: self.prior.as_ref(),
            cost_norm: self.cost_norm.code(),
        }
    }
}

/// Bytes [`encode`] writes for `model` (header included), after the same checks.
pub fn encoded_len(model: &ModelRef<'_>) -> Result<usize, Error> {
    validate(model)?;
    Ok(HEADER_LEN.saturating_add(payload_len(model)?))
}

/// Writes `model` as a blob into the front of `out` and returns its length
/// ([`encoded_len`]; a larger `out` is fine, the rest is untouched). Checks the model
/// as parsing would (a model that would not parse is an error, nothing is
/// written), and `out` too short is [`BlobError::Buffer`]. Never allocates.
pub fn encode(model: &ModelRef<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let dim = validate(model)?;
    let payload_len = payload_len(model)?;
    let total = HEADER_LEN.saturating_add(payload_len);
    let got = out.len();
    let too_small = BlobError::Buffer {
        expected: total,
        got,
    };
    let (header, rest) = out.split_first_chunk_mut().ok_or(too_small)?;
    let payload = rest.get_mut(..payload_len).ok_or(too_small)?;
    let written = postcard::to_slice(&model.payload(), payload).map_err(|_| too_small)?;
    let dim = u32::try_from(dim).map_err(|_| too_small)?;
    put(header, OFF_LAYOUT, &LAYOUT_ID);
    // `validate` bounds users and servers by 64, obs_dim by 12 800.
    put(header, OFF_USERS, &(model.users as u16).to_le_bytes());
    put(header, OFF_SERVERS, &(model.servers as u16).to_le_bytes());
    put(header, OFF_OBS_DIM, &dim.to_le_bytes());
    BLOB_FRAME
        .seal(header, FORMAT_VERSION, written)
        .ok_or(too_small)?;
    Ok(total)
}

fn payload_len(model: &ModelRef<'_>) -> Result<usize, BlobError> {
    postcard::serialize_with_flavor(&model.payload(), postcard::ser_flavors::Size::default())
        .map_err(|_| BlobError::Payload {
            field: BlobField::Model("payload"),
        })
}

/// A blob taken apart: the model, borrowing from the blob.
#[derive(Clone, Debug)]
pub(super) struct Decoded<'a> {
    pub users: usize,
    pub servers: usize,
    pub norm_mean: F32Le<'a>,
    pub norm_inv_std: F32Le<'a>,
    pub layers: heapless::Vec<LayerRef<'a>, MAX_LAYERS>,
    pub skip: Option<LayerRef<'a>>,
    pub prior: Option<PriorRef<'a>>,
    pub cost_norm: CostNorm,
}

impl Decoded<'_> {
    pub fn model(&self) -> ModelRef<'_> {
        ModelRef {
            users: self.users,
            servers: self.servers,
            norm_mean: self.norm_mean,
            norm_inv_std: self.norm_inv_std,
            layers: &self.layers,
            skip: self.skip,
            prior: self.prior,
            cost_norm: self.cost_norm,
        }
    }
}

/// The checks every blob format shares, in the module docs' order: the framing's
/// magic, header length and a version of `versions`, then the `layout`, then the
/// framing's stated length and payload CRC. Returns the header and the payload.
pub(super) fn frame<'b>(
    blob: &'b [u8],
    versions: &[u16],
    layout: &'static [u8; 16],
) -> Result<(&'b [u8; HEADER_LEN], &'b [u8]), BlobError> {
    let header = BLOB_FRAME.header(blob, versions).map_err(|e| match e {
        // The parser's newest version (the first it lists).
        FrameError::Version { found } => BlobError::Version {
            found,
            expected: versions.first().copied().unwrap_or(found),
        },
        other => other.into(),
    })?;
    if field::<16>(header, OFF_LAYOUT) != *layout {
        let name = layout.split(|&b| b == 0).next().unwrap_or(&[]);
        return Err(BlobError::Layout {
            expected: core::str::from_utf8(name).unwrap_or("?"),
        });
    }
    Ok((header, BLOB_FRAME.payload(blob)?))
}

/// Checks and takes apart a blob (see the module docs for the checks and their order).
pub(super) fn decode(blob: &[u8]) -> Result<Decoded<'_>, BlobError> {
    let (header, payload) = frame(blob, &[FORMAT_VERSION, FORMAT_VERSION_2], &LAYOUT_ID)?;
    let version = u16::from_le_bytes(field(header, OFF_VERSION));
    let users = usize::from(u16::from_le_bytes(field(header, OFF_USERS)));
    let servers = usize::from(u16::from_le_bytes(field(header, OFF_SERVERS)));
    check_counts(users, servers)?;
    check_dim(
        BlobField::Model("obs_dim"),
        u32::from_le_bytes(field(header, OFF_OBS_DIM)),
        obs_dim(users, servers),
    )?;

    let mut cur = Cursor(payload);
    let norm_mean = cur.values(BlobField::Model("norm_mean"))?;
    let norm_inv_std = cur.values(BlobField::Model("norm_inv_std"))?;
    let count = to_usize(cur.take::<u32>(BlobField::Model("layers"))?);
    check_layer_count(count)?;
    let mut layers = heapless::Vec::new();
    for index in 0..count {
        let layer = cur.layer(|field| BlobField::Layer { index, field })?;
        layers.push(layer).map_err(|_| layer_count_error(count))?;
    }
    let skip = match cur.take::<u8>(BlobField::Model("skip"))? {
        0 => None,
        1 => Some(cur.layer(BlobField::Skip)?),
        _ => {
            return Err(BlobError::Payload {
                field: BlobField::Model("skip"),
            })
        }
    };
    let prior = match cur.take::<u8>(BlobField::Model("prior"))? {
        0 => None,
        1 => Some(PriorRef {
            index: U32Le(cur.take::<&[u8]>(BlobField::Prior("index"))?),
            weight: cur.values(BlobField::Prior("weight"))?,
        }),
        _ => {
            return Err(BlobError::Payload {
                field: BlobField::Model("prior"),
            })
        }
    };
    let cost_norm = if version == FORMAT_VERSION_2 {
        CostNorm::Paper
    } else {
        let field = BlobField::Model("cost_norm");
        CostNorm::from_code(cur.take::<u8>(field)?).ok_or(BlobError::Payload { field })?
    };
    if !cur.0.is_empty() {
        return Err(BlobError::PayloadTrailing {
            unused: cur.0.len(),
        });
    }
    let decoded = Decoded {
        users,
        servers,
        norm_mean,
        norm_inv_std,
        layers,
        skip,
        prior,
        cost_norm,
    };
    validate(&decoded.model())?;
    Ok(decoded)
}

/// Reads the payload field by field, so each failure names its field.
pub(super) struct Cursor<'a>(pub(super) &'a [u8]);

impl<'a> Cursor<'a> {
    pub(super) fn take<T: serde::Deserialize<'a>>(
        &mut self,
        field: BlobField,
    ) -> Result<T, BlobError> {
        let (value, rest) =
            postcard::take_from_bytes::<T>(self.0).map_err(|_| BlobError::Payload { field })?;
        self.0 = rest;
        Ok(value)
    }

    pub(super) fn values(&mut self, field: BlobField) -> Result<F32Le<'a>, BlobError> {
        self.take::<&'a [u8]>(field).map(F32Le)
    }

    pub(super) fn layer(
        &mut self,
        field: impl Fn(&'static str) -> BlobField,
    ) -> Result<LayerRef<'a>, BlobError> {
        Ok(LayerRef {
            inputs: self.take(field("inputs"))?,
            outputs: self.take(field("outputs"))?,
            weight: self.values(field("weight"))?,
            bias: self.values(field("bias"))?,
        })
    }
}

fn check_counts(users: usize, servers: usize) -> Result<(), BlobError> {
    check_range(BlobField::Model("users"), users, MAX_USERS)?;
    check_range(BlobField::Model("servers"), servers, MAX_SERVERS)
}

pub(super) fn check_range(field: BlobField, value: usize, max: usize) -> Result<(), BlobError> {
    if (1..=max).contains(&value) {
        Ok(())
    } else {
        Err(BlobError::Limit {
            field,
            value,
            min: 1,
            max,
        })
    }
}

fn layer_count_error(count: usize) -> BlobError {
    BlobError::Limit {
        field: BlobField::Model("layers"),
        value: count,
        min: 1,
        max: MAX_LAYERS,
    }
}

fn check_layer_count(count: usize) -> Result<(), BlobError> {
    if (1..=MAX_LAYERS).contains(&count) {
        Ok(())
    } else {
        Err(layer_count_error(count))
    }
}

pub(super) fn check_dim(field: BlobField, got: u32, expected: usize) -> Result<(), BlobError> {
    let got = to_usize(got);
    if got == expected {
        Ok(())
    } else {
        Err(BlobError::Dim {
            field,
            expected,
            got,
        })
    }
}

/// `values` has exactly `count` values, all finite.
pub(super) fn check_values(
    field: BlobField,
    values: F32Le<'_>,
    count: usize,
) -> Result<(), BlobError> {
    let expected = count.saturating_mul(4);
    let got = values.as_bytes().len();
    if got != expected {
        return Err(BlobError::Length {
            field,
            expected,
            got,
        });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(BlobError::Value { field, index }),
        None => Ok(()),
    }
}

pub(super) fn check_dense(
    field: impl Fn(&'static str) -> BlobField,
    layer: &LayerRef<'_>,
    inputs: usize,
    outputs: usize,
) -> Result<(), BlobError> {
    check_values(
        field("weight"),
        layer.weight,
        inputs.saturating_mul(outputs),
    )?;
    check_values(field("bias"), layer.bias, outputs)
}

/// The model checks shared by [`encode`] and [`decode`]; returns `obs_dim`.
fn validate(model: &ModelRef<'_>) -> Result<usize, BlobError> {
    check_counts(model.users, model.servers)?;
    let dim = obs_dim(model.users, model.servers);
    let actions = model.users * model.servers;
    check_values(BlobField::Model("norm_mean"), model.norm_mean, dim)?;
    check_values(BlobField::Model("norm_inv_std"), model.norm_inv_std, dim)?;
    let count = model.layers.len();
    check_layer_count(count)?;
    let mut inputs = dim;
    for (index, layer) in model.layers.iter().enumerate() {
        let field = |field| BlobField::Layer { index, field };
        check_dim(field("inputs"), layer.inputs, inputs)?;
        let outputs = to_usize(layer.outputs);
        if index + 1 == count {
            check_dim(field("outputs"), layer.outputs, actions)?;
        } else {
            check_range(field("outputs"), outputs, MAX_WIDTH)?;
        }
        check_dense(field, layer, inputs, outputs)?;
        inputs = outputs;
    }
    if let Some(skip) = &model.skip {
        check_dim(BlobField::Skip("inputs"), skip.inputs, dim)?;
        check_dim(BlobField::Skip("outputs"), skip.outputs, actions)?;
        check_dense(BlobField::Skip, skip, dim, actions)?;
    }
    if let Some(prior) = &model.prior {
        let field = BlobField::Prior("index");
        let expected = actions.saturating_mul(4);
        let got = prior.index.as_bytes().len();
        if got != expected {
            return Err(BlobError::Length {
                field,
                expected,
                got,
            });
        }
        if let Some((index, value)) = prior.index.iter().enumerate().find(|&(_, i)| i >= dim) {
            return Err(BlobError::Index {
                field,
                index,
                value,
                limit: dim,
            });
        }
        check_values(BlobField::Prior("weight"), prior.weight, actions)?;
    }
    Ok(dim)
}
