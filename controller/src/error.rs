//! Error values of the controller: small, `Copy`, no heap, printable.

use core::fmt;

/// What is wrong with a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// NaN or ±∞.
    NotFinite,
    /// Below zero where zero or more is required.
    Negative,
    /// Zero or below where a strictly positive value is required.
    NotPositive,
    /// Outside the documented range of the field.
    OutOfRange,
}

impl Problem {
    fn text(self) -> &'static str {
        match self {
            Problem::NotFinite => "must be a finite number",
            Problem::Negative => "must be >= 0",
            Problem::NotPositive => "must be > 0",
            Problem::OutOfRange => "is out of range",
        }
    }
}

/// Every way an input to the model, the solver or the decision can be invalid.
///
/// `Display` names the offending field the way the JSON contract of `diten solve`
/// spells it (`users[3].data_bits: must be >= 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The slot has no users.
    NoUsers,
    /// The slot has no servers.
    NoServers,
    /// More users than the compile-time capacity.
    TooManyUsers {
        /// Users given.
        count: usize,
        /// Capacity of the container.
        capacity: usize,
    },
    /// More servers than the compile-time capacity.
    TooManyServers {
        /// Servers given.
        count: usize,
        /// Capacity of the container.
        capacity: usize,
    },
    /// A user field is invalid.
    User {
        /// Index of the user.
        index: usize,
        /// Name of the field as in JSON.
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
    /// A server field is invalid.
    Server {
        /// Index of the server.
        index: usize,
        /// Name of the field as in JSON.
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
    /// A model parameter is invalid.
    Param {
        /// Name of the parameter as in JSON/TOML (`alpha`, `beta1`, ...).
        field: &'static str,
        /// What is wrong.
        problem: Problem,
    },
    /// `alpha` and this user's EMD give a utility exponent v(φ) outside (0, 1]:
    /// the utility would not be concave in the data size and the γ solver's
    /// optimality proof would not hold.
    UtilityExponent {
        /// Index of the user whose `emd` gives the bad exponent.
        user: usize,
    },
    /// The association does not have one entry per user.
    AssociationLength {
        /// Number of users.
        expected: usize,
        /// Entries given.
        got: usize,
    },
    /// The observation buffer is shorter than the observation.
    ObservationLength {
        /// Values the observation needs.
        expected: usize,
        /// Length of the buffer given.
        got: usize,
    },
    /// An association entry names a server that does not exist.
    AssociationIndex {
        /// The user whose entry is wrong.
        user: usize,
        /// The server index given.
        server: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoUsers => f.write_str("users: at least one user is required"),
            Error::NoServers => f.write_str("servers: at least one server is required"),
            Error::TooManyUsers { count, capacity } => {
                write!(f, "users: {count} users exceed the capacity of {capacity}")
            }
            Error::TooManyServers { count, capacity } => {
                write!(f, "servers: {count} servers exceed the capacity of {capacity}")
            }
            Error::User { index, field, problem } => {
                write!(f, "users[{index}].{field}: {}", problem.text())
            }
            Error::Server { index, field, problem } => {
                write!(f, "servers[{index}].{field}: {}", problem.text())
            }
            Error::Param { field, problem } => write!(f, "params.{field}: {}", problem.text()),
            Error::UtilityExponent { user } => write!(
                f,
                "users[{user}].emd: with params.alpha the utility exponent v(emd) must lie in (0, 1]"
            ),
            Error::AssociationLength { expected, got } => {
                write!(f, "association: {got} entries for {expected} users")
            }
            Error::ObservationLength { expected, got } => {
                write!(f, "obs: {got} values for an observation of {expected}")
            }
            Error::AssociationIndex { user, server } => {
                write!(f, "association[{user}]: server {server} does not exist")
            }
        }
    }
}

impl core::error::Error for Error {}
