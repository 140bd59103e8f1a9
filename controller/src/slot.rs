//! The gateway's status for one slot: servers, users and last slot's association.

use serde::Deserialize;

use crate::error::{Error, Problem};

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
    /// Whether the server can host twins this slot (SPEC §2.2a; default true). An
    /// unavailable server hosts nobody; its former users migrate away from it.
    #[serde(default = "available_by_default")]
    pub available: bool,
}

fn available_by_default() -> bool {
    true
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
    /// user and one available server (SPEC §2.2a: a user's `prev_server` may be
    /// unavailable; it then has to move), no more than the capacities.
    pub fn new(servers: &[Server], users: &[User]) -> Result<Self, Error> {
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        if !servers.iter().any(|s| s.available) {
            return Err(Error::NoAvailableServers);
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

    /// Checks that every server and user lies in the square area `[0, side]²`
    /// (SPEC §2's `area`, 120 m by default). [`Slot::new`] does not need it: the
    /// model is defined for any finite position. A gateway that knows its area
    /// calls this to reject positions a faulty sensor or a unit mix-up put outside
    /// it: [`Error::Server`] or [`Error::User`] with field `x` or `y` and
    /// [`Problem::OutsideArea`]; a `side` that is not finite and > 0 is
    /// [`Error::Param`] with field `area`.
    pub fn check_area(&self, side: f64) -> Result<(), Error> {
        if !side.is_finite() {
            return Err(Error::Param {
                field: "area",
                problem: Problem::NotFinite,
            });
        }
        if side <= 0.0 {
            return Err(Error::Param {
                field: "area",
                problem: Problem::NotPositive,
            });
        }
        let inside = |v: f64| (0.0..=side).contains(&v);
        let outside = |x: f64, y: f64| {
            if !inside(x) {
                Some("x")
            } else if !inside(y) {
                Some("y")
            } else {
                None
            }
        };
        for (index, s) in self.servers.iter().enumerate() {
            if let Some(field) = outside(s.x, s.y) {
                return Err(Error::Server {
                    index,
                    field,
                    problem: Problem::OutsideArea,
                });
            }
        }
        for (index, u) in self.users.iter().enumerate() {
            if let Some(field) = outside(u.x, u.y) {
                return Err(Error::User {
                    index,
                    field,
                    problem: Problem::OutsideArea,
                });
            }
        }
        Ok(())
    }

    /// Whether server `s` exists and is available this slot.
    #[inline]
    pub fn available(&self, s: usize) -> bool {
        self.servers.get(s).is_some_and(|srv| srv.available)
    }

    /// Checks an association: one in-range, available server index per user.
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
            if !self.available(server) {
                return Err(Error::AssociationUnavailable { user, server });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Each invalid status is its own named error; `Display` names the field as
    //! `diten solve`'s JSON spells it.

    extern crate std;

    use std::string::ToString;

    use super::*;

    /// A valid server (also the model's tests' fixture).
    pub(crate) fn server() -> Server {
        Server {
            x: 10.0,
            y: 20.0,
            p: 125.0,
            q: 1450.0,
            eps: 55.0,
            available: true,
        }
    }

    /// A valid user of [`server`] (also the model's tests' fixture).
    pub(crate) fn user() -> User {
        User {
            x: 3.0,
            y: 4.0,
            emd: 0.2,
            twin_bits: 4500.0,
            data_bits: 784_000.0,
            prev_data_bits: 392_000.0,
            prev_server: Some(0),
        }
    }

    /// `Slot::<2, 2>::new` on `servers` and `users` gives `expected`, displayed as `text`.
    #[track_caller]
    fn check(servers: &[Server], users: &[User], expected: Error, text: &str) {
        let got = Slot::<2, 2>::new(servers, users).unwrap_err();
        assert_eq!(got, expected);
        assert_eq!(got.to_string(), text);
    }

    /// A number field of a user or a server, for table-driven cases.
    type UserField = fn(&mut User) -> &mut f64;
    type ServerField = fn(&mut Server) -> &mut f64;

    fn bad_user(index: usize, field: &'static str, problem: Problem) -> Error {
        Error::User {
            index,
            field,
            problem,
        }
    }

    fn bad_server(index: usize, field: &'static str, problem: Problem) -> Error {
        Error::Server {
            index,
            field,
            problem,
        }
    }

    #[test]
    fn a_valid_slot_is_kept_as_given() {
        let slot = Slot::<2, 2>::new(&[server(), server()], &[user()]).unwrap();
        assert_eq!(slot.servers(), [server(), server()]);
        assert_eq!(slot.users(), [user()]);
        // Zero sizes are valid (SPEC §2.1).
        let zero = User {
            twin_bits: 0.0,
            data_bits: 0.0,
            prev_data_bits: 0.0,
            emd: 0.0,
            prev_server: None,
            ..user()
        };
        assert!(Slot::<2, 2>::new(&[server()], &[zero]).is_ok());
    }

    #[test]
    fn empty_lists() {
        check(
            &[],
            &[user()],
            Error::NoServers,
            "servers: at least one server is required",
        );
        check(
            &[server()],
            &[],
            Error::NoUsers,
            "users: at least one user is required",
        );
        let down = Server {
            available: false,
            ..server()
        };
        check(
            &[down, down],
            &[user()],
            Error::NoAvailableServers,
            "servers: at least one server must be available",
        );
    }

    /// SPEC §2.2a: a user may have been on a server that is down now (it must
    /// move), but no association may name an unavailable server.
    #[test]
    fn unavailable_servers_host_nobody() {
        let down = Server {
            available: false,
            ..server()
        };
        let on_down = User {
            prev_server: Some(1),
            ..user()
        };
        let slot = Slot::<2, 2>::new(&[server(), down], &[on_down, user()]).unwrap();
        assert!(slot.available(0) && !slot.available(1) && !slot.available(2));
        assert_eq!(slot.check_association(&[0, 0]), Ok(()));
        let got = slot.check_association(&[0, 1]).unwrap_err();
        assert_eq!(got, Error::AssociationUnavailable { user: 1, server: 1 });
        assert_eq!(
            got.to_string(),
            "association[1]: server 1 is unavailable this slot"
        );
    }

    #[test]
    fn over_capacity() {
        let three = [server(); 3];
        check(
            &three,
            &[user()],
            Error::TooManyServers {
                count: 3,
                capacity: 2,
            },
            "servers: 3 servers exceed the capacity of 2",
        );
        check(
            &[server()],
            &[user(); 3],
            Error::TooManyUsers {
                count: 3,
                capacity: 2,
            },
            "users: 3 users exceed the capacity of 2",
        );
    }

    #[test]
    fn non_finite_numbers() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = Server { q: v, ..server() };
            check(
                &[server(), s],
                &[user()],
                bad_server(1, "q", Problem::NotFinite),
                "servers[1].q: must be a finite number",
            );
            let s = Server { x: v, ..server() };
            check(
                &[s],
                &[user()],
                bad_server(0, "x", Problem::NotFinite),
                "servers[0].x: must be a finite number",
            );
            let u = User {
                data_bits: v,
                ..user()
            };
            check(
                &[server()],
                &[user(), u],
                bad_user(1, "data_bits", Problem::NotFinite),
                "users[1].data_bits: must be a finite number",
            );
            let u = User { y: v, ..user() };
            check(
                &[server()],
                &[u],
                bad_user(0, "y", Problem::NotFinite),
                "users[0].y: must be a finite number",
            );
            let u = User { emd: v, ..user() };
            check(
                &[server()],
                &[u],
                bad_user(0, "emd", Problem::NotFinite),
                "users[0].emd: must be a finite number",
            );
        }
    }

    #[test]
    fn negative_sizes() {
        let sizes: [(&str, UserField); 3] = [
            ("twin_bits", |u| &mut u.twin_bits),
            ("data_bits", |u| &mut u.data_bits),
            ("prev_data_bits", |u| &mut u.prev_data_bits),
        ];
        for (field, at) in sizes {
            let mut u = user();
            *at(&mut u) = -1e-300;
            check(
                &[server()],
                &[u],
                bad_user(0, field, Problem::Negative),
                &std::format!("users[0].{field}: must be >= 0"),
            );
        }
    }

    #[test]
    fn capacities_must_be_positive() {
        let fields: [(&str, ServerField); 3] = [
            ("p", |s| &mut s.p),
            ("q", |s| &mut s.q),
            ("eps", |s| &mut s.eps),
        ];
        for (field, at) in fields {
            for v in [0.0, -0.0, -3.0] {
                let mut s = server();
                *at(&mut s) = v;
                check(
                    &[s],
                    &[user()],
                    bad_server(0, field, Problem::NotPositive),
                    &std::format!("servers[0].{field}: must be > 0"),
                );
            }
        }
    }

    #[test]
    fn emd_outside_zero_to_two() {
        for v in [-1e-9, 2.0 + 1e-9] {
            let u = User { emd: v, ..user() };
            check(
                &[server()],
                &[u],
                bad_user(0, "emd", Problem::OutOfRange),
                "users[0].emd: is out of range",
            );
        }
    }

    #[test]
    fn previous_server_out_of_range() {
        let u = User {
            prev_server: Some(2),
            ..user()
        };
        check(
            &[server(), server()],
            &[user(), u],
            bad_user(1, "prev_server", Problem::OutOfRange),
            "users[1].prev_server: is out of range",
        );
    }

    #[test]
    fn association_checks() {
        let slot = Slot::<2, 2>::new(&[server(), server()], &[user(), user()]).unwrap();
        assert_eq!(slot.check_association(&[0, 1]), Ok(()));
        let e = slot.check_association(&[0]).unwrap_err();
        assert_eq!(
            e,
            Error::AssociationLength {
                expected: 2,
                got: 1
            }
        );
        assert_eq!(e.to_string(), "association: 1 entries for 2 users");
        let e = slot.check_association(&[0, 2]).unwrap_err();
        assert_eq!(e, Error::AssociationIndex { user: 1, server: 2 });
        assert_eq!(e.to_string(), "association[1]: server 2 does not exist");
    }

    #[test]
    fn positions_outside_the_area() {
        let slot = |s: Server, u: User| Slot::<2, 2>::new(&[server(), s], &[user(), u]).unwrap();
        assert_eq!(slot(server(), user()).check_area(120.0), Ok(()));
        // The edges belong to the area.
        let corner = Server {
            x: 0.0,
            y: 120.0,
            ..server()
        };
        assert_eq!(slot(corner, user()).check_area(120.0), Ok(()));

        let far = Server {
            y: 120.5,
            ..server()
        };
        let e = slot(far, user()).check_area(120.0).unwrap_err();
        assert_eq!(e, bad_server(1, "y", Problem::OutsideArea));
        assert_eq!(e.to_string(), "servers[1].y: lies outside the area");
        let west = User { x: -0.1, ..user() };
        let e = slot(server(), west).check_area(120.0).unwrap_err();
        assert_eq!(e, bad_user(1, "x", Problem::OutsideArea));
        assert_eq!(e.to_string(), "users[1].x: lies outside the area");

        let ok = slot(server(), user());
        for (side, problem) in [
            (f64::NAN, Problem::NotFinite),
            (f64::INFINITY, Problem::NotFinite),
            (0.0, Problem::NotPositive),
            (-5.0, Problem::NotPositive),
        ] {
            let e = ok.check_area(side).unwrap_err();
            assert_eq!(
                e,
                Error::Param {
                    field: "area",
                    problem
                }
            );
            assert!(e.to_string().starts_with("params.area: "));
        }
    }

    #[test]
    fn errors_are_std_errors() {
        fn takes(_: &dyn core::error::Error) {}
        takes(&Error::NoUsers);
    }
}
