//! Scenario configuration (TOML): everything that defines an edge network and its
//! episodes, with SPEC §2's defaults.
//!
//! ```toml
//! users = 20
//! servers = 15
//! slots = 750              # T, slots per episode
//! seed = 1
//! emd = 0.2                # φ for every user, or a list with one value per user
//! area_m = 120.0
//! samples = [200, 2000]    # images a user uploads per slot, inclusive
//! twin_bits = [4.4e3, 4.6e3]
//! q = [1.4e3, 1.5e3]       # computation capacity of a server
//! p = [120.0, 150.0]       # communication capacity of a server
//! eps = [54.0, 56.0]       # CPU cycles per unit of data
//!
//! [mobility]
//! model = "random-waypoint"  # or "static"
//! speed = [1.0, 3.0]         # metres per slot
//!
//! [params]                   # the model constants of SPEC §2, by name
//! beta1 = 0.3
//!
//! [churn]                    # SPEC §2.2a; absent: no churn
//! leave_p = 0.02             # a present user leaves, per slot
//! join_p = 0.1               # an absent user returns, per slot
//! fail_p = 0.005             # an available server goes down, per slot
//! down = [5, 50]             # slots a server stays down, inclusive
//! ```
//!
//! Every key is optional; unknown keys and out-of-range values are rejected with a
//! message that names the key ([`Scenario::from_toml`], [`Scenario::validate`]).

use std::path::Path;

use anyhow::Context;
use diten_controller::{model::exponent, Params, MAX_SERVERS, MAX_USERS};
use serde::{Deserialize, Serialize};

/// φ (the EMD of a user's data): one value for the whole scenario or one per user.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Emd {
    /// The same φ for every user.
    All(f64),
    /// φ of each user, in user order (length = `users`).
    PerUser(Vec<f64>),
}

impl Emd {
    /// φ of user `u`.
    pub fn of(&self, u: usize) -> f64 {
        match self {
            Emd::All(v) => *v,
            Emd::PerUser(v) => v.get(u).copied().unwrap_or(f64::NAN),
        }
    }
}

/// How users move between slots (SPEC §2.2).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Mobility {
    /// Random waypoint: walk straight to a waypoint drawn uniformly in the area at a
    /// speed drawn uniformly from `speed` (metres per slot); on arrival draw a new
    /// waypoint and speed.
    RandomWaypoint {
        /// Speed range, metres per slot, inclusive.
        #[serde(default = "default_speed")]
        speed: [f64; 2],
    },
    /// Users never move.
    Static,
}

/// Users and servers coming and going (SPEC §2.2a). Each slot after the first,
/// after the users moved and drew their images: each present user leaves with
/// probability `leave_p` and each absent one returns with `join_p` (a returning
/// user has no previous server); then each server that was up in the last slot
/// goes down with probability `fail_p` for a number of slots uniform in `down`,
/// unless that would leave no server up. Every user is present and every server up in the
/// first slot; `users` is the population's size. The defaults keep about 83 % of
/// the users present (join/(join + leave)) and each server down about 12 % of
/// the time (27.5 slots down per 200 up).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    /// Probability that a present user leaves, per slot.
    pub leave_p: f64,
    /// Probability that an absent user returns, per slot.
    pub join_p: f64,
    /// Probability that an available server goes down, per slot.
    pub fail_p: f64,
    /// Slots a server stays down, inclusive range.
    pub down: [u32; 2],
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            leave_p: 0.02,
            join_p: 0.1,
            fail_p: 0.005,
            down: [5, 50],
        }
    }
}

fn default_speed() -> [f64; 2] {
    [1.0, 3.0]
}

impl Default for Mobility {
    fn default() -> Self {
        Mobility::RandomWaypoint {
            speed: default_speed(),
        }
    }
}

/// A scenario: the network, its episodes and the model constants.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Number of users U.
    pub users: usize,
    /// Number of edge servers S.
    pub servers: usize,
    /// Slots per episode T.
    pub slots: usize,
    /// Seed of the episode (server draws, twin sizes, mobility, samples).
    pub seed: u64,
    /// φ, scenario-wide or per user.
    pub emd: Emd,
    /// Side of the square area, metres.
    pub area_m: f64,
    /// Training images per user and slot, inclusive range.
    pub samples: [u32; 2],
    /// Twin base data D_twin per user, bits, drawn once per episode.
    pub twin_bits: [f64; 2],
    /// Computation capacity q_s range.
    pub q: [f64; 2],
    /// Communication capacity p_s range.
    pub p: [f64; 2],
    /// CPU cycles per unit of data ε_s range.
    pub eps: [f64; 2],
    /// User mobility.
    pub mobility: Mobility,
    /// The model constants of SPEC §2.
    pub params: Params,
    /// Users and servers coming and going (SPEC §2.2a); `None`: no churn.
    pub churn: Option<Churn>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            users: 20,
            servers: 15,
            slots: 750,
            seed: 1,
            emd: Emd::All(0.0),
            area_m: 120.0,
            samples: [200, 2000],
            twin_bits: [4.4e3, 4.6e3],
            q: [1.4e3, 1.5e3],
            p: [120.0, 150.0],
            eps: [54.0, 56.0],
            mobility: Mobility::default(),
            params: Params::default(),
            churn: None,
        }
    }
}

/// A scenario value out of range; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidScenario {
    /// The TOML key, dotted (`mobility.speed`, `params.beta1`, `emd[3]`).
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> InvalidScenario {
    InvalidScenario {
        key: key.into(),
        problem: problem.into(),
    }
}

fn check_range(key: &str, r: [f64; 2], min: f64, allow_zero: bool) -> Result<(), InvalidScenario> {
    let [lo, hi] = r;
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(invalid(key, format!("must be finite (got [{lo}, {hi}])")));
    }
    if lo > hi {
        return Err(invalid(
            key,
            format!("lower end {lo} is above upper end {hi}"),
        ));
    }
    if lo < min || (!allow_zero && lo <= min) {
        let op = if allow_zero { ">=" } else { ">" };
        return Err(invalid(key, format!("must be {op} {min} (got {lo})")));
    }
    Ok(())
}

impl Scenario {
    /// Parses TOML text; `origin` names the file in errors. Unknown keys are
    /// rejected with their dotted path. The result is validated.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<Scenario> {
        let de = toml::Deserializer::new(text);
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // toml's message carries line/column and a source excerpt over several
            // lines; keep its first line.
            let msg = inner.message().lines().next().unwrap_or("").to_string();
            if path == "." || path.is_empty() {
                anyhow::anyhow!("{origin}: {msg}")
            } else {
                anyhow::anyhow!("{origin}: {path}: {msg}")
            }
        })?;
        scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(scenario)
    }

    /// Reads a scenario file; a missing path means the SPEC defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Scenario> {
        match path {
            None => Ok(Scenario::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading scenario {}", p.display()))?;
                Scenario::from_toml(&text, &p.display().to_string())
            }
        }
    }

    /// The scenario as TOML (the resolved configuration written beside results).
    pub fn to_toml(&self) -> String {
        // Serialising plain data to TOML cannot fail; fall back to Debug if it does.
        toml::to_string(self).unwrap_or_else(|e| format!("# not serialisable: {e}\n# {self:?}\n"))
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), InvalidScenario> {
        if self.users == 0 || self.users > MAX_USERS {
            return Err(invalid(
                "users",
                format!("must be in 1..={MAX_USERS} (got {})", self.users),
            ));
        }
        if self.servers == 0 || self.servers > MAX_SERVERS {
            return Err(invalid(
                "servers",
                format!("must be in 1..={MAX_SERVERS} (got {})", self.servers),
            ));
        }
        if self.slots == 0 {
            return Err(invalid("slots", "must be at least 1"));
        }
        if !(self.area_m.is_finite() && self.area_m > 0.0) {
            return Err(invalid(
                "area_m",
                format!("must be > 0 (got {})", self.area_m),
            ));
        }
        let [s0, s1] = self.samples;
        if s0 > s1 {
            return Err(invalid(
                "samples",
                format!("lower end {s0} is above upper end {s1}"),
            ));
        }
        check_range("twin_bits", self.twin_bits, 0.0, true)?;
        check_range("q", self.q, 0.0, false)?;
        check_range("p", self.p, 0.0, false)?;
        check_range("eps", self.eps, 0.0, false)?;
        if let Mobility::RandomWaypoint { speed } = self.mobility {
            check_range("mobility.speed", speed, 0.0, false)?;
        }
        if let Some(churn) = &self.churn {
            for (key, v) in [
                ("churn.leave_p", churn.leave_p),
                ("churn.join_p", churn.join_p),
                ("churn.fail_p", churn.fail_p),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid(key, format!("must be in [0, 1] (got {v})")));
                }
            }
            let [d0, d1] = churn.down;
            if d0 == 0 || d0 > d1 {
                return Err(invalid(
                    "churn.down",
                    format!("must be a range [lo, hi] with 1 <= lo <= hi (got [{d0}, {d1}])"),
                ));
            }
        }
        self.params.validate().map_err(|e| {
            // The controller's message reads "<field>: <problem>".
            let text = e.to_string();
            match text.split_once(": ") {
                Some((field, problem)) => invalid(format!("params.{field}"), problem),
                None => invalid("params", text),
            }
        })?;
        let check_emd = |key: String, phi: f64| {
            let v = exponent(&self.params, phi);
            if !(0.0..=2.0).contains(&phi) {
                Err(invalid(key, format!("must be in [0, 2] (got {phi})")))
            } else if !(v > 0.0 && v <= 1.0) {
                Err(invalid(
                    key,
                    format!("gives the utility exponent v(φ) = {v}, outside (0, 1]"),
                ))
            } else {
                Ok(())
            }
        };
        match &self.emd {
            Emd::All(phi) => check_emd("emd".into(), *phi)?,
            Emd::PerUser(list) => {
                if list.len() != self.users {
                    return Err(invalid(
                        "emd",
                        format!("has {} values for {} users", list.len(), self.users),
                    ));
                }
                for (u, &phi) in list.iter().enumerate() {
                    check_emd(format!("emd[{u}]"), phi)?;
                }
            }
        }
        Ok(())
    }

    /// A short label: `u20_s15_phi0.2`.
    pub fn label(&self) -> String {
        let emd = match &self.emd {
            Emd::All(v) => format!("{v}"),
            Emd::PerUser(_) => "per-user".into(),
        };
        format!("u{}_s{}_phi{}", self.users, self.servers, emd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn rejects(text: &str, needle: &str) {
        let err = Scenario::from_toml(text, "s.toml").unwrap_err().to_string();
        assert!(err.starts_with("s.toml: "), "{err}");
        assert!(err.contains(needle), "`{err}` should mention `{needle}`");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn empty_file_is_the_spec_defaults() {
        let s = Scenario::from_toml("", "s.toml").unwrap();
        assert_eq!(s, Scenario::default());
        assert_eq!((s.users, s.slots), (20, 750));
        assert_eq!(s.p, [120.0, 150.0]);
        assert_eq!(s.params, Params::default());
    }

    #[test]
    fn values_and_nested_tables_parse() {
        let s = Scenario::from_toml(
            "servers = 9\nemd = [0.0, 0.2]\nusers = 2\n[mobility]\nmodel = \"static\"\n[params]\nbeta1 = 0.5\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!(s.servers, 9);
        assert_eq!(s.emd, Emd::PerUser(vec![0.0, 0.2]));
        assert_eq!(s.mobility, Mobility::Static);
        assert_eq!(s.params.beta1, 0.5);
    }

    #[test]
    fn unknown_keys_are_named() {
        rejects("userz = 3\n", "userz");
        rejects(
            "[mobility]\nmodel = \"random-waypoint\"\nspeeed = [1.0, 2.0]\n",
            "speeed",
        );
        rejects("[params]\nbeta3 = 1.0\n", "beta3");
        rejects("[mobility]\nmodel = \"teleport\"\n", "teleport");
    }

    #[test]
    fn out_of_range_values_are_named() {
        rejects("servers = 0\n", "servers: must be in 1..=64");
        rejects("users = 65\n", "users: must be in 1..=64");
        rejects("q = [1500.0, 1400.0]\n", "q: lower end");
        rejects("p = [0.0, 2.0]\n", "p: must be > 0");
        rejects(
            "[mobility]\nmodel = \"random-waypoint\"\nspeed = [0.0, 1.0]\n",
            "mobility.speed",
        );
        rejects("[params]\nf0 = 0.0\n", "params.f0");
        rejects("emd = [0.1]\n", "emd: has 1 values for 20 users");
        rejects("emd = -0.5\n", "emd: must be");
        rejects("area_m = nan\n", "area_m");
        rejects("samples = [3000, 2000]\n", "samples");
    }

    #[test]
    fn wrong_types_are_named() {
        rejects("servers = \"nine\"\n", "servers");
        rejects("[params]\nalpha = [1.0]\n", "alpha");
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = std::env::temp_dir().join(format!("diten-scenario-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let bad_utf8 = dir.join("latin1.toml");
        std::fs::write(&bad_utf8, b"users = 4 # \xe9t\xe9\n").unwrap();
        for path in [missing.as_path(), bad_utf8.as_path(), dir.as_path()] {
            let err = format!("{:#}", Scenario::load(Some(path)).unwrap_err());
            assert!(err.starts_with("reading scenario "), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "users = 4\nslots = -1\n").unwrap();
        let err = format!("{:#}", Scenario::load(Some(&bad)).unwrap_err());
        assert!(
            err.starts_with(&format!("{}: slots", bad.display())),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trips_through_toml() {
        let s = Scenario {
            emd: Emd::PerUser(vec![0.4; 20]),
            mobility: Mobility::Static,
            ..Scenario::default()
        };
        let back = Scenario::from_toml(&s.to_toml(), "back.toml").unwrap();
        assert_eq!(back, s);
    }
}
