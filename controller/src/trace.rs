//! Recorded gateway traces: the exogenous part of a run of slots, replayed through
//! the controller the same way on a host and on a firmware.
//!
//! The association is closed-loop: a user's previous server is the controller's
//! own decision of the slot before. A trace therefore records only what does not
//! depend on decisions (the servers, the model parameters, and per slot which
//! servers are up, which users are present, and each user's position, EMD, twin
//! data and training data), and [`Replay`] carries the
//! previous association forward from the decisions it is told of
//! ([`Replay::commit`]). Every replay of one trace with one policy thus sees the
//! same statuses, on any machine, as the simulator would have shown a controller
//! deciding inside it. [`SlotLine`] is the one line both print per slot.
//!
//! # Format
//!
//! Every integer and float is little-endian; floats are IEEE-754 `f64` (read with
//! `f64::from_le_bytes`, so the bytes need no alignment). A trace is a
//! [`TRACE_HEADER_LEN`] = 22-byte header and a payload:
//!
//! | offset | size | field         | value                                              |
//! |-------:|-----:|---------------|----------------------------------------------------|
//! | 0      | 4    | `magic`       | [`TRACE_MAGIC`] = `b"DTNT"`                        |
//! | 4      | 2    | `version`     | `u16`, [`TRACE_VERSION`] = 3                       |
//! | 6      | 2    | `users`       | `u16` U ≥ 1, the population (present or not)       |
//! | 8      | 2    | `servers`     | `u16` S ≥ 1                                        |
//! | 10     | 4    | `slots`       | `u32` T ≥ 1                                        |
//! | 14     | 4    | `payload_len` | `u32`, must equal [`payload_len`]`(U, S, T)`       |
//! | 18     | 4    | `crc`         | `u32`, CRC-32/ISO-HDLC of the payload ([`crc32`])  |
//! | 22     | —    | payload       | exactly `payload_len` bytes, nothing after it      |
//!
//! [`crc32`]: crate::policy::crc32
//!
//! The payload is `f64` values only, 8 bytes each, in this order:
//!
//! 1. the model parameters, [`PARAM_VALUES`] = 23: `alpha[0..6]`, `beta1`,
//!    `beta2`, `f0`, `n_mig`, `n_syn`, `n_cmp`, `p_tx_w`, `bandwidth_hz`, `gain`,
//!    `noise_dbm`, `epochs_train`, `epochs_finetune`, `barrier_f`,
//!    `barrier_min_slack`, `infeasible_penalty`, `bits_per_sample`, `cost_norm`
//!    (the fields of [`Params`] in declaration order; `cost_norm` as its
//!    [`CostNorm::code`], 0.0 or 1.0; version 1 had no `cost_norm` and is not read);
//! 2. the servers, S × [`SERVER_VALUES`]: `x`, `y`, `p`, `q`, `eps` (fixed for the
//!    whole trace);
//! 3. the slots, T of them, each S availability flags (1.0 up, 0.0 down; SPEC
//!    §2.2a) and then U × [`USER_VALUES`] records, user-major: `x`, `y`, `emd`,
//!    `twin_bits`, `data_bits`, `prev_data_bits`, `present` (1.0 or 0.0;
//!    [`TraceUser`]; an absent user's other values are not read).
//!
//! Version 2 (no churn: no flags, 5 values per record and the first slot's
//! `prev_data_bits` as a separate block) is not read: re-record it with `diten
//! trace`.
//!
//! # Replay
//!
//! The status of slot t has the trace's servers with slot t's availability, and
//! the users present in slot t, in population order, each with its record and
//! `prev_server` = the server [`Replay::commit`] gave it for slot t − 1 when it
//! was present then, `None` otherwise (slot 0, or it joined): exactly the
//! bookkeeping of the simulator. A decision names one server per present user.
//!
//! # Checks
//!
//! [`Trace::parse`] allocates nothing and never panics: a wrong magic
//! ([`TraceError::Magic`]) or version ([`TraceError::Version`]), a zero count or a
//! size that overflows ([`TraceError::Dims`]), a `payload_len` other than the
//! dimensions need ([`TraceError::Length`]), a short or long trace
//! ([`TraceError::Truncated`], [`TraceError::Trailing`]), a CRC mismatch
//! ([`TraceError::Crc`]) and invalid parameters ([`Params::validate`]) are
//! errors. The values of each slot are checked when its status is built: a flag
//! other than 0.0 or 1.0 is [`TraceError::Flag`], the rest is [`Slot::new`]'s.
//! A [`TraceError`] reaches the caller as [`Error::Trace`].
//!
//! The magic, version, length and CRC are the framing every diten file shares
//! (`frame.rs`); the dimensions are the trace's own.
//!
//! ```
//! use diten_controller::trace::{encode, encoded_len, Replay, Trace, TraceUser};
//! use diten_controller::{Params, Server};
//!
//! let servers = [Server { x: 0.0, y: 0.0, p: 125.0, q: 1450.0, eps: 55.0, available: true }];
//! let user = TraceUser {
//!     x: 3.0, y: 4.0, emd: 0.2, twin_bits: 4500.0, data_bits: 784_000.0,
//!     prev_data_bits: 392_000.0, present: true,
//! };
//! let mut bytes = [0u8; 512];
//! // 1 user, 2 slots, the one server up in both.
//! let len = encode(&Params::default(), &servers, 1, &[true, true], &[user, user], &mut bytes)?;
//! assert_eq!(len, encoded_len(1, 1, 2)?);
//!
//! let trace = Trace::parse(&bytes[..len])?;
//! assert_eq!((trace.users(), trace.servers(), trace.slots()), (1, 1, 2));
//! let mut replay: Replay<'_, 4, 4> = Replay::new(trace)?;
//! let first = replay.status()?.expect("slot 0");
//! assert_eq!(first.users()[0].prev_server, None);
//! assert_eq!(first.users()[0].prev_data_bits, 392_000.0);
//! replay.commit(&[0])?;
//! let second = replay.status()?.expect("slot 1");
//! assert_eq!(second.users()[0].prev_server, Some(0));
//! replay.commit(&[0])?;
//! assert!(replay.status()?.is_none());
//! # Ok::<(), diten_controller::Error>(())
//! ```

use core::fmt;

use crate::error::{Error, Problem};
pub use crate::error::{TraceError, TRACE_VERSION};
use crate::frame::{field, put, Frame, FrameError};
use crate::params::{CostNorm, Params};
use crate::slot::{Server, Slot, User};

/// First 4 bytes of every trace.
pub const TRACE_MAGIC: [u8; 4] = *b"DTNT";

/// Bytes of the header before the payload.
pub const TRACE_HEADER_LEN: usize = 22;

/// `f64` values of the model parameters in the payload.
pub const PARAM_VALUES: usize = 23;

/// `f64` values per server in the payload.
pub const SERVER_VALUES: usize = 5;

/// `f64` values per user and slot in the payload.
pub const USER_VALUES: usize = 7;

const OFF_USERS: usize = 6;
const OFF_SERVERS: usize = 8;
const OFF_SLOTS: usize = 10;
const OFF_PAYLOAD_LEN: usize = 14;
const OFF_CRC: usize = 18;

const TRACE_FRAME: Frame<TRACE_HEADER_LEN> = Frame {
    magic: TRACE_MAGIC,
    off_payload_len: OFF_PAYLOAD_LEN,
    off_crc: OFF_CRC,
};

impl From<FrameError> for TraceError {
    fn from(error: FrameError) -> Self {
        match error {
            FrameError::Magic => TraceError::Magic,
            FrameError::Version { found } => TraceError::Version { found },
            FrameError::Truncated { expected, got } => TraceError::Truncated { expected, got },
            FrameError::Trailing { expected, got } => TraceError::Trailing { expected, got },
            FrameError::Crc { stored, computed } => TraceError::Crc { stored, computed },
        }
    }
}

/// One user's exogenous record in one slot (what does not depend on decisions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceUser {
    /// Position, metres.
    pub x: f64,
    /// Position, metres.
    pub y: f64,
    /// EMD φ_u of the user's data.
    pub emd: f64,
    /// Twin base data D_twin, bits.
    pub twin_bits: f64,
    /// Training data of this slot D_{u,t}, bits.
    pub data_bits: f64,
    /// Training data of the slot before D_{u,t−1}, bits.
    pub prev_data_bits: f64,
    /// Whether the user is at the gateway this slot (SPEC §2.2a).
    pub present: bool,
}

/// Bytes of the payload for `users`, `servers` and `slots`, or `None` when that
/// overflows `usize`.
pub const fn payload_len(users: usize, servers: usize, slots: usize) -> Option<usize> {
    let Some(per_slot) = users.checked_mul(USER_VALUES) else {
        return None;
    };
    let Some(per_slot) = per_slot.checked_add(servers) else {
        return None;
    };
    let Some(all_slots) = per_slot.checked_mul(slots) else {
        return None;
    };
    let Some(server_values) = servers.checked_mul(SERVER_VALUES) else {
        return None;
    };
    let Some(values) = all_slots.checked_add(server_values) else {
        return None;
    };
    let Some(values) = values.checked_add(PARAM_VALUES) else {
        return None;
    };
    values.checked_mul(8)
}

/// Bytes [`encode`] writes (header included), after the dimension checks.
pub fn encoded_len(users: usize, servers: usize, slots: usize) -> Result<usize, Error> {
    check_dims(users, servers, slots)?;
    let len = payload_len(users, servers, slots).and_then(|p| p.checked_add(TRACE_HEADER_LEN));
    Ok(len.ok_or(TraceError::Dims {
        field: "slots",
        value: slots,
    })?)
}

/// U and S must be 1 ..= `u16::MAX`, T 1 ..= `u32::MAX`.
fn check_dims(users: usize, servers: usize, slots: usize) -> Result<(), TraceError> {
    let max16 = usize::from(u16::MAX);
    for (field, value, max) in [
        ("users", users, max16),
        ("servers", servers, max16),
        (
            "slots",
            slots,
            usize::try_from(u32::MAX).unwrap_or(usize::MAX),
        ),
    ] {
        if value == 0 || value > max {
            return Err(TraceError::Dims { field, value });
        }
    }
    Ok(())
}

/// The parameters in payload order (destructured, so a new field of [`Params`]
/// does not compile until the format accounts for it).
fn param_values(params: &Params) -> [f64; PARAM_VALUES] {
    let Params {
        alpha: [a1, a2, a3, a4, a5, a6],
        beta1,
        beta2,
        f0,
        n_mig,
        n_syn,
        n_cmp,
        p_tx_w,
        bandwidth_hz,
        gain,
        noise_dbm,
        epochs_train,
        epochs_finetune,
        barrier_f,
        barrier_min_slack,
        infeasible_penalty,
        bits_per_sample,
        cost_norm,
    } = *params;
    [
        a1,
        a2,
        a3,
        a4,
        a5,
        a6,
        beta1,
        beta2,
        f0,
        n_mig,
        n_syn,
        n_cmp,
        p_tx_w,
        bandwidth_hz,
        gain,
        noise_dbm,
        epochs_train,
        epochs_finetune,
        barrier_f,
        barrier_min_slack,
        infeasible_penalty,
        bits_per_sample,
        f64::from(cost_norm.code()),
    ]
}

/// The inverse of [`param_values`]: the fields are read in payload order (a struct
/// expression evaluates its fields in the order written). A `cost_norm` value that
/// is no [`CostNorm::code`] is an error.
fn params_from(values: &[f64; PARAM_VALUES]) -> Result<Params, Error> {
    let mut it = values.iter().copied();
    // Never NaN: there are exactly PARAM_VALUES reads of PARAM_VALUES values.
    let mut next = || it.next().unwrap_or(f64::NAN);
    let code = |v: f64| {
        let known = [CostNorm::Paper, CostNorm::Linear];
        known
            .into_iter()
            .find(|n| f64::from(n.code()) == v)
            .ok_or(Error::Param {
                field: "cost_norm",
                problem: Problem::OutOfRange,
            })
    };
    Ok(Params {
        alpha: [next(), next(), next(), next(), next(), next()],
        beta1: next(),
        beta2: next(),
        f0: next(),
        n_mig: next(),
        n_syn: next(),
        n_cmp: next(),
        p_tx_w: next(),
        bandwidth_hz: next(),
        gain: next(),
        noise_dbm: next(),
        epochs_train: next(),
        epochs_finetune: next(),
        barrier_f: next(),
        barrier_min_slack: next(),
        infeasible_penalty: next(),
        bits_per_sample: next(),
        cost_norm: code(next())?,
    })
}

/// Writes a trace into `out` and returns its length ([`encoded_len`]).
///
/// `users` is the population U; `available` holds T·S flags and `records` T·U
/// records, both slot-major (lengths that do not give the same T ≥ 1 are
/// [`TraceError::Dims`]). `out` shorter than the trace is [`TraceError::Buffer`].
/// Values are written as given; [`Trace::parse`] checks the parameters and
/// [`Replay::status`] each slot's values.
pub fn encode(
    params: &Params,
    servers: &[Server],
    users: usize,
    available: &[bool],
    records: &[TraceUser],
    out: &mut [u8],
) -> Result<usize, Error> {
    let dims = |field, value| TraceError::Dims { field, value };
    if users == 0 {
        return Err(dims("users", 0).into());
    }
    if servers.is_empty() {
        return Err(dims("servers", 0).into());
    }
    let n_slots = records.len() / users;
    if !records.len().is_multiple_of(users) || available.len() != n_slots * servers.len() {
        return Err(dims("slots", records.len()).into());
    }
    let len = encoded_len(users, servers.len(), n_slots)?;
    let too_small = TraceError::Buffer {
        expected: len,
        got: out.len(),
    };
    let out = out.get_mut(..len).ok_or(too_small)?;
    let (header, payload) = out.split_first_chunk_mut().ok_or(too_small)?;

    let flag = |b: bool| f64::from(u8::from(b));
    let values = param_values(params)
        .into_iter()
        .chain(servers.iter().flat_map(|s| [s.x, s.y, s.p, s.q, s.eps]))
        .chain(
            available
                .chunks_exact(servers.len())
                .zip(records.chunks_exact(users))
                .flat_map(|(up, slot)| {
                    up.iter()
                        .map(move |&a| flag(a))
                        .chain(slot.iter().flat_map(move |u| {
                            [
                                u.x,
                                u.y,
                                u.emd,
                                u.twin_bits,
                                u.data_bits,
                                u.prev_data_bits,
                                flag(u.present),
                            ]
                        }))
                }),
        );
    let mut written = 0;
    for (chunk, v) in payload.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&v.to_le_bytes());
        written += 8;
    }
    if written != payload.len() {
        // Unreachable: encoded_len counted exactly these values.
        return Err(TraceError::Length {
            expected: payload.len(),
            got: written,
        }
        .into());
    }

    let users16 = u16::try_from(users).map_err(|_| dims("users", users))?;
    let servers16 = u16::try_from(servers.len()).map_err(|_| dims("servers", servers.len()))?;
    let slots32 = u32::try_from(n_slots).map_err(|_| dims("slots", n_slots))?;
    TRACE_FRAME
        .seal(header, TRACE_VERSION, payload)
        .ok_or(dims("slots", n_slots))?;
    put(header, OFF_USERS, &users16.to_le_bytes());
    put(header, OFF_SERVERS, &servers16.to_le_bytes());
    put(header, OFF_SLOTS, &slots32.to_le_bytes());
    Ok(len)
}

/// `N` bytes of `bytes` at `at` (the caller checked the length).
fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], TraceError> {
    bytes
        .get(at..at + N)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or(TraceError::Truncated {
            expected: at + N,
            got: bytes.len(),
        })
}

/// A parsed trace, borrowing its values from the bytes (a `&'static [u8]` in
/// flash on a firmware).
#[derive(Clone, Copy, Debug)]
pub struct Trace<'a> {
    users: usize,
    servers: usize,
    slots: usize,
    params: Params,
    payload: &'a [u8],
}

impl<'a> Trace<'a> {
    /// Parses and checks a trace (see the [module docs](self) for the checks).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let header = TRACE_FRAME
            .header(bytes, &[TRACE_VERSION])
            .map_err(TraceError::from)?;
        let users = usize::from(u16::from_le_bytes(field(header, OFF_USERS)));
        let servers = usize::from(u16::from_le_bytes(field(header, OFF_SERVERS)));
        let slots_raw = u32::from_le_bytes(field(header, OFF_SLOTS));
        let slots = usize::try_from(slots_raw).map_err(|_| TraceError::Dims {
            field: "slots",
            value: usize::MAX,
        })?;
        check_dims(users, servers, slots)?;
        let stated = u32::from_le_bytes(field(header, OFF_PAYLOAD_LEN));
        let stated = usize::try_from(stated).unwrap_or(usize::MAX);
        let dims_overflow = TraceError::Dims {
            field: "slots",
            value: slots,
        };
        let needed = payload_len(users, servers, slots).ok_or(dims_overflow)?;
        if stated != needed {
            return Err(TraceError::Length {
                expected: needed,
                got: stated,
            }
            .into());
        }
        // The framing saturates header + payload; a trace calls the overflow a
        // dimension error.
        needed.checked_add(TRACE_HEADER_LEN).ok_or(dims_overflow)?;
        let payload = TRACE_FRAME.payload(bytes).map_err(TraceError::from)?;
        let mut values = [0.0; PARAM_VALUES];
        for (v, chunk) in values.iter_mut().zip(payload.chunks_exact(8)) {
            *v = f64::from_le_bytes(array(chunk, 0)?);
        }
        let params = params_from(&values)?;
        params.validate()?;
        Ok(Trace {
            users,
            servers,
            slots,
            params,
            payload,
        })
    }

    /// Users U.
    pub fn users(&self) -> usize {
        self.users
    }

    /// Servers S.
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// Slots T.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The model parameters the trace was recorded with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Payload value `index` (in `f64` units).
    fn value(&self, index: usize) -> Result<f64, TraceError> {
        let at = index.checked_mul(8).ok_or(TraceError::Length {
            expected: usize::MAX,
            got: self.payload.len(),
        })?;
        Ok(f64::from_le_bytes(array(self.payload, at)?))
    }

    /// Server `s` (values as recorded, checked when a status is built).
    pub fn server(&self, s: usize) -> Result<Server, Error> {
        if s >= self.servers {
            return Err(TraceError::Range {
                field: "servers",
                index: s,
                count: self.servers,
            }
            .into());
        }
        let base = PARAM_VALUES + s * SERVER_VALUES;
        Ok(Server {
            x: self.value(base)?,
            y: self.value(base + 1)?,
            p: self.value(base + 2)?,
            q: self.value(base + 3)?,
            eps: self.value(base + 4)?,
            available: true,
        })
    }

    /// Checks slot `t` and returns the index of its first payload value.
    fn slot_base(&self, t: usize) -> Result<usize, TraceError> {
        if t >= self.slots {
            return Err(TraceError::Range {
                field: "slots",
                index: t,
                count: self.slots,
            });
        }
        // In range: parse checked that payload_len(U, S, T) does not overflow.
        Ok(PARAM_VALUES
            + self.servers * SERVER_VALUES
            + t * (self.servers + self.users * USER_VALUES))
    }

    /// A flag value: 1.0 is true, 0.0 false, anything else [`TraceError::Flag`].
    fn flag(
        &self,
        index: usize,
        field: &'static str,
        slot: usize,
        at: usize,
    ) -> Result<bool, TraceError> {
        let v = self.value(index)?;
        if v == 1.0 {
            Ok(true)
        } else if v == 0.0 {
            Ok(false)
        } else {
            Err(TraceError::Flag {
                field,
                slot,
                index: at,
            })
        }
    }

    /// Whether server `s` is up in slot `t`.
    pub fn available(&self, t: usize, s: usize) -> Result<bool, Error> {
        let base = self.slot_base(t)?;
        if s >= self.servers {
            return Err(TraceError::Range {
                field: "servers",
                index: s,
                count: self.servers,
            }
            .into());
        }
        Ok(self.flag(base + s, "available", t, s)?)
    }

    /// User `u`'s record in slot `t`.
    pub fn user(&self, t: usize, u: usize) -> Result<TraceUser, Error> {
        let base = self.slot_base(t)?;
        if u >= self.users {
            return Err(TraceError::Range {
                field: "users",
                index: u,
                count: self.users,
            }
            .into());
        }
        let base = base + self.servers + u * USER_VALUES;
        Ok(TraceUser {
            x: self.value(base)?,
            y: self.value(base + 1)?,
            emd: self.value(base + 2)?,
            twin_bits: self.value(base + 3)?,
            data_bits: self.value(base + 4)?,
            prev_data_bits: self.value(base + 5)?,
            present: self.flag(base + 6, "present", t, u)?,
        })
    }
}

/// A trace replayed slot by slot, with the previous association carried forward
/// from the decisions committed (see the [module docs](self)). `U` and `S` are the
/// capacities of the [`Slot`]s it builds.
#[derive(Clone, Debug)]
pub struct Replay<'a, const U: usize, const S: usize> {
    trace: Trace<'a>,
    servers: heapless::Vec<Server, S>,
    /// Each population member's server committed for slot `t − 1` (`None` when
    /// it was absent then, and at slot 0).
    prev: heapless::Vec<Option<usize>, U>,
    t: usize,
}

impl<'a, const U: usize, const S: usize> Replay<'a, U, S> {
    /// Starts at slot 0. The trace's users and servers must fit `U` and `S`
    /// ([`Error::TooManyUsers`], [`Error::TooManyServers`]).
    pub fn new(trace: Trace<'a>) -> Result<Self, Error> {
        if trace.users() > U {
            return Err(Error::TooManyUsers {
                count: trace.users(),
                capacity: U,
            });
        }
        let too_many = Error::TooManyServers {
            count: trace.servers(),
            capacity: S,
        };
        if trace.servers() > S {
            return Err(too_many);
        }
        let mut servers = heapless::Vec::new();
        for s in 0..trace.servers() {
            servers.push(trace.server(s)?).map_err(|_| too_many)?;
        }
        let mut prev = heapless::Vec::new();
        prev.resize(trace.users(), None)
            .map_err(|_| Error::TooManyUsers {
                count: trace.users(),
                capacity: U,
            })?;
        Ok(Replay {
            trace,
            servers,
            prev,
            t: 0,
        })
    }

    /// The trace.
    pub fn trace(&self) -> &Trace<'a> {
        &self.trace
    }

    /// Index of the slot [`status`](Self::status) gives (0-based; equal to
    /// [`Trace::slots`] once every slot is committed).
    pub fn slot_index(&self) -> usize {
        self.t
    }

    /// The status of the current slot, or `None` once every slot is committed.
    /// Calling it again without [`commit`](Self::commit) gives the same status.
    /// A flag other than 0.0 or 1.0 is [`TraceError::Flag`]; other invalid
    /// recorded values are the error of [`Slot::new`].
    pub fn status(&self) -> Result<Option<Slot<U, S>>, Error> {
        let t = self.t;
        if t >= self.trace.slots() {
            return Ok(None);
        }
        let mut servers = self.servers.clone();
        for (s, server) in servers.iter_mut().enumerate() {
            server.available = self.trace.available(t, s)?;
        }
        let capacity = Error::TooManyUsers {
            count: self.trace.users(),
            capacity: U,
        };
        let mut users: heapless::Vec<User, U> = heapless::Vec::new();
        for (u, &prev_server) in self.prev.iter().enumerate() {
            let now = self.trace.user(t, u)?;
            if !now.present {
                continue;
            }
            users
                .push(User {
                    x: now.x,
                    y: now.y,
                    emd: now.emd,
                    twin_bits: now.twin_bits,
                    data_bits: now.data_bits,
                    prev_data_bits: now.prev_data_bits,
                    prev_server,
                })
                .map_err(|_| capacity)?;
        }
        Slot::new(&servers, &users).map(Some)
    }

    /// Records the association decided for the current slot and moves to the next.
    /// It must have one in-range server per present user, in population order
    /// ([`Error::AssociationLength`], [`Error::AssociationIndex`]); after the last
    /// slot it is [`TraceError::End`].
    pub fn commit(&mut self, association: &[usize]) -> Result<(), Error> {
        let t = self.t;
        if t >= self.trace.slots() {
            return Err(TraceError::End.into());
        }
        let mut present = 0;
        for u in 0..self.trace.users() {
            present += usize::from(self.trace.user(t, u)?.present);
        }
        if association.len() != present {
            return Err(Error::AssociationLength {
                expected: present,
                got: association.len(),
            });
        }
        if let Some((user, &server)) = association
            .iter()
            .enumerate()
            .find(|(_, &s)| s >= self.trace.servers())
        {
            return Err(Error::AssociationIndex { user, server });
        }
        let mut decided = association.iter();
        for (u, prev) in self.prev.iter_mut().enumerate() {
            *prev = if self.trace.user(t, u)?.present {
                decided.next().copied()
            } else {
                None
            };
        }
        self.t += 1;
        Ok(())
    }
}

/// The line a replay prints for one slot, the same on the host (`diten replay`)
/// and the firmware:
///
/// `slot 3: association [4 0 7] gamma [0.000000000 1.000000000 0.250000000] objective 0.012345678`
///
/// γ and the objective with 9 decimals, so two runs can be compared to 1e-5 from
/// the text alone.
#[derive(Clone, Copy, Debug)]
pub struct SlotLine<'a> {
    /// Slot index, from 0.
    pub slot: usize,
    /// Server of each user.
    pub association: &'a [usize],
    /// γ of each user.
    pub gamma: &'a [f64],
    /// The slot's objective e.
    pub objective: f64,
}

impl fmt::Display for SlotLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {}: association [", self.slot)?;
        for (i, s) in self.association.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{s}")?;
        }
        f.write_str("] gamma [")?;
        for (i, &g) in self.gamma.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{}", Fixed9(g))?;
        }
        write!(f, "] objective {}", Fixed9(self.objective))
    }
}

/// A number printed with 9 decimals exactly as `format!("{:.9}", x)` prints it
/// (the exact value rounded, ties to even; `NaN`, `inf`, `-inf`; a `-` on every
/// negative number, −0 included), from the number's bits with integer
/// arithmetic. Core's float formatting (Grisu and Dragon4, about 15 KB on a
/// Cortex-M4F) is then not linked into a firmware that prints its figures.
#[derive(Clone, Copy, Debug)]
pub struct Fixed9(pub f64);

impl fmt::Display for Fixed9 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SCALE: u128 = 1_000_000_000;
        let x = self.0;
        if x.is_nan() {
            return f.write_str("NaN");
        }
        if x.is_sign_negative() {
            f.write_str("-")?;
        }
        if x.is_infinite() {
            return f.write_str("inf");
        }
        // |x| = m·2^e exactly.
        let bits = x.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let fraction = bits & ((1 << 52) - 1);
        let (m, e) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | 1 << 52, biased - 1075)
        };
        if e >= 0 {
            return write_integer(f, m, e.unsigned_abs()).and_then(|()| f.write_str(".000000000"));
        }
        // |x|·10⁹ = m·10⁹ / 2^shift, below 2^83 / 2^shift: rounded to an integer.
        let scaled = u128::from(m) * SCALE;
        let shift = e.unsigned_abs();
        let rounded = if shift >= 127 {
            0 // below 2^83 / 2^127: under a half
        } else {
            let (q, r, half) = (
                scaled >> shift,
                scaled & ((1 << shift) - 1),
                1 << (shift - 1),
            );
            q + u128::from(r > half || (r == half && q & 1 == 1))
        };
        // Below 2^83 / 2: the integer part fits a u64, the decimals a u32.
        let (int, decimals) = ((rounded / SCALE) as u64, (rounded % SCALE) as u32);
        write!(f, "{int}.{decimals:09}")
    }
}

/// Writes the integer m·2^e (m < 2^53, e ≤ 971) in decimal: limbs of 10⁹, least
/// significant first, doubled e times.
fn write_integer(f: &mut fmt::Formatter<'_>, m: u64, e: u32) -> fmt::Result {
    const BASE: u64 = 1_000_000_000;
    // 2^1024 < 10^309 < 10^(9·35).
    let mut limbs = [0u32; 35];
    let mut len = 0;
    let mut rest = m;
    while rest > 0 {
        let Some(limb) = limbs.get_mut(len) else {
            return Err(fmt::Error);
        };
        *limb = (rest % BASE) as u32;
        rest /= BASE;
        len += 1;
    }
    let mut left = e;
    while left > 0 {
        let k = left.min(32);
        left -= k;
        let mut carry = 0u64;
        for limb in limbs.iter_mut().take(len) {
            let v = (u64::from(*limb) << k) + carry;
            *limb = (v % BASE) as u32;
            carry = v / BASE;
        }
        while carry > 0 {
            let Some(limb) = limbs.get_mut(len) else {
                return Err(fmt::Error);
            };
            *limb = (carry % BASE) as u32;
            carry /= BASE;
            len += 1;
        }
    }
    let mut digits = limbs.iter().take(len).rev();
    match digits.next() {
        Some(top) => write!(f, "{top}")?,
        None => f.write_str("0")?,
    }
    for limb in digits {
        write!(f, "{limb:09}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::frame::crc32;

    /// `Fixed9` against core's `{:.9}`: every kind of number (bit patterns
    /// drawn over all exponents, subnormals, zeros, infinities, NaN), numbers in
    /// the range the lines print, and exact ties (odd multiples of 2⁻¹⁰, half a
    /// unit of the 9th decimal from two neighbours, rounded to even).
    #[test]
    fn fixed9_prints_what_the_9_decimal_format_prints() {
        use std::format;
        let check = |x: f64| {
            assert_eq!(
                Fixed9(x).to_string(),
                format!("{x:.9}"),
                "bits {:#x}",
                x.to_bits()
            );
        };
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
        ] {
            check(x);
        }
        for x in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            2e9,
            0.9999999995,
            0.99999999949,
        ] {
            check(x);
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for _ in 0..300_000 {
            check(f64::from_bits(next()));
            let unit = (next() >> 11) as f64 / (1u64 << 53) as f64;
            check(4.0 * unit - 2.0);
            check(unit * 1e-6);
        }
        for m in 0..200_000u32 {
            check(f64::from(m) / 1024.0);
            check(-f64::from(2 * m + 1) / 2048.0);
        }
    }

    fn server(x: f64) -> Server {
        Server {
            x,
            y: 0.0,
            p: 125.0,
            q: 1450.0,
            eps: 55.0,
            available: true,
        }
    }

    /// User `u`'s record of slot `t`: data 1000·(10t + u + 1) bits, and the
    /// slot before the first 7 + u.
    fn user(t: usize, u: usize) -> TraceUser {
        let data = |t: usize| 1000.0 * (10 * t + u + 1) as f64;
        TraceUser {
            x: t as f64,
            y: u as f64,
            emd: 0.2,
            twin_bits: 4500.0,
            data_bits: data(t),
            prev_data_bits: t.checked_sub(1).map_or(7.0 + u as f64, data),
            present: true,
        }
    }

    /// A trace of 2 users, 3 servers and 3 slots, no churn.
    fn sample() -> Vec<u8> {
        let servers = [server(0.0), server(50.0), server(100.0)];
        let slots: Vec<TraceUser> = (0..3)
            .flat_map(|t| (0..2).map(move |u| user(t, u)))
            .collect();
        let mut out = vec![0u8; encoded_len(2, 3, 3).unwrap()];
        let len = encode(
            &Params::default(),
            &servers,
            2,
            &[true; 9],
            &slots,
            &mut out,
        )
        .unwrap();
        assert_eq!(len, out.len());
        out
    }

    #[test]
    fn layout_by_hand() {
        let bytes = sample();
        // 22 + 8 · (23 params + 3·5 servers + 3 slots · (3 flags + 2·7 values))
        assert_eq!(bytes.len(), 22 + 8 * (23 + 15 + 3 * 17));
        assert_eq!(&bytes[..4], b"DTNT");
        assert_eq!(bytes[4..6], [3, 0]);
        assert_eq!(bytes[6..8], [2, 0]);
        assert_eq!(bytes[8..10], [3, 0]);
        assert_eq!(bytes[10..14], [3, 0, 0, 0]);
        assert_eq!(bytes[14..18], (8u32 * 89).to_le_bytes());
        let value =
            |i: usize| f64::from_le_bytes(bytes[22 + 8 * i..30 + 8 * i].try_into().unwrap());
        // The payload opens with alpha[0]; the second server's x follows the 23
        // params and the first server's 5 values.
        assert_eq!(value(0), 0.8862);
        assert_eq!(value(28), 50.0);
        // Slot 0: three flags from value 38, then user 0 (x, y, emd, twin, data,
        // prev data, present) and user 1; slot 1 starts 17 values later.
        assert_eq!([value(38), value(39), value(40)], [1.0; 3]);
        assert_eq!(value(41 + 4), 1000.0);
        assert_eq!(value(41 + 5), 7.0);
        assert_eq!(value(41 + 6), 1.0);
        assert_eq!(value(48 + 1), 1.0);
        assert_eq!(value(55 + 3 + 4), 11000.0);
    }

    #[test]
    fn cost_norm_is_the_last_parameter() {
        let servers = [server(0.0)];
        let linear = Params {
            cost_norm: CostNorm::Linear,
            ..Params::default()
        };
        let mut out = vec![0u8; encoded_len(1, 1, 1).unwrap()];
        encode(&linear, &servers, 1, &[true], &[user(0, 0)], &mut out).unwrap();
        // Value 23 of the payload (index 22) is the code: 1.0 for linear.
        let at = 22 + 8 * 22;
        assert_eq!(out[at..at + 8], 1.0f64.to_le_bytes());
        assert_eq!(
            Trace::parse(&out).unwrap().params().cost_norm,
            CostNorm::Linear
        );
        // A code that names no cost normalisation is refused, CRC fixed up or not.
        out[at..at + 8].copy_from_slice(&2.0f64.to_le_bytes());
        let crc = crc32(&out[22..]);
        out[18..22].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Trace::parse(&out).unwrap_err(),
            Error::Param {
                field: "cost_norm",
                problem: Problem::OutOfRange
            }
        );
    }

    #[test]
    fn replay_carries_the_association_and_data_forward() {
        let bytes = sample();
        let trace = Trace::parse(&bytes).unwrap();
        assert_eq!(*trace.params(), Params::default());
        let mut replay: Replay<'_, 4, 4> = Replay::new(trace).unwrap();
        let s0 = replay.status().unwrap().unwrap();
        assert_eq!(s0.servers()[1], server(50.0));
        assert_eq!(s0.users()[1].prev_server, None);
        assert_eq!(s0.users()[1].prev_data_bits, 8.0);
        assert_eq!(s0.users()[1].data_bits, 2000.0);
        assert_eq!(
            replay.commit(&[0]),
            Err(Error::AssociationLength {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            replay.commit(&[0, 3]),
            Err(Error::AssociationIndex { user: 1, server: 3 })
        );
        replay.commit(&[2, 1]).unwrap();
        let s1 = replay.status().unwrap().unwrap();
        assert_eq!(s1.users()[0].prev_server, Some(2));
        assert_eq!(s1.users()[1].prev_server, Some(1));
        assert_eq!(s1.users()[1].prev_data_bits, 2000.0);
        assert_eq!(s1.users()[1].data_bits, 12000.0);
        assert_eq!(s1.users()[1].x, 1.0);
        replay.commit(&[0, 0]).unwrap();
        replay.commit(&[1, 1]).unwrap();
        assert_eq!(replay.slot_index(), 3);
        assert!(replay.status().unwrap().is_none());
        assert_eq!(replay.commit(&[1, 1]), Err(Error::Trace(TraceError::End)));
    }

    /// SPEC §2.2a in a replay: 3 users and 2 servers over 3 slots; in slot 1
    /// user 1 is away and server 1 down, in slot 2 user 1 is back (joined: no
    /// previous server) and server 1 up again.
    #[test]
    fn replay_follows_churn() {
        let servers = [server(0.0), server(50.0)];
        let mut records: Vec<TraceUser> = (0..3)
            .flat_map(|t| (0..3).map(move |u| user(t, u)))
            .collect();
        records[3 + 1].present = false;
        // An absent user's values are not read.
        records[3 + 1].data_bits = f64::NAN;
        let available = [true, true, true, false, true, true];
        let mut out = vec![0u8; encoded_len(3, 2, 3).unwrap()];
        encode(
            &Params::default(),
            &servers,
            3,
            &available,
            &records,
            &mut out,
        )
        .unwrap();
        let trace = Trace::parse(&out).unwrap();
        assert!(!trace.available(1, 1).unwrap());
        let mut replay: Replay<'_, 4, 4> = Replay::new(trace).unwrap();
        replay.commit(&[1, 1, 0]).unwrap();

        let s1 = replay.status().unwrap().unwrap();
        assert_eq!(s1.users().len(), 2);
        assert!(s1.available(0) && !s1.available(1));
        // Users 0 and 2, their previous servers as committed (server 1 is down
        // now: user 0 must migrate).
        assert_eq!(s1.users()[0].prev_server, Some(1));
        assert_eq!(s1.users()[1].prev_server, Some(0));
        assert_eq!(s1.users()[1].data_bits, user(1, 2).data_bits);
        assert_eq!(
            replay.commit(&[0, 0, 0]),
            Err(Error::AssociationLength {
                expected: 2,
                got: 3
            })
        );
        replay.commit(&[0, 0]).unwrap();

        let s2 = replay.status().unwrap().unwrap();
        assert_eq!(s2.users().len(), 3);
        assert!(s2.available(1));
        assert_eq!(s2.users()[0].prev_server, Some(0));
        assert_eq!(s2.users()[1].prev_server, None);
        assert_eq!(s2.users()[1].prev_data_bits, user(2, 1).prev_data_bits);
        assert_eq!(s2.users()[2].prev_server, Some(0));
        replay.commit(&[1, 1, 1]).unwrap();
        assert!(replay.status().unwrap().is_none());
    }

    #[test]
    fn flags_must_be_zero_or_one() {
        let servers = [server(0.0)];
        let mut out = vec![0u8; encoded_len(1, 1, 1).unwrap()];
        encode(
            &Params::default(),
            &servers,
            1,
            &[true],
            &[user(0, 0)],
            &mut out,
        )
        .unwrap();
        // Value 28 is slot 0's flag of server 0; 28 + 1 + 6 user 0's `present`.
        for (value, field) in [(28, "available"), (35, "present")] {
            let mut bad = out.clone();
            bad[22 + 8 * value..30 + 8 * value].copy_from_slice(&0.5f64.to_le_bytes());
            let crc = crc32(&bad[22..]);
            bad[18..22].copy_from_slice(&crc.to_le_bytes());
            let trace = Trace::parse(&bad).unwrap();
            let replay: Replay<'_, 2, 2> = Replay::new(trace).unwrap();
            assert_eq!(
                replay.status().err(),
                Some(Error::Trace(TraceError::Flag {
                    field,
                    slot: 0,
                    index: 0
                }))
            );
        }
    }

    #[test]
    fn capacity_is_checked() {
        let bytes = sample();
        let trace = Trace::parse(&bytes).unwrap();
        assert_eq!(
            Replay::<'_, 1, 4>::new(trace).err(),
            Some(Error::TooManyUsers {
                count: 2,
                capacity: 1
            })
        );
        assert_eq!(
            Replay::<'_, 4, 2>::new(trace).err(),
            Some(Error::TooManyServers {
                count: 3,
                capacity: 2
            })
        );
    }

    #[track_caller]
    fn check(bytes: &[u8], expected: Error) {
        assert_eq!(Trace::parse(bytes).err(), Some(expected));
    }

    #[test]
    fn bad_traces_are_errors() {
        let good = sample();
        let n = good.len();
        check(
            &[],
            Error::Trace(TraceError::Truncated {
                expected: 22,
                got: 0,
            }),
        );
        check(
            b"DTN",
            Error::Trace(TraceError::Truncated {
                expected: 22,
                got: 3,
            }),
        );
        check(b"XY", Error::Trace(TraceError::Magic));
        let mut bad = good.clone();
        bad[0] = b'X';
        check(&bad, Error::Trace(TraceError::Magic));
        let mut bad = good.clone();
        bad[4] = 2;
        check(&bad, Error::Trace(TraceError::Version { found: 2 }));
        let mut bad = good.clone();
        bad[6] = 0;
        check(
            &bad,
            Error::Trace(TraceError::Dims {
                field: "users",
                value: 0,
            }),
        );
        let mut bad = good.clone();
        bad[10..14].copy_from_slice(&0u32.to_le_bytes());
        check(
            &bad,
            Error::Trace(TraceError::Dims {
                field: "slots",
                value: 0,
            }),
        );
        let mut bad = good.clone();
        bad[10] = 4;
        check(
            &bad,
            Error::Trace(TraceError::Length {
                expected: 8 * (38 + 4 * 17),
                got: 8 * 89,
            }),
        );
        check(
            &good[..n - 1],
            Error::Trace(TraceError::Truncated {
                expected: n,
                got: n - 1,
            }),
        );
        let mut long = good.clone();
        long.push(0);
        check(
            &long,
            Error::Trace(TraceError::Trailing {
                expected: n,
                got: n + 1,
            }),
        );
        let mut bad = good.clone();
        bad[n - 1] ^= 1;
        let computed = crc32(&bad[22..]);
        let stored = u32::from_le_bytes(bad[18..22].try_into().unwrap());
        check(&bad, Error::Trace(TraceError::Crc { stored, computed }));
        // Bad parameters with a good CRC: beta1 = NaN.
        let mut bad = good.clone();
        bad[22 + 6 * 8..22 + 7 * 8].copy_from_slice(&f64::NAN.to_le_bytes());
        let crc = crc32(&bad[22..]);
        bad[18..22].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Trace::parse(&bad).err(),
            Some(Error::Param { field: "beta1", .. })
        ));
    }

    #[test]
    fn bad_slot_values_are_errors_of_the_status() {
        let servers = [server(0.0)];
        let mut u = user(0, 0);
        u.data_bits = -1.0;
        let mut out = vec![0u8; 512];
        let len = encode(&Params::default(), &servers, 1, &[true], &[u], &mut out).unwrap();
        let trace = Trace::parse(&out[..len]).unwrap();
        let replay: Replay<'_, 2, 2> = Replay::new(trace).unwrap();
        assert!(matches!(
            replay.status(),
            Err(Error::User {
                index: 0,
                field: "data_bits",
                ..
            })
        ));
    }

    #[test]
    fn encode_checks_its_inputs() {
        let servers = [server(0.0)];
        let params = Params::default();
        let mut small = [0u8; 10];
        assert_eq!(
            encode(&params, &servers, 1, &[true], &[user(0, 0)], &mut small),
            Err(Error::Trace(TraceError::Buffer {
                expected: 22 + 8 * (23 + 5 + 8),
                got: 10
            }))
        );
        let mut out = [0u8; 1024];
        // One record for a population of 2.
        assert_eq!(
            encode(&params, &servers, 2, &[true], &[user(0, 0)], &mut out),
            Err(Error::Trace(TraceError::Dims {
                field: "slots",
                value: 1
            }))
        );
        // Two slots of records, one slot of flags.
        assert_eq!(
            encode(
                &params,
                &servers,
                1,
                &[true],
                &[user(0, 0), user(1, 0)],
                &mut out
            ),
            Err(Error::Trace(TraceError::Dims {
                field: "slots",
                value: 2
            }))
        );
        assert_eq!(
            encode(&params, &[], 1, &[], &[user(0, 0)], &mut out),
            Err(Error::Trace(TraceError::Dims {
                field: "servers",
                value: 0
            }))
        );
        assert_eq!(
            encode(&params, &servers, 0, &[], &[], &mut out),
            Err(Error::Trace(TraceError::Dims {
                field: "users",
                value: 0
            }))
        );
    }

    #[test]
    fn slot_line() {
        let line = SlotLine {
            slot: 3,
            association: &[4, 0],
            gamma: &[0.0, 0.25],
            objective: -0.5,
        };
        assert_eq!(
            line.to_string(),
            "slot 3: association [4 0] gamma [0.000000000 0.250000000] objective -0.500000000"
        );
    }
}
