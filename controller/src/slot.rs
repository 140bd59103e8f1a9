//! The gateway's status for one slot: servers, users and last slot's association.

use serde::Deserialize;

use crate::error::{Error, Problem};
use crate::params::Params;

/// Default user capacity of [`Slot`] (compile-time; the firmware picks its own).
pub const MAX_USERS: usize = 64;
/// Default server capacity of [`Slot`].
pub const MAX_SERVERS: usize = 64;

/// An edge server as the gateway sees it.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Position, metres.
    pub x: f64,
    /// Position, metres.
    pub y: f64,
    /// Communication capacity p_s (bound of C3).
    pub p: f64,
    /// Computation capacity q_s (bound of C2).
    pub q: f64,
    /// CPU cycles per unit of data ε_s.
    pub eps: f64,
}

/// A user (and its digital twin) in this slot.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Position, metres.
    pub x: f64,
    /// Position, metres.
    pub y: f64,
    /// EMD φ_u of the user's data, in [0, 2].
    pub emd: f64,
    /// Twin base data D_twin, bits.
    pub twin_bits: f64,
    /// Training data of this slot D_{u,t}, bits.
    pub data_bits: f64,
    /// Training data of the previous slot D_{u,t−1}, bits.
    pub prev_data_bits: f64,
    /// Server of the previous slot; `None` in the first slot (no migration cost).
    pub prev_server: Option<usize>,
}

/// Manhattan distance between two points.
#[inline]
pub fn manhattan(ax: f64, ay: f64, bx: f64, by: f64) -> f64 {
    libm::fabs(ax - bx) + libm::fabs(ay - by)
}

/// One slot's status with capacities fixed at compile time.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot<const U: usize = MAX_USERS, const S: usize = MAX_SERVERS> {
    servers: heapless::Vec<Server, S>,
    users: heapless::Vec<User, U>,
}

fn check_finite<E>(v: f64, err: impl Fn(Problem) -> E) -> Result<(), E> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(err(Problem::NotFinite))
    }
}

impl<const U: usize, const S: usize> Slot<U, S> {
    /// Copies and validates a slot. Every number must be finite; sizes ≥ 0;
    /// `p`, `q`, `eps` > 0; `emd` in [0, 2]; `prev_server` in range; at least one
    /// user and one server, no more than the capacities.
    pub fn new(servers: &[Server], users: &[User]) -> Result<Self, Error> {
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        if users.is_empty() {
            return Err(Error::NoUsers);
        }
        if servers.len() > S {
            return Err(Error::TooManyServers {
                count: servers.len(),
                capacity: S,
            });
        }
        if users.len() > U {
            return Err(Error::TooManyUsers {
                count: users.len(),
                capacity: U,
            });
        }
        for (index, s) in servers.iter().enumerate() {
            let bad = |field: &'static str| {
                move |problem| Error::Server {
                    index,
                    field,
                    problem,
                }
            };
            check_finite(s.x, bad("x"))?;
            check_finite(s.y, bad("y"))?;
            for (field, v) in [("p", s.p), ("q", s.q), ("eps", s.eps)] {
                check_finite(v, bad(field))?;
                if v <= 0.0 {
                    return Err(Error::Server {
                        index,
                        field,
                        problem: Problem::NotPositive,
                    });
                }
            }
        }
        for (index, u) in users.iter().enumerate() {
            let bad = |field: &'static str| {
                move |problem| Error::User {
                    index,
                    field,
                    problem,
                }
            };
            check_finite(u.x, bad("x"))?;
            check_finite(u.y, bad("y"))?;
            check_finite(u.emd, bad("emd"))?;
            if !(0.0..=2.0).contains(&u.emd) {
                return Err(Error::User {
                    index,
                    field: "emd",
                    problem: Problem::OutOfRange,
                });
            }
            for (field, v) in [
                ("twin_bits", u.twin_bits),
                ("data_bits", u.data_bits),
                ("prev_data_bits", u.prev_data_bits),
            ] {
                check_finite(v, bad(field))?;
                if v < 0.0 {
                    return Err(Error::User {
                        index,
                        field,
                        problem: Problem::Negative,
                    });
                }
            }
            if let Some(p) = u.prev_server {
                if p >= servers.len() {
                    return Err(Error::User {
                        index,
                        field: "prev_server",
                        problem: Problem::OutOfRange,
                    });
                }
            }
        }
        let mut slot = Slot {
            servers: heapless::Vec::new(),
            users: heapless::Vec::new(),
        };
        // Capacities were checked above, so these never fail; map anyway (no panics).
        slot.servers
            .extend_from_slice(servers)
            .map_err(|_| Error::TooManyServers {
                count: servers.len(),
                capacity: S,
            })?;
        slot.users
            .extend_from_slice(users)
            .map_err(|_| Error::TooManyUsers {
                count: users.len(),
                capacity: U,
            })?;
        Ok(slot)
    }

    /// The servers.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The users.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// Checks that `params` and every user's EMD give a utility exponent in (0, 1]
    /// (see [`Error::UtilityExponent`]) and that the parameters are valid.
    pub fn check_params(&self, params: &Params) -> Result<(), Error> {
        params.validate()?;
        for (user, u) in self.users.iter().enumerate() {
            let v = crate::model::exponent(params, u.emd);
            if !(v > 0.0 && v <= 1.0) {
                return Err(Error::UtilityExponent { user });
            }
        }
        Ok(())
    }

    /// Checks an association: one in-range server index per user.
    pub fn check_association(&self, association: &[usize]) -> Result<(), Error> {
        if association.len() != self.users.len() {
            return Err(Error::AssociationLength {
                expected: self.users.len(),
                got: association.len(),
            });
        }
        for (user, &server) in association.iter().enumerate() {
            if server >= self.servers.len() {
                return Err(Error::AssociationIndex { user, server });
            }
        }
        Ok(())
    }
}
