//! `checkpoint.ot`: every tensor of a training run (networks, Adam moments,
//! normalisers) and its counters, as libtorch named tensors, written to a temporary
//! file and renamed. Training writes it ([`save`]; what a learner puts in is
//! `train`'s business); [`load_blob`] turns its actor into the blob a
//! [`TrainedPolicy`] runs, which is why the format lives with the policies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use diten_controller::obs::OBS_LAYOUT;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use super::norm::RunningNorm;
#[cfg(doc)]
use super::trained::TrainedPolicy;
use super::trained::{actor_blob, Dense, Mlp, Prior};
use crate::util::fs::write_atomic_with;

/// File name of the checkpoint in a run folder.
pub const FILE: &str = "checkpoint.ot";

/// Counters stored beside the tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Iterations finished.
    pub iteration: usize,
    /// Slots simulated.
    pub slots: u64,
    /// Wall time spent training so far, seconds.
    pub wall_s: f64,
}

/// Tensors of a running normaliser under `prefix`.
pub fn norm_tensors(prefix: &str, norm: &RunningNorm) -> Vec<(String, Tensor)> {
    vec![
        (format!("{prefix}.mean"), Tensor::from_slice(&norm.mean)),
        (format!("{prefix}.var"), Tensor::from_slice(&norm.var)),
        (format!("{prefix}.count"), Tensor::from_slice(&[norm.count])),
    ]
}

/// A normaliser of `dim` features from the tensors of [`norm_tensors`].
pub fn load_norm(
    prefix: &str,
    dim: usize,
    get: &dyn Fn(&str) -> anyhow::Result<Tensor>,
) -> anyhow::Result<RunningNorm> {
    let read = |name: &str| -> anyhow::Result<Vec<f64>> {
        let t = get(&format!("{prefix}.{name}"))?;
        Ok(Vec::<f64>::try_from(
            t.to_kind(Kind::Double).flatten(0, -1),
        )?)
    };
    let (mean, var, count) = (read("mean")?, read("var")?, read("count")?);
    ensure!(
        mean.len() == dim && var.len() == dim && count.len() == 1,
        "{prefix}: {} features, expected {dim}",
        mean.len()
    );
    ensure!(
        var.iter().all(|v| v.is_finite() && *v >= 0.0) && mean.iter().all(|m| m.is_finite()),
        "{prefix}: non-finite or negative statistics"
    );
    Ok(RunningNorm {
        mean,
        var,
        count: count[0],
    })
}

/// Copies the checkpoint's values into every variable of `vs` (shapes must match).
pub fn load_vars(
    vs: &mut VarStore,
    get: &dyn Fn(&str) -> anyhow::Result<Tensor>,
) -> anyhow::Result<()> {
    for (name, mut var) in vs.variables() {
        let saved = get(&name)?;
        ensure!(
            saved.size() == var.size(),
            "{name}: shape {:?} in the checkpoint, the network has {:?}",
            saved.size(),
            var.size()
        );
        tch::no_grad(|| var.copy_(&saved));
    }
    Ok(())
}

/// Writes `tensors` and `counters` to `path` atomically.
pub fn save(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    counters: Counters,
    meta: &Meta,
) -> anyhow::Result<()> {
    let mut all = tensors;
    all.push((
        "meta.iteration".into(),
        Tensor::from_slice(&[counters.iteration as i64]),
    ));
    all.push((
        "meta.slots".into(),
        Tensor::from_slice(&[counters.slots as i64]),
    ));
    all.push(("meta.wall_s".into(), Tensor::from_slice(&[counters.wall_s])));
    all.push((
        "meta.users".into(),
        Tensor::from_slice(&[meta.users as i64]),
    ));
    all.push((
        "meta.servers".into(),
        Tensor::from_slice(&[meta.servers as i64]),
    ));
    all.push((
        "meta.obs_layout".into(),
        Tensor::from_slice(OBS_LAYOUT.as_bytes()),
    ));
    all.push(("meta.algo".into(), Tensor::from_slice(meta.algo.as_bytes())));
    let all: Vec<(String, Tensor)> = all
        .into_iter()
        .map(|(n, t)| (n, t.to_device(tch::Device::Cpu)))
        .collect();
    write_atomic_with(path, |tmp| {
        Tensor::save_multi(&all, tmp).with_context(|| format!("writing {}", tmp.display()))
    })
    .with_context(|| format!("saving checkpoint {}", path.display()))
}

/// What a checkpoint says about its policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// Users.
    pub users: usize,
    /// Servers.
    pub servers: usize,
    /// `ppo`, `a2c` or `ddpg`.
    pub algo: String,
}

/// A loaded checkpoint: named tensors by name.
pub struct Loaded {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Loaded {
    /// Reads `path` (a checkpoint file, or a run folder holding one).
    pub fn read(path: &Path) -> anyhow::Result<Loaded> {
        let file = if path.is_dir() {
            path.join(FILE)
        } else {
            path.to_path_buf()
        };
        // libtorch's message carries a C++ backtrace: keep its first line only.
        let list = Tensor::load_multi(&file).map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default().to_owned();
            anyhow::anyhow!(
                "{}: not a readable diten checkpoint ({first})",
                file.display()
            )
        })?;
        let loaded = Loaded {
            path: file,
            tensors: list.into_iter().collect(),
        };
        let layout = loaded.bytes("meta.obs_layout")?;
        ensure!(
            layout == OBS_LAYOUT,
            "{}: observation layout `{layout}`, this diten builds `{OBS_LAYOUT}`",
            loaded.path.display()
        );
        Ok(loaded)
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor called `name`, or an error naming the file and the tensor.
    pub fn get(&self, name: &str) -> anyhow::Result<Tensor> {
        match self.tensors.get(name) {
            Some(t) => Ok(t.shallow_clone()),
            None => bail!("{}: no tensor `{name}`", self.path.display()),
        }
    }

    fn int(&self, name: &str) -> anyhow::Result<i64> {
        let t = self.get(name)?;
        ensure!(
            t.numel() == 1,
            "{}: `{name}` is not a scalar",
            self.path.display()
        );
        Ok(t.to_kind(Kind::Int64).int64_value(&[0]))
    }

    fn bytes(&self, name: &str) -> anyhow::Result<String> {
        let v = Vec::<u8>::try_from(self.get(name)?.to_kind(Kind::Uint8).flatten(0, -1))?;
        String::from_utf8(v)
            .with_context(|| format!("{}: `{name}` is not UTF-8", self.path.display()))
    }

    /// The counters.
    pub fn counters(&self) -> anyhow::Result<Counters> {
        let wall = self
            .get("meta.wall_s")?
            .to_kind(Kind::Double)
            .double_value(&[0]);
        Ok(Counters {
            iteration: usize::try_from(self.int("meta.iteration")?)?,
            slots: u64::try_from(self.int("meta.slots")?)?,
            wall_s: wall,
        })
    }

    /// Users, servers and algorithm.
    pub fn meta(&self) -> anyhow::Result<Meta> {
        let users = usize::try_from(self.int("meta.users")?)?;
        let servers = usize::try_from(self.int("meta.servers")?)?;
        Ok(Meta {
            users,
            servers,
            algo: self.bytes("meta.algo")?,
        })
    }

    /// The actor as plain layers: `actor.l0`, `actor.l1`, … in order, the skip
    /// layer `actor.skip` and the stay prior `actor.prior` when there are.
    pub fn actor(&self) -> anyhow::Result<Mlp> {
        let mut layers = Vec::new();
        while self
            .tensors
            .contains_key(&format!("actor.l{}.weight", layers.len()))
        {
            layers.push(self.dense(&format!("actor.l{}", layers.len()), true)?);
        }
        let context = || format!("{}: actor", self.path.display());
        let mut mlp = Mlp::new(layers).with_context(context)?;
        if self.tensors.contains_key("actor.skip.weight") {
            mlp = mlp
                .with_skip(self.dense("actor.skip", false)?)
                .with_context(context)?;
        }
        if self.tensors.contains_key("actor.prior.weight") {
            let meta = self.meta()?;
            let weight = self.get("actor.prior.weight")?.to_kind(Kind::Float);
            let weight = Vec::<f32>::try_from(weight.flatten(0, -1))?;
            mlp = mlp
                .with_prior(Prior::stay(meta.users, meta.servers, weight))
                .with_context(context)?;
        }
        Ok(mlp)
    }

    /// The dense layer `{prefix}.weight` (+ `{prefix}.bias`, else zeros).
    fn dense(&self, prefix: &str, has_bias: bool) -> anyhow::Result<Dense> {
        let w = self.get(&format!("{prefix}.weight"))?;
        let size = w.size();
        ensure!(
            size.len() == 2,
            "{}: {prefix}.weight is not a matrix",
            self.path.display()
        );
        let weight = Vec::<f32>::try_from(w.to_kind(Kind::Float).flatten(0, -1))?;
        let bias = if has_bias {
            Vec::<f32>::try_from(self.get(&format!("{prefix}.bias"))?.to_kind(Kind::Float))?
        } else {
            vec![0.0; size[0] as usize]
        };
        Ok(Dense {
            inputs: size[1] as usize,
            outputs: size[0] as usize,
            weight,
            bias,
        })
    }
}

/// The actor of a checkpoint (file or run folder) as a firmware blob
/// ([`actor_blob`]), which a [`TrainedPolicy`] runs. The checkpoint does not say
/// which objective its run priced energy with; the blob says the default, which
/// the network's logits do not read.
pub fn load_blob(path: &Path) -> anyhow::Result<Vec<u8>> {
    let loaded = Loaded::read(path)?;
    let meta = loaded.meta()?;
    let dim = diten_controller::obs::obs_dim(meta.users, meta.servers);
    let get = |n: &str| loaded.get(n);
    let norm = load_norm("obs_norm", dim, &get)?;
    actor_blob(
        meta.users,
        meta.servers,
        &norm,
        &loaded.actor()?,
        diten_controller::CostNorm::default(),
    )
    .with_context(|| format!("{}", loaded.path().display()))
}
