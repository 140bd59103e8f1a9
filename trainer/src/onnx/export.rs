//! A trained policy as an ONNX `ModelProto` (the graph and the metadata of the
//! [module docs](super)), built with tract-onnx's protobuf types.
//!
//! [`model_proto`] needs no libtorch: it takes a [`Network`] (normaliser and actor
//! in plain Rust). `export` (feature `torch`) reads them from a training
//! checkpoint, adds the run's metadata and writes the file atomically.

use anyhow::{bail, ensure};
use diten_controller::obs::{obs_dim, OBS_LAYOUT};
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use super::{keys, FORMAT, INPUT, IR_VERSION, OPSET, OUTPUT};
use crate::policy::norm::{RunningNorm, CLIP};
use crate::policy::trained::{Dense, Mlp};

/// A policy as the exporter sees it: the observation normaliser and the actor for
/// `users` × `servers`.
#[derive(Clone, Debug)]
pub struct Network {
    users: usize,
    servers: usize,
    norm: RunningNorm,
    actor: Mlp,
}

impl Network {
    /// Checks that the normaliser and the actor take `obs_dim(users, servers)`
    /// values and the actor gives `users·servers` logits.
    pub fn new(
        users: usize,
        servers: usize,
        norm: RunningNorm,
        actor: Mlp,
    ) -> anyhow::Result<Network> {
        ensure!(
            (1..=diten_controller::MAX_USERS).contains(&users)
                && (1..=diten_controller::MAX_SERVERS).contains(&servers),
            "{users} users and {servers} servers: the controller takes 1 to {} of each",
            diten_controller::MAX_USERS.min(diten_controller::MAX_SERVERS)
        );
        let dim = obs_dim(users, servers);
        ensure!(
            norm.dim() == dim && actor.inputs() == dim,
            "the normaliser has {} features and the actor takes {} inputs, but {users} users \
             and {servers} servers give observations of {dim}",
            norm.dim(),
            actor.inputs()
        );
        ensure!(
            actor.outputs() == users * servers,
            "the actor gives {} logits, not users x servers = {}",
            actor.outputs(),
            users * servers
        );
        Ok(Network {
            users,
            servers,
            norm,
            actor,
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

    /// The observation normaliser.
    pub fn norm(&self) -> &RunningNorm {
        &self.norm
    }

    /// The actor.
    pub fn actor(&self) -> &Mlp {
        &self.actor
    }

    /// The normaliser folded into `f32` `(mean, inv_std)` with
    /// `inv_std = 1/sqrt(var + ε)`, as the graph and the blob apply it.
    pub fn folded_norm(&self) -> (Vec<f32>, Vec<f32>) {
        self.norm.folded()
    }
}

/// The metadata keys [`model_proto`] writes itself from the network.
const OWN_KEYS: [&str; 4] = [keys::FORMAT, keys::OBS_LAYOUT, keys::USERS, keys::SERVERS];

/// The ONNX model of `net` (see the [module docs](super) for the graph), with
/// `metadata` after the keys it writes itself (format, layout, users, servers);
/// `metadata` may not repeat a key.
pub fn model_proto(net: &Network, metadata: &[(String, String)]) -> anyhow::Result<pb::ModelProto> {
    let mut props: Vec<pb::StringStringEntryProto> = [
        (keys::FORMAT, FORMAT.to_owned()),
        (keys::OBS_LAYOUT, OBS_LAYOUT.to_owned()),
        (keys::USERS, net.users.to_string()),
        (keys::SERVERS, net.servers.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| entry(key, value))
    .collect();
    for (key, value) in metadata {
        if OWN_KEYS.contains(&key.as_str()) {
            bail!("metadata {key}: set by the exporter from the network");
        }
        if props.iter().any(|p| &p.key == key) {
            bail!("metadata {key}: given twice");
        }
        props.push(entry(key, value.clone()));
    }
    Ok(pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "diten".to_owned(),
        producer_version: env!("CARGO_PKG_VERSION").to_owned(),
        doc_string: format!(
            "diten policy: observation ({OBS_LAYOUT}, {} values) -> logits of {} users x {} \
             servers, user-major",
            obs_dim(net.users, net.servers),
            net.users,
            net.servers
        ),
        graph: Some(graph(net)),
        metadata_props: props,
        ..Default::default()
    })
}

pub(super) fn entry(key: &str, value: String) -> pb::StringStringEntryProto {
    pb::StringStringEntryProto {
        key: key.to_owned(),
        value,
    }
}

/// The graph: normalisation, the layers, the optional skip.
fn graph(net: &Network) -> pb::GraphProto {
    let dim = obs_dim(net.users, net.servers);
    let (mean, inv_std) = net.folded_norm();
    let clip = CLIP as f32;
    let mut initializer = vec![
        float_tensor("obs_norm.mean", &[dim], &mean),
        float_tensor("obs_norm.inv_std", &[dim], &inv_std),
        float_tensor("obs_norm.min", &[], &[-clip]),
        float_tensor("obs_norm.max", &[], &[clip]),
    ];
    let mut node = vec![
        plain(
            "obs_norm.sub",
            "Sub",
            &[INPUT, "obs_norm.mean"],
            "obs_norm.centered",
        ),
        plain(
            "obs_norm.mul",
            "Mul",
            &["obs_norm.centered", "obs_norm.inv_std"],
            "obs_norm.scaled",
        ),
        plain(
            "obs_norm.clip",
            "Clip",
            &["obs_norm.scaled", "obs_norm.min", "obs_norm.max"],
            "obs_norm.out",
        ),
    ];
    let skip = net.actor.skip();
    let prior = net.actor.prior();
    let layers = net.actor.layers();
    let mut input = "obs_norm.out".to_owned();
    for (i, layer) in layers.iter().enumerate() {
        let name = format!("actor.l{i}");
        let last = i + 1 == layers.len();
        let out = if last && skip.is_none() && prior.is_none() {
            OUTPUT.to_owned()
        } else {
            format!("{name}.out")
        };
        node.push(gemm(&name, &input, &out, layer, &mut initializer));
        if !last {
            let tanh = format!("{name}.tanh");
            node.push(plain(&tanh, "Tanh", &[&out], &tanh));
            input = tanh;
        } else {
            input = out;
        }
    }
    if let Some(skip) = skip {
        node.push(gemm(
            "actor.skip",
            "obs_norm.out",
            "actor.skip.out",
            skip,
            &mut initializer,
        ));
        let sum = if prior.is_none() {
            OUTPUT
        } else {
            "actor.skip.sum"
        };
        node.push(plain(
            "actor.skip.add",
            "Add",
            &[&input, "actor.skip.out"],
            sum,
        ));
        input = sum.to_owned();
    }
    if let Some(prior) = prior {
        let index: Vec<i64> = prior.index.iter().map(|&i| i as i64).collect();
        initializer.push(pb::TensorProto {
            dims: vec![index.len() as i64],
            data_type: DataType::Int64 as i32,
            name: "actor.prior.index".to_owned(),
            raw_data: index.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        initializer.push(float_tensor(
            "actor.prior.weight",
            &[prior.weight.len()],
            &prior.weight,
        ));
        let mut gather = plain(
            "actor.prior.gather",
            "Gather",
            &["obs_norm.out", "actor.prior.index"],
            "actor.prior.gathered",
        );
        gather.attribute = vec![pb::AttributeProto {
            name: "axis".to_owned(),
            r#type: AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        }];
        node.push(gather);
        node.push(plain(
            "actor.prior.mul",
            "Mul",
            &["actor.prior.gathered", "actor.prior.weight"],
            "actor.prior.out",
        ));
        node.push(plain(
            "actor.prior.add",
            "Add",
            &[&input, "actor.prior.out"],
            OUTPUT,
        ));
    }
    pb::GraphProto {
        node,
        name: "diten_policy".to_owned(),
        initializer,
        input: vec![value_info(INPUT, dim)],
        output: vec![value_info(OUTPUT, net.users * net.servers)],
        ..Default::default()
    }
}

/// A node without attributes.
pub(super) fn plain(name: &str, op: &str, inputs: &[&str], output: &str) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|&s| s.to_owned()).collect(),
        output: vec![output.to_owned()],
        name: name.to_owned(),
        op_type: op.to_owned(),
        ..Default::default()
    }
}

/// `output = input · weightᵀ + bias`, adding the weight and bias initializers
/// `<name>.weight` and `<name>.bias`.
fn gemm(
    name: &str,
    input: &str,
    output: &str,
    layer: &Dense,
    initializer: &mut Vec<pb::TensorProto>,
) -> pb::NodeProto {
    let (weight, bias) = (format!("{name}.weight"), format!("{name}.bias"));
    initializer.push(float_tensor(
        &weight,
        &[layer.outputs, layer.inputs],
        &layer.weight,
    ));
    initializer.push(float_tensor(&bias, &[layer.outputs], &layer.bias));
    let mut node = plain(name, "Gemm", &[input, &weight, &bias], output);
    node.attribute = vec![pb::AttributeProto {
        name: "transB".to_owned(),
        r#type: AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    }];
    node
}

/// A float32 initializer, values little-endian in `raw_data`.
pub(super) fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        name: name.to_owned(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float32 `[batch, width]` graph input or output.
fn value_info(name: &str, width: usize) -> pb::ValueInfoProto {
    let dim = |value| Dimension {
        denotation: String::new(),
        value: Some(value),
    };
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![
                        dim(dimension::Value::DimParam("batch".to_owned())),
                        dim(dimension::Value::DimValue(width as i64)),
                    ],
                }),
            })),
        }),
        doc_string: String::new(),
    }
}

#[cfg(feature = "torch")]
pub use with_torch::export;

#[cfg(feature = "torch")]
mod with_torch {
    use std::path::Path;

    use anyhow::Context;
    use diten_controller::obs::obs_dim;
    use diten_controller::CostNorm;
    use prost::Message;

    use super::{model_proto, Network};
    use crate::onnx::keys;
    use crate::policy::checkpoint::{load_norm, Loaded};
    use crate::util::fs::write_atomic;

    /// Exports the policy of a training checkpoint (`checkpoint.ot` or its run
    /// folder) to the ONNX file `out`, written atomically. The metadata names the
    /// algorithm, the scenario and seed from the run's `config.toml` beside the
    /// checkpoint (`unknown` without one) and the evaluation (`none`);
    /// `extra_metadata` replaces entries of the same key or adds new ones.
    pub fn export(
        checkpoint: &Path,
        out: &Path,
        extra_metadata: &[(String, String)],
    ) -> anyhow::Result<()> {
        let loaded = Loaded::read(checkpoint)?;
        let file = loaded.path().display().to_string();
        let meta = loaded.meta()?;
        let dim = obs_dim(meta.users, meta.servers);
        let get = |n: &str| loaded.get(n);
        let norm = load_norm("obs_norm", dim, &get).with_context(|| file.clone())?;
        let net = Network::new(meta.users, meta.servers, norm, loaded.actor()?)
            .with_context(|| file.clone())?;
        let (scenario, seed, cost_norm) = run_config(loaded.path())?;
        let mut metadata: Vec<(String, String)> = [
            (keys::ALGO, meta.algo),
            (keys::SCENARIO, scenario),
            (keys::SEED, seed),
            (keys::COST_NORM, cost_norm.name().to_owned()),
            (keys::EVALUATION, "none".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in extra_metadata {
            match metadata.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value.clone(),
                None => metadata.push((key.clone(), value.clone())),
            }
        }
        let bytes = model_proto(&net, &metadata)
            .with_context(|| format!("exporting {file}"))?
            .encode_to_vec();
        write_atomic(out, &bytes)
    }

    /// The `[scenario]` table (as TOML) and the `seed` of the `config.toml` beside
    /// `checkpoint`, or `unknown` twice when there is none.
    /// The run's scenario (TOML), seed and objective (`[scenario.params]
    /// cost_norm`, the paper's when absent).
    fn run_config(checkpoint: &Path) -> anyhow::Result<(String, String, CostNorm)> {
        let path = checkpoint
            .parent()
            .unwrap_or(Path::new(""))
            .join("config.toml");
        if !path.is_file() {
            return Ok(("unknown".to_owned(), "unknown".to_owned(), CostNorm::Paper));
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        let scenario = table
            .get("scenario")
            .and_then(toml::Value::as_table)
            .with_context(|| format!("{}: no [scenario] table", path.display()))?;
        let cost_norm = match scenario
            .get("params")
            .and_then(toml::Value::as_table)
            .and_then(|p| p.get("cost_norm"))
        {
            None => CostNorm::Paper,
            Some(v) => v.as_str().and_then(CostNorm::from_name).with_context(|| {
                format!(
                    "{}: scenario.params.cost_norm: {v} is no objective",
                    path.display()
                )
            })?,
        };
        let scenario =
            toml::to_string(scenario).with_context(|| format!("{}: [scenario]", path.display()))?;
        let seed = match table.get("seed") {
            Some(toml::Value::Integer(seed)) => seed.to_string(),
            _ => anyhow::bail!("{}: seed: missing or not an integer", path.display()),
        };
        Ok((scenario, seed, cost_norm))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use prost::Message;

    use super::*;
    use crate::policy::trained::Prior;

    /// 1 user, 1 server (11 observation values): 11 → 3 (tanh) → 1, with a skip
    /// layer and the stay prior when `skip`.
    pub(crate) fn tiny(skip: bool) -> Network {
        let dim = obs_dim(1, 1);
        let dense = |inputs: usize, outputs: usize, seed: f32| Dense {
            inputs,
            outputs,
            weight: (0..inputs * outputs)
                .map(|i| ((i as f32 + seed) * 0.37).sin() * 0.5)
                .collect(),
            bias: (0..outputs).map(|i| 0.1 * i as f32 - seed * 0.01).collect(),
        };
        let mut actor = Mlp::new(vec![dense(dim, 3, 1.0), dense(3, 1, 2.0)]).unwrap();
        if skip {
            let mut s = dense(dim, 1, 3.0);
            s.bias = vec![0.0];
            actor = actor.with_skip(s).unwrap();
            actor = actor.with_prior(Prior::stay(1, 1, vec![0.8])).unwrap();
        }
        let norm = RunningNorm {
            mean: (0..dim).map(|i| 0.1 * i as f64).collect(),
            var: (0..dim).map(|i| 0.5 + 0.25 * i as f64).collect(),
            count: 10.0,
        };
        Network::new(1, 1, norm, actor).unwrap()
    }

    #[test]
    fn graph_layout() {
        let model = model_proto(&tiny(true), &[]).unwrap();
        let graph = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            ["Sub", "Mul", "Clip", "Gemm", "Tanh", "Gemm", "Gemm", "Add", "Gather", "Mul", "Add"]
        );
        assert_eq!(graph.node.last().unwrap().output, [OUTPUT]);
        assert_eq!(graph.input[0].name, INPUT);
        let keys: Vec<&str> = model
            .metadata_props
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(keys, OWN_KEYS);
        // Round trip through the wire format.
        let bytes = model.encode_to_vec();
        assert_eq!(pb::ModelProto::decode(&bytes[..]).unwrap(), model);
    }

    #[test]
    fn own_keys_and_duplicates_are_rejected() {
        let m = |k: &str| (k.to_owned(), "x".to_owned());
        assert!(model_proto(&tiny(false), &[m(keys::USERS)]).is_err());
        assert!(model_proto(&tiny(false), &[m("a"), m("a")]).is_err());
        assert!(model_proto(&tiny(false), &[m(keys::ALGO)]).is_ok());
    }
}
