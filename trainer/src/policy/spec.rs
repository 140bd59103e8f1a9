//! What `--policy` names: a built-in decision maker ([`Builtin`]) or a trained
//! policy file, with the controller's ablation prefixes ([`PolicySpec`]), and how
//! each becomes a fresh [`DecisionMaker`] per episode.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::controller::read_blob;
use super::trained::TrainedPolicy;
use super::{
    ControllerPolicy, DecisionMaker, Lookahead, Nearest, NearestRandom, Oracle, Random,
    SearchOracle, Sticky,
};
use crate::signing::Trust;

/// The decision makers that need no learning, in table order. Their command-line
/// names are clap's ([`clap::ValueEnum`]: `nearest`, `nearest-random`, …), the
/// names in every table and file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Builtin {
    /// Baseline 2: the nearest server that keeps C2 and C3, optimal γ.
    Nearest,
    /// Baseline 3: Baseline 2's association, uniformly random γ scaled to keep C2.
    NearestRandom,
    /// Keep last slot's server unless a constraint breaks, then the best feasible move.
    Sticky,
    /// Local search over the slot with full knowledge and the exact γ solver.
    Oracle,
    /// The controller's own search (repair, consolidation, improvement with its
    /// memo) from sticky's and nearest's associations: the oracle at a fraction
    /// of its time ([`SearchOracle`]).
    OracleFast,
    /// A uniformly random server per user, optimal γ: the floor a learner must clear.
    Random,
    /// The clairvoyant two-slot planner around the oracle ([`Lookahead`]: it reads
    /// the next slot from the simulator, about 7 oracle calls per slot), what
    /// foresight adds to the oracle.
    Lookahead,
}

impl Builtin {
    /// Every built-in decision maker, in table order.
    pub const ALL: [Builtin; 7] = [
        Builtin::Nearest,
        Builtin::NearestRandom,
        Builtin::Sticky,
        Builtin::Oracle,
        Builtin::OracleFast,
        Builtin::Random,
        Builtin::Lookahead,
    ];

    /// The baselines of every comparison (the default set of `diten compare` and
    /// `diten demo`): [`ALL`](Self::ALL) without the two yardsticks.
    pub const BASELINES: [Builtin; 4] = [
        Builtin::Nearest,
        Builtin::NearestRandom,
        Builtin::Sticky,
        Builtin::Oracle,
    ];

    /// The name on the command line and in tables (clap's name of the variant).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Nearest => "nearest",
            Builtin::NearestRandom => "nearest-random",
            Builtin::Sticky => "sticky",
            Builtin::Oracle => "oracle",
            Builtin::OracleFast => "oracle-fast",
            Builtin::Random => "random",
            Builtin::Lookahead => "lookahead",
        }
    }

    /// The built-in decision maker called `name`, if any.
    pub fn parse(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Every name, comma-separated, for messages.
    pub fn names() -> String {
        Builtin::ALL.map(Builtin::name).join(", ")
    }

    /// A fresh decision maker.
    pub fn decision_maker(self) -> Box<dyn DecisionMaker> {
        match self {
            Builtin::Nearest => Box::new(Nearest::new()),
            Builtin::NearestRandom => Box::new(NearestRandom::new()),
            Builtin::Sticky => Box::new(Sticky::new()),
            Builtin::Oracle => Box::new(Oracle::new()),
            Builtin::OracleFast => Box::new(SearchOracle::new()),
            Builtin::Random => Box::new(Random::new()),
            Builtin::Lookahead => Box::new(Lookahead::new()),
        }
    }
}

impl std::fmt::Display for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A decision maker as named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySpec {
    /// A decision maker that needs no file.
    Builtin(Builtin),
    /// A trained policy file: a training checkpoint or its run folder, or a
    /// firmware blob (`.bin`, run by the controller); ONNX files are not loadable
    /// yet (convert them with `diten convert`).
    File(PathBuf),
    /// `unconsolidated:PATH`: a firmware blob run by the controller with its
    /// consolidation (and so its improvement) switched off: the policy alone, for
    /// ablations.
    Unconsolidated(PathBuf),
    /// `unimproved:PATH`: a firmware blob run by the controller with its
    /// improvement switched off (the consolidation on), for ablations.
    Unimproved(PathBuf),
    /// `budget=N:PATH`: a firmware blob run by the controller with an improvement
    /// budget of N server solves per slot (what a slower gateway would set).
    Budget(PathBuf, usize),
}

/// The `--policy` prefix `budget=N:` before a blob sets the controller's
/// improvement budget to N server solves per slot.
pub const BUDGET_PREFIX: &str = "budget=";

/// The `--policy` prefix that runs a blob without the controller's consolidation
/// and improvement.
pub const UNCONSOLIDATED_PREFIX: &str = "unconsolidated:";

/// The `--policy` prefix that runs a blob without the controller's improvement.
pub const UNIMPROVED_PREFIX: &str = "unimproved:";

/// A `--policy` value that names no decision maker.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Neither a built-in name nor something that looks like a file.
    #[error(
        "unknown policy `{0}` (known: {known}; a trained policy is given as a file path)",
        known = Builtin::names()
    )]
    Unknown(String),
    /// A policy file this build cannot load.
    #[error("{0}: {1}")]
    TrainedNotSupported(PathBuf, &'static str),
    /// `unconsolidated:`, `unimproved:` or `budget=N:` before something that is
    /// not a firmware blob.
    #[error("`{0}`: `{1}` takes a firmware blob (.bin), run by the controller")]
    AblationNotBlob(String, &'static str),
    /// `budget=N:` without a whole number N and a colon.
    #[error("`{0}`: write `budget=N:PATH.bin` with N a whole number of server solves")]
    BadBudget(String),
}

/// In a `--policy` file path, stands for the episode's number of servers.
pub const SERVERS_PLACEHOLDER: &str = "{S}";

/// File extensions that mark a `--policy` value as a trained-policy file.
const POLICY_FILE_EXTENSIONS: &[&str] = &["onnx", "pt", "ot", "safetensors", "bin", "blob"];

impl PolicySpec {
    /// Reads a `--policy` value: a built-in name, else a file when it looks like a
    /// path (has a `/`, a known extension or names an existing file).
    pub fn parse(text: &str) -> Result<PolicySpec, PolicyError> {
        // What follows a controller prefix must be a firmware blob.
        let blob = |path: &str, prefix: &'static str| {
            let path = PathBuf::from(path);
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
            {
                Ok(path)
            } else {
                Err(PolicyError::AblationNotBlob(text.to_owned(), prefix))
            }
        };
        if let Some(rest) = text.strip_prefix(BUDGET_PREFIX) {
            let bad = || PolicyError::BadBudget(text.to_owned());
            let (n, path) = rest.split_once(':').ok_or_else(bad)?;
            let n: usize = n.parse().map_err(|_| bad())?;
            return Ok(PolicySpec::Budget(blob(path, "budget=N:")?, n));
        }
        if let Some(path) = text.strip_prefix(UNCONSOLIDATED_PREFIX) {
            return Ok(PolicySpec::Unconsolidated(blob(
                path,
                UNCONSOLIDATED_PREFIX,
            )?));
        }
        if let Some(path) = text.strip_prefix(UNIMPROVED_PREFIX) {
            return Ok(PolicySpec::Unimproved(blob(path, UNIMPROVED_PREFIX)?));
        }
        if let Some(builtin) = Builtin::parse(text) {
            return Ok(PolicySpec::Builtin(builtin));
        }
        let path = PathBuf::from(text);
        let has_extension = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| POLICY_FILE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if text.contains(std::path::MAIN_SEPARATOR)
            || text.contains('/')
            || has_extension
            || path.is_file()
        {
            Ok(PolicySpec::File(path))
        } else {
            Err(PolicyError::Unknown(text.to_owned()))
        }
    }

    /// The name in tables, files and plot legends: the built-in name or the path as given.
    pub fn label(&self) -> String {
        match self {
            PolicySpec::Builtin(builtin) => builtin.name().to_owned(),
            PolicySpec::File(path) => path.display().to_string(),
            PolicySpec::Unconsolidated(path) => {
                format!("{UNCONSOLIDATED_PREFIX}{}", path.display())
            }
            PolicySpec::Unimproved(path) => format!("{UNIMPROVED_PREFIX}{}", path.display()),
            PolicySpec::Budget(path, n) => format!("{BUDGET_PREFIX}{n}:{}", path.display()),
        }
    }

    /// Checks the signature of the policy file this spec runs with `servers`
    /// servers (built-in decision makers have none to check). Only firmware blobs
    /// are run under a signature check: the bytes checked are the ones every
    /// later [`load`](Self::load) runs
    /// ([`super::controller::check_signed_blob`]).
    pub fn check_signature(&self, servers: usize, trust: &Trust) -> anyhow::Result<()> {
        let path = match self {
            PolicySpec::Builtin(_) => return Ok(()),
            PolicySpec::File(path)
            | PolicySpec::Unconsolidated(path)
            | PolicySpec::Unimproved(path)
            | PolicySpec::Budget(path, _) => for_servers(path, servers),
        };
        if !path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
        {
            return Err(PolicyError::TrainedNotSupported(
                path,
                "--pubkey runs only signed firmware blobs (.bin); a checkpoint is not a \
                 signed policy (export, convert and sign it)",
            )
            .into());
        }
        super::controller::check_signed_blob(&path, trust)
    }

    /// The policy for episodes with `servers` servers, loaded and checked: a bad
    /// file fails here, with the file named, before any episode runs. Its
    /// [`decision_maker`](LoadedPolicy::decision_maker) makes a fresh decision
    /// maker per episode, so episodes are independent of each other and of the
    /// thread that runs them. A file path may hold [`SERVERS_PLACEHOLDER`]: it is
    /// replaced by `servers`, so one `--policy` names a trained policy per server
    /// count (`runs/u20-s{S}/policy.bin`); the label keeps the placeholder.
    pub fn load(&self, servers: usize) -> anyhow::Result<LoadedPolicy> {
        let label = self.label();
        let loaded = match self {
            PolicySpec::Builtin(builtin) => LoadedPolicy::Builtin(*builtin),
            PolicySpec::File(path) => load_file(&for_servers(path, servers), label)?,
            PolicySpec::Unconsolidated(path)
            | PolicySpec::Unimproved(path)
            | PolicySpec::Budget(path, _) => {
                let path = for_servers(path, servers);
                let blob = read_blob(&path)?;
                self.controller(path, blob)
            }
        };
        loaded.decision_maker()?;
        Ok(loaded)
    }

    /// The policy a file spec names, run from `blob` instead of the file's bytes
    /// (the blob `diten ship` has just converted and evaluates before writing it);
    /// a built-in is loaded as [`load`](Self::load) does.
    pub fn load_blob(&self, blob: Arc<[u8]>) -> anyhow::Result<LoadedPolicy> {
        let loaded = match self {
            PolicySpec::Builtin(builtin) => LoadedPolicy::Builtin(*builtin),
            PolicySpec::File(path)
            | PolicySpec::Unconsolidated(path)
            | PolicySpec::Unimproved(path)
            | PolicySpec::Budget(path, _) => self.controller(path.clone(), blob),
        };
        loaded.decision_maker()?;
        Ok(loaded)
    }

    /// The blob `blob` from `path` run by the controller as this spec asks.
    fn controller(&self, path: PathBuf, blob: Arc<[u8]>) -> LoadedPolicy {
        let (consolidate, improve_budget) = match self {
            // The policy alone: neither the consolidation nor the improvement.
            PolicySpec::Unconsolidated(_) => (false, Some(0)),
            PolicySpec::Unimproved(_) => (true, Some(0)),
            PolicySpec::Budget(_, n) => (true, Some(*n)),
            PolicySpec::Builtin(_) | PolicySpec::File(_) => (true, None),
        };
        LoadedPolicy::Controller {
            path,
            label: self.label(),
            blob,
            consolidate,
            improve_budget,
        }
    }
}

/// A policy loaded for a sweep: a built-in decision maker, or the bytes of a blob
/// that each episode's decision maker borrows (the controller's engine reads its
/// weights from them).
#[derive(Clone, Debug)]
pub enum LoadedPolicy {
    /// A built-in decision maker.
    Builtin(Builtin),
    /// A firmware blob run through the controller's decision loop.
    Controller {
        /// The file it came from.
        path: PathBuf,
        /// Its label in tables.
        label: String,
        /// Its bytes.
        blob: Arc<[u8]>,
        /// Whether the controller consolidates.
        consolidate: bool,
        /// The controller's improvement budget (`None`: its default).
        improve_budget: Option<usize>,
    },
    /// A training checkpoint's actor, encoded as a blob, run by the controller's
    /// engine alone ([`TrainedPolicy`]).
    Trained {
        /// The checkpoint or run folder it came from.
        path: PathBuf,
        /// Its label in tables.
        label: String,
        /// The actor's blob.
        blob: Arc<[u8]>,
    },
}

impl LoadedPolicy {
    /// A fresh decision maker, borrowing the policy's bytes.
    pub fn decision_maker(&self) -> anyhow::Result<Box<dyn DecisionMaker + '_>> {
        Ok(match self {
            LoadedPolicy::Builtin(builtin) => builtin.decision_maker(),
            LoadedPolicy::Controller {
                path,
                label,
                blob,
                consolidate,
                improve_budget,
            } => {
                let mut dm = ControllerPolicy::from_blob(blob, label.clone())
                    .with_context(|| format!("{}", path.display()))?;
                dm.set_consolidation(*consolidate);
                if let Some(n) = improve_budget {
                    dm.set_improvement_budget(*n);
                }
                Box::new(dm)
            }
            LoadedPolicy::Trained { path, label, blob } => Box::new(
                TrainedPolicy::new(label.clone(), blob)
                    .with_context(|| format!("{}", path.display()))?,
            ),
        })
    }
}

/// `path` with [`SERVERS_PLACEHOLDER`] replaced by `servers`.
fn for_servers(path: &std::path::Path, servers: usize) -> PathBuf {
    let text = path.to_string_lossy();
    if text.contains(SERVERS_PLACEHOLDER) {
        PathBuf::from(text.replace(SERVERS_PLACEHOLDER, &servers.to_string()))
    } else {
        path.to_path_buf()
    }
}

/// Loads a trained policy: a firmware blob (`.bin`, run through the controller's
/// decision loop), a checkpoint (`.ot`) or a training run folder.
fn load_file(path: &std::path::Path, label: String) -> anyhow::Result<LoadedPolicy> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
    {
        return Ok(LoadedPolicy::Controller {
            path: path.to_path_buf(),
            label,
            blob: read_blob(path)?,
            consolidate: true,
            improve_budget: None,
        });
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return Err(PolicyError::TrainedNotSupported(
            path.to_path_buf(),
            "ONNX policies are not supported yet; give a training checkpoint (.ot) or run folder",
        )
        .into());
    }
    #[cfg(feature = "torch")]
    {
        Ok(LoadedPolicy::Trained {
            path: path.to_path_buf(),
            label,
            blob: super::checkpoint::load_blob(path)?.into(),
        })
    }
    #[cfg(not(feature = "torch"))]
    {
        let _ = label;
        Err(PolicyError::TrainedNotSupported(
            path.to_path_buf(),
            "this diten was built without the `torch` feature, which reading checkpoints needs",
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_clap_s() {
        use clap::ValueEnum;
        for b in Builtin::ALL {
            let clap = b.to_possible_value().expect("every variant has a name");
            assert_eq!(clap.get_name(), b.name());
            assert_eq!(Builtin::parse(b.name()), Some(b));
        }
        assert_eq!(Builtin::value_variants(), Builtin::ALL);
    }

    #[test]
    fn policy_values_are_classified() {
        assert_eq!(
            PolicySpec::parse("sticky").unwrap(),
            PolicySpec::Builtin(Builtin::Sticky)
        );
        assert!(matches!(
            PolicySpec::parse("nope"),
            Err(PolicyError::Unknown(_))
        ));
        for file in ["models/ppo.onnx", "ppo.onnx", "./ppo", "ckpt.pt"] {
            let spec = PolicySpec::parse(file).unwrap();
            assert_eq!(spec, PolicySpec::File(file.into()), "{file}");
            let err = format!("{:#}", spec.load(3).err().unwrap());
            if file.ends_with(".onnx") {
                assert!(err.contains("not supported yet"), "{err}");
            } else {
                // No such checkpoint: the error names the file.
                assert!(err.contains(file.trim_start_matches("./")), "{err}");
            }
        }
        let spec = PolicySpec::parse("unconsolidated:onnx-models/u20-s{S}/policy.bin").unwrap();
        assert_eq!(
            spec,
            PolicySpec::Unconsolidated("onnx-models/u20-s{S}/policy.bin".into())
        );
        assert_eq!(
            spec.label(),
            "unconsolidated:onnx-models/u20-s{S}/policy.bin"
        );
        let err = format!("{:#}", spec.load(7).err().unwrap());
        assert!(err.contains("onnx-models/u20-s7/policy.bin"), "{err}");
        let err = PolicySpec::parse("unconsolidated:ckpt.ot")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`unconsolidated:` takes a firmware blob (.bin)"),
            "{err}"
        );
        let spec = PolicySpec::parse("unimproved:m/policy.bin").unwrap();
        assert_eq!(spec, PolicySpec::Unimproved("m/policy.bin".into()));
        assert_eq!(spec.label(), "unimproved:m/policy.bin");
        let spec = PolicySpec::parse("budget=400:m/policy.bin").unwrap();
        assert_eq!(spec, PolicySpec::Budget("m/policy.bin".into(), 400));
        assert_eq!(spec.label(), "budget=400:m/policy.bin");
        for bad in [
            "budget=x:m/policy.bin",
            "budget=400",
            "budget=-1:m/policy.bin",
        ] {
            let err = PolicySpec::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("whole number of server solves"),
                "{bad}: {err}"
            );
        }
        let err = PolicySpec::parse("budget=4:m.onnx")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`budget=N:` takes a firmware blob"), "{err}");
        let err = PolicySpec::parse("unimproved:m.onnx")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`unimproved:` takes a firmware blob (.bin)"),
            "{err}"
        );
        let err = PolicySpec::parse("nope").unwrap_err().to_string();
        assert!(
            err.contains("nearest, nearest-random, sticky, oracle"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_blob_file_is_named() {
        let dir = std::env::temp_dir().join(format!("diten-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.bin");
        std::fs::write(&path, b"not a blob").unwrap();
        let err = format!("{:#}", PolicySpec::File(path).load(1).unwrap_err());
        assert!(err.contains("bad.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
