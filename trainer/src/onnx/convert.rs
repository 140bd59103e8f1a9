//! An exported ONNX policy as the controller's firmware blob (SPEC §3.3).
//!
//! [`onnx_to_blob`] reads the `ModelProto` with prost and accepts exactly the graph
//! [`export`](mod@super::export) writes (see the [module docs](super)): the operators
//! Sub, Mul, Clip, Gemm, Tanh, Add and Gather, in that structure, float32
//! initializers (int64 for the prior's indices),
//! and the metadata `diten.format`, `diten.obs_layout`, `diten.users` and
//! `diten.servers`. Anything else is an error that names the node (`node 3
//! (`Relu`): operator not supported; ...`), the initializer, the metadata key or
//! the graph input or output at fault. The controller's
//! [`encode`](diten_controller::policy::encode) then checks the model as the
//! firmware will when parsing it.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail, ensure, Context};
use diten_controller::obs::{obs_dim, OBS_LAYOUT};
use diten_controller::policy::{F32Le, LayerRef, ModelRef, PriorRef, U32Le, CLIP};
use diten_controller::{CostNorm, MAX_SERVERS, MAX_USERS};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::tensor_shape_proto::dimension;

use super::{keys, FORMAT, MIN_OPSET};
use crate::policy::trained::{encode_blob, LayerBytes};

/// The operators the converter reads.
const SUPPORTED: [&str; 7] = ["Sub", "Mul", "Clip", "Gemm", "Tanh", "Add", "Gather"];

/// Converts the bytes of an exported ONNX policy into a firmware blob.
pub fn onnx_to_blob(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let model = pb::ModelProto::decode(bytes).map_err(|e| anyhow!("not an ONNX model: {e}"))?;
    model_to_blob(&model)
}

/// Converts a decoded ONNX policy into a firmware blob: a `policy-v2` model
/// (`diten.format`) through [`general_to_blob`](super::general::general_to_blob),
/// any other as below.
pub fn model_to_blob(model: &pb::ModelProto) -> anyhow::Result<Vec<u8>> {
    let format = model.metadata_props.iter().find(|p| p.key == keys::FORMAT);
    if format.is_some_and(|p| p.value == super::FORMAT_V2) {
        return super::general::general_to_blob(model);
    }
    let parsed = Parsed::read(model)?;
    let layers: Vec<LayerRef<'_>> = parsed.layers.iter().map(LayerBytes::as_ref).collect();
    let net = ModelRef {
        users: parsed.users,
        servers: parsed.servers,
        norm_mean: F32Le::new(&parsed.mean),
        norm_inv_std: F32Le::new(&parsed.inv_std),
        layers: &layers,
        skip: parsed.skip.as_ref().map(LayerBytes::as_ref),
        prior: parsed.prior.as_ref().map(|(index, weight)| PriorRef {
            index: U32Le::new(index),
            weight: F32Le::new(weight),
        }),
        cost_norm: parsed.cost_norm,
    };
    encode_blob(&net)
}

/// The model taken apart.
struct Parsed {
    users: usize,
    servers: usize,
    mean: Vec<u8>,
    inv_std: Vec<u8>,
    layers: Vec<LayerBytes>,
    skip: Option<LayerBytes>,
    /// The prior's indices (u32) and weights (f32), little-endian bytes.
    prior: Option<(Vec<u8>, Vec<u8>)>,
    /// The objective the policy was trained for.
    cost_norm: CostNorm,
}

impl Parsed {
    fn read(model: &pb::ModelProto) -> anyhow::Result<Parsed> {
        check_opset(model)?;
        let (users, servers, cost_norm) = read_metadata(model)?;
        let dim = obs_dim(users, servers);
        let actions = users * servers;
        let graph = model.graph.as_ref().context("the model has no graph")?;
        let g = Graph::new(graph, users, servers)?;
        let (input, output) = g.endpoints()?;

        let mut walk = Walk { g: &g, next: 0 };
        let (i, sub) = walk.expect("Sub", "the normalisation's Sub")?;
        let ctx = Ctx { i, node: sub };
        ctx.arity(2)?;
        ctx.input_is(0, input)?;
        let mean = g.vector(&ctx, 1, dim)?;

        let (i, mul) = walk.expect("Mul", "the normalisation's Mul")?;
        let ctx = Ctx { i, node: mul };
        ctx.arity(2)?;
        ctx.input_is(0, &sub.output[0])?;
        let inv_std = g.vector(&ctx, 1, dim)?;

        let (i, clip) = walk.expect("Clip", "the normalisation's Clip")?;
        let ctx = Ctx { i, node: clip };
        ctx.arity(3)?;
        ctx.input_is(0, &mul.output[0])?;
        let bounds = (g.scalar(&ctx, 1)?, g.scalar(&ctx, 2)?);
        ensure!(
            bounds == (-CLIP, CLIP),
            "{ctx}: clips to [{}, {}], the controller clips to [{}, {CLIP}]",
            bounds.0,
            bounds.1,
            -CLIP
        );
        let normalised = &clip.output[0];

        // The layers: Gemm, then Tanh and another Gemm as long as a Tanh follows.
        let mut layers = Vec::new();
        let mut x = normalised;
        let mut width = dim;
        let last = loop {
            let (i, node) = walk.expect("Gemm", "a dense layer (Gemm)")?;
            let layer = g.gemm(&Ctx { i, node }, x, width)?;
            width = layer.outputs;
            layers.push(layer);
            match walk.peek() {
                Some("Tanh") => {
                    let (i, tanh) = walk.expect("Tanh", "")?;
                    let ctx = Ctx { i, node: tanh };
                    ctx.arity(1)?;
                    ctx.input_is(0, &node.output[0])?;
                    x = &tanh.output[0];
                }
                _ => break (i, node),
            }
        };
        let (last_i, last_node) = last;
        ensure!(
            width == actions,
            "{}: `{}` gives {width} logits, but metadata {} = {users} x {} = {servers} makes {actions}",
            Ctx { i: last_i, node: last_node },
            last_node.input[1],
            keys::USERS,
            keys::SERVERS
        );

        // The optional skip: a Gemm of the normalised observation, added to the last layer.
        let mut result = &last_node.output[0];
        let mut skip = None;
        if walk.peek() == Some("Gemm") {
            let (i, node) = walk.expect("Gemm", "the skip layer (Gemm)")?;
            let ctx = Ctx { i, node };
            let layer = g.gemm(&ctx, normalised, dim)?;
            ensure!(
                layer.outputs == actions,
                "{ctx}: the skip layer `{}` gives {} logits, the last layer {actions}",
                node.input[1],
                layer.outputs
            );
            skip = Some(layer);
            let (i, add) = walk.expect("Add", "the Add of the skip layer")?;
            let ctx = Ctx { i, node: add };
            ctx.arity(2)?;
            let got: HashSet<&str> = add.input.iter().map(String::as_str).collect();
            let want: HashSet<&str> =
                [last_node.output[0].as_str(), node.output[0].as_str()].into();
            ensure!(
                got == want,
                "{ctx}: adds {}, expected the outputs of nodes {last_i} and {i_skip} (`{}` and `{}`)",
                quoted(&add.input),
                last_node.output[0],
                node.output[0],
                i_skip = i - 1,
            );
            result = &add.output[0];
        }

        // The optional prior: Gather (axis 1) of the normalised observation, Mul, Add.
        let mut prior = None;
        if walk.peek() == Some("Gather") {
            let (i, gather) = walk.expect("Gather", "the prior's Gather")?;
            let ctx = Ctx { i, node: gather };
            ctx.arity(2)?;
            ctx.input_is(0, normalised)?;
            let index = g.indices(&ctx, 1, actions, dim)?;
            let (i, mul) = walk.expect("Mul", "the prior's Mul")?;
            let ctx = Ctx { i, node: mul };
            ctx.arity(2)?;
            ctx.input_is(0, &gather.output[0])?;
            let weight = g.vector(&ctx, 1, actions)?;
            let (i, add) = walk.expect("Add", "the prior's Add")?;
            let ctx = Ctx { i, node: add };
            ctx.arity(2)?;
            let got: HashSet<&str> = add.input.iter().map(String::as_str).collect();
            let want: HashSet<&str> = [result.as_str(), mul.output[0].as_str()].into();
            ensure!(
                got == want,
                "{ctx}: adds {}, expected the logits so far and the prior (`{result}` and `{}`)",
                quoted(&add.input),
                mul.output[0],
            );
            prior = Some((index, weight));
            result = &add.output[0];
        }
        if let Some((i, node)) = walk.rest() {
            bail!(
                "{}: unexpected after the output is computed (the exporter's graph ends with \
                 the last Gemm, the skip layer's Add or the prior's Add)",
                Ctx { i, node }
            );
        }
        ensure!(
            result == output,
            "graph output `{output}` is not the last node's output `{result}`"
        );
        Ok(Parsed {
            users,
            servers,
            mean,
            inv_std,
            layers,
            skip,
            prior,
            cost_norm,
        })
    }
}

/// The default-domain opset must be [`MIN_OPSET`] or later (Clip's bounds as inputs).
pub(super) fn check_opset(model: &pb::ModelProto) -> anyhow::Result<()> {
    let version = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .context("opset_import: the model imports no opset of the default ONNX domain")?;
    ensure!(
        version >= MIN_OPSET,
        "opset_import: opset {version}, diten converts opset {MIN_OPSET} or later"
    );
    Ok(())
}

/// Checks the format and layout metadata; returns users, servers and the objective
/// (`diten.cost_norm`, `paper` when absent: files exported before it existed).
fn read_metadata(model: &pb::ModelProto) -> anyhow::Result<(usize, usize, CostNorm)> {
    let mut meta: HashMap<&str, &str> = HashMap::new();
    for p in &model.metadata_props {
        ensure!(
            meta.insert(&p.key, &p.value).is_none(),
            "metadata {}: given twice",
            p.key
        );
    }
    let get = |key: &str| -> anyhow::Result<&str> {
        meta.get(key)
            .copied()
            .with_context(|| format!("metadata {key} is missing (not a policy exported by diten)"))
    };
    let format = get(keys::FORMAT)?;
    ensure!(
        format == FORMAT,
        "metadata {} is `{format}`, this diten reads `{FORMAT}`",
        keys::FORMAT
    );
    let layout = get(keys::OBS_LAYOUT)?;
    ensure!(
        layout == OBS_LAYOUT,
        "metadata {} is `{layout}`, this diten builds observations `{OBS_LAYOUT}`",
        keys::OBS_LAYOUT
    );
    let count = |key: &str, max: usize| -> anyhow::Result<usize> {
        let text = get(key)?;
        let n: usize = text
            .parse()
            .map_err(|_| anyhow!("metadata {key}: `{text}` is not a count"))?;
        ensure!(
            (1..=max).contains(&n),
            "metadata {key}: {n} is out of range 1..={max}"
        );
        Ok(n)
    };
    let cost_norm = match meta.get(keys::COST_NORM) {
        None => CostNorm::Paper,
        Some(name) => CostNorm::from_name(name).with_context(|| {
            format!(
                "metadata {}: `{name}` is no objective (expected `paper` or `linear`)",
                keys::COST_NORM
            )
        })?,
    };
    Ok((
        count(keys::USERS, MAX_USERS)?,
        count(keys::SERVERS, MAX_SERVERS)?,
        cost_norm,
    ))
}

/// A node and its position, for messages: ``node 3 (`Gemm`)``.
struct Ctx<'a> {
    i: usize,
    node: &'a pb::NodeProto,
}

impl std::fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} (`{}`)", self.i, self.node.op_type)
    }
}

impl Ctx<'_> {
    /// Exactly `n` named inputs, no attributes but those Gemm reads.
    fn arity(&self, n: usize) -> anyhow::Result<()> {
        ensure!(
            self.node.input.len() == n && self.node.input.iter().all(|s| !s.is_empty()),
            "{self}: {} inputs, expected {n}",
            self.node.input.iter().filter(|s| !s.is_empty()).count()
        );
        match self.node.op_type.as_str() {
            "Gemm" => {} // its attributes are checked by `Graph::gemm`
            "Gather" => {
                for a in &self.node.attribute {
                    ensure!(
                        a.name == "axis",
                        "{self}: attribute `{}` is not supported",
                        a.name
                    );
                    ensure!(
                        a.r#type == AttributeType::Int as i32 && a.i == 1,
                        "{self}: attribute `axis` must be 1 (gather observation columns)"
                    );
                }
                ensure!(
                    !self.node.attribute.is_empty(),
                    "{self}: attribute `axis` must be 1 (the default 0 gathers rows)"
                );
            }
            _ => {
                if let Some(a) = self.node.attribute.first() {
                    bail!("{self}: attribute `{}` is not supported", a.name);
                }
            }
        }
        Ok(())
    }

    /// Input `k` is the value `name`.
    fn input_is(&self, k: usize, name: &str) -> anyhow::Result<()> {
        let got = &self.node.input[k];
        ensure!(
            got == name,
            "{self}: input {k} is `{got}`, expected `{name}` (the exporter's graph is a chain)"
        );
        Ok(())
    }
}

/// `"`a`, `b`"`.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The graph with its initializers by name.
struct Graph<'a> {
    graph: &'a pb::GraphProto,
    init: HashMap<&'a str, &'a pb::TensorProto>,
    users: usize,
    servers: usize,
}

impl<'a> Graph<'a> {
    /// Indexes the initializers; checks the operators, the domains and that every
    /// value is defined once.
    fn new(graph: &'a pb::GraphProto, users: usize, servers: usize) -> anyhow::Result<Self> {
        let mut init = HashMap::new();
        for t in &graph.initializer {
            ensure!(
                init.insert(t.name.as_str(), t).is_none(),
                "initializer `{}`: defined twice",
                t.name
            );
        }
        ensure!(
            graph.sparse_initializer.is_empty(),
            "sparse initializers are not supported"
        );
        let mut defined: HashSet<&str> = init.keys().copied().collect();
        defined.extend(graph.input.iter().map(|v| v.name.as_str()));
        for (i, node) in graph.node.iter().enumerate() {
            let ctx = Ctx { i, node };
            ensure!(
                SUPPORTED.contains(&node.op_type.as_str()),
                "{ctx}: operator not supported; diten converts {}",
                SUPPORTED.join(", ")
            );
            ensure!(
                node.domain.is_empty() || node.domain == "ai.onnx",
                "{ctx}: domain `{}` is not supported; diten converts the default ONNX domain",
                node.domain
            );
            ensure!(
                node.output.len() == 1,
                "{ctx}: {} outputs, expected 1",
                node.output.len()
            );
            ensure!(
                defined.insert(&node.output[0]),
                "{ctx}: output `{}` is already defined",
                node.output[0]
            );
        }
        Ok(Graph {
            graph,
            init,
            users,
            servers,
        })
    }

    /// The names of the one graph input (not an initializer) and the one output,
    /// after checking their types and shapes.
    fn endpoints(&self) -> anyhow::Result<(&'a str, &'a str)> {
        let inputs: Vec<&pb::ValueInfoProto> = self
            .graph
            .input
            .iter()
            .filter(|v| !self.init.contains_key(v.name.as_str()))
            .collect();
        let [input] = inputs[..] else {
            bail!("the graph has {} inputs, expected 1 (`obs`)", inputs.len());
        };
        let [output] = &self.graph.output[..] else {
            bail!(
                "the graph has {} outputs, expected 1 (`logits`)",
                self.graph.output.len()
            );
        };
        let dim = obs_dim(self.users, self.servers);
        self.check_value_info("input", input, dim)?;
        self.check_value_info("output", output, self.users * self.servers)?;
        Ok((&input.name, &output.name))
    }

    /// A float32 `[batch, width]` graph input or output.
    fn check_value_info(
        &self,
        what: &str,
        v: &pb::ValueInfoProto,
        width: usize,
    ) -> anyhow::Result<()> {
        let name = &v.name;
        let Some(pb::type_proto::Value::TensorType(t)) =
            v.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            bail!("graph {what} `{name}`: not a tensor");
        };
        ensure!(
            t.elem_type == DataType::Float as i32,
            "graph {what} `{name}`: element type {}, expected FLOAT",
            type_name(t.elem_type)
        );
        let dims = dims_text(t);
        let width_ok = match t.shape.as_ref().map(|s| &s.dim[..]) {
            Some([_, last]) => last.value == Some(dimension::Value::DimValue(width as i64)),
            _ => false,
        };
        ensure!(
            width_ok,
            "graph {what} `{name}`: shape [{}], expected [batch, {width}] for metadata {} = {} \
             and {} = {}",
            dims.join(", "),
            keys::USERS,
            self.users,
            keys::SERVERS,
            self.servers
        );
        Ok(())
    }

    /// The initializer that is input `k` of the node.
    fn init(&self, ctx: &Ctx<'_>, k: usize) -> anyhow::Result<&'a pb::TensorProto> {
        let name = &ctx.node.input[k];
        self.init
            .get(name.as_str())
            .copied()
            .with_context(|| format!("{ctx}: input {k} `{name}` is not an initializer"))
    }

    /// Input `k` as float32 values of shape `expected` (`None` = any size there);
    /// returns the shape and the values as little-endian bytes.
    fn floats(
        &self,
        ctx: &Ctx<'_>,
        k: usize,
        accept: &dyn Fn(&[usize]) -> bool,
        expected: &str,
    ) -> anyhow::Result<(Vec<usize>, Vec<u8>)> {
        let t = self.init(ctx, k)?;
        let name = &t.name;
        ensure!(
            t.data_type == DataType::Float as i32,
            "{ctx}: `{name}` has element type {}, expected FLOAT",
            type_name(t.data_type)
        );
        ensure!(
            t.data_location != Some(DataLocation::External as i32) && t.external_data.is_empty(),
            "{ctx}: `{name}` is stored outside the model (external data is not supported)"
        );
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow!("{ctx}: `{name}` has a negative dimension"))?;
        ensure!(
            accept(&dims),
            "{ctx}: `{name}` has shape {dims:?}, expected {expected}"
        );
        let count = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|n| n.checked_mul(4).is_some())
            .with_context(|| format!("{ctx}: `{name}` has shape {dims:?}, too large"))?;
        let bytes = if t.raw_data.is_empty() {
            ensure!(
                t.float_data.len() == count,
                "{ctx}: `{name}` holds {} values for shape {dims:?}",
                t.float_data.len()
            );
            t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            ensure!(
                t.raw_data.len() == count * 4,
                "{ctx}: `{name}` holds {} bytes of raw data for shape {dims:?} ({} expected)",
                t.raw_data.len(),
                count * 4
            );
            t.raw_data.clone()
        };
        Ok((dims, bytes))
    }

    /// Input `k`: `n` int64 indices of shape `[n]`, each in `0..limit`; returned as
    /// little-endian `u32` bytes.
    fn indices(&self, ctx: &Ctx<'_>, k: usize, n: usize, limit: usize) -> anyhow::Result<Vec<u8>> {
        let t = self.init(ctx, k)?;
        let name = &t.name;
        ensure!(
            t.data_type == DataType::Int64 as i32,
            "{ctx}: `{name}` has element type {}, expected INT64",
            type_name(t.data_type)
        );
        ensure!(
            t.data_location != Some(DataLocation::External as i32) && t.external_data.is_empty(),
            "{ctx}: `{name}` is stored outside the model (external data is not supported)"
        );
        ensure!(
            t.dims == [n as i64],
            "{ctx}: `{name}` has shape {:?}, expected [{n}] (one index per logit)",
            t.dims
        );
        let values: Vec<i64> = if t.raw_data.is_empty() {
            t.int64_data.clone()
        } else {
            let (chunks, rest) = t.raw_data.as_chunks::<8>();
            ensure!(
                rest.is_empty(),
                "{ctx}: `{name}` has {} bytes of raw data, not whole int64 values",
                t.raw_data.len()
            );
            chunks.iter().map(|b| i64::from_le_bytes(*b)).collect()
        };
        ensure!(
            values.len() == n,
            "{ctx}: `{name}` holds {} values for shape [{n}]",
            values.len()
        );
        let mut bytes = Vec::with_capacity(4 * n);
        for (j, &v) in values.iter().enumerate() {
            let ok = u32::try_from(v).ok().filter(|&v| (v as usize) < limit);
            let Some(v) = ok else {
                bail!("{ctx}: `{name}`[{j}] = {v} is not an observation column (0..{limit})");
            };
            bytes.extend(v.to_le_bytes());
        }
        Ok(bytes)
    }

    /// Input `k`: `n` values, shape `[n]` or `[1, n]` (a normaliser vector).
    fn vector(&self, ctx: &Ctx<'_>, k: usize, n: usize) -> anyhow::Result<Vec<u8>> {
        let expected = format!(
            "[{n}] (metadata {} = {} and {} = {} give observations of {n} values)",
            keys::USERS,
            self.users,
            keys::SERVERS,
            self.servers
        );
        let accept = |d: &[usize]| d == [n] || d == [1, n];
        Ok(self.floats(ctx, k, &accept, &expected)?.1)
    }

    /// Input `k`: one value, shape `[]` or `[1]`.
    fn scalar(&self, ctx: &Ctx<'_>, k: usize) -> anyhow::Result<f32> {
        let accept = |d: &[usize]| d.is_empty() || d == [1];
        let (_, bytes) = self.floats(ctx, k, &accept, "[] (a scalar)")?;
        let v: [u8; 4] = bytes[..4].try_into().unwrap_or_default();
        Ok(f32::from_le_bytes(v))
    }

    /// A Gemm `y = x·Wᵀ + b` of the value `x` (`width` wide).
    fn gemm(&self, ctx: &Ctx<'_>, x: &str, width: usize) -> anyhow::Result<LayerBytes> {
        ctx.arity(3)?;
        ctx.input_is(0, x)?;
        let mut trans_b = false;
        for a in &ctx.node.attribute {
            let int = a.r#type == AttributeType::Int as i32;
            let float = a.r#type == AttributeType::Float as i32;
            let ok = match a.name.as_str() {
                "transA" => int && a.i == 0,
                "transB" => {
                    trans_b = int && a.i == 1;
                    trans_b
                }
                "alpha" | "beta" => float && a.f == 1.0,
                other => bail!("{ctx}: attribute `{other}` is not supported"),
            };
            ensure!(
                ok,
                "{ctx}: attribute `{}` must be {}",
                a.name,
                match a.name.as_str() {
                    "transA" => "0",
                    "transB" => "1",
                    _ => "1.0",
                }
            );
        }
        ensure!(
            trans_b,
            "{ctx}: attribute `transB` must be 1 (weights stored outputs x inputs)"
        );
        let accept = |d: &[usize]| d.len() == 2 && d[1] == width && d[0] >= 1;
        let (dims, weight) =
            self.floats(ctx, 1, &accept, &format!("[outputs, {width}] (transB = 1)"))?;
        let outputs = dims[0];
        let accept = |d: &[usize]| d == [outputs] || d == [1, outputs];
        let (_, bias) = self.floats(ctx, 2, &accept, &format!("[{outputs}]"))?;
        Ok(LayerBytes {
            inputs: width,
            outputs,
            weight,
            bias,
        })
    }
}

/// A tensor type's dimensions as text: `batch`, `11`, `?` where unknown.
pub(super) fn dims_text(t: &pb::type_proto::Tensor) -> Vec<String> {
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(n)) => n.to_string(),
                    Some(dimension::Value::DimParam(p)) => p.clone(),
                    None => "?".to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The name of an ONNX element type.
pub(super) fn type_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("#{t}"))
}

/// The nodes in order.
struct Walk<'g, 'a> {
    g: &'g Graph<'a>,
    next: usize,
}

impl<'a> Walk<'_, 'a> {
    /// The op of the next node, if any.
    fn peek(&self) -> Option<&'a str> {
        self.g.graph.node.get(self.next).map(|n| n.op_type.as_str())
    }

    /// The next node, which must be an `op` (`what` describes it).
    fn expect(&mut self, op: &str, what: &str) -> anyhow::Result<(usize, &'a pb::NodeProto)> {
        let i = self.next;
        let Some(node) = self.g.graph.node.get(i) else {
            bail!("the graph ends after {i} nodes, expected {what} next");
        };
        ensure!(
            node.op_type == op,
            "{}: expected {what} here (the exporter's graph: Sub, Mul, Clip, then Gemm layers \
             with Tanh between them, then an optional skip Gemm and Add, then an optional \
             prior Gather, Mul and Add)",
            Ctx { i, node }
        );
        self.next += 1;
        Ok((i, node))
    }

    /// The first node not read yet, if any.
    fn rest(&self) -> Option<(usize, &'a pb::NodeProto)> {
        self.g.graph.node.get(self.next).map(|n| (self.next, n))
    }
}

#[cfg(test)]
mod tests {
    use diten_controller::policy::Policy;
    use prost::Message;

    use super::*;
    use crate::onnx::export::tests::tiny;
    use crate::onnx::export::{model_proto, Network};

    fn exported(skip: bool) -> pb::ModelProto {
        model_proto(&tiny(skip), &[]).unwrap()
    }

    #[track_caller]
    fn rejects(model: &pb::ModelProto, needle: &str) {
        let err = model_to_blob(model).expect_err("should be rejected");
        let text = format!("{err:#}");
        assert!(text.contains(needle), "`{text}` should mention `{needle}`");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    /// The Mlp on the same folded f32 normalisation the blob uses.
    fn reference(net: &Network, obs: &[f32]) -> Vec<f32> {
        let (mean, inv_std) = net.folded_norm();
        let x: Vec<f32> = obs
            .iter()
            .zip(mean.iter().zip(&inv_std))
            .map(|(o, (m, s))| ((o - m) * s).clamp(-CLIP, CLIP))
            .collect();
        let mut out = Vec::new();
        net.actor().forward(&x, &mut out);
        out
    }

    #[test]
    fn the_blob_computes_what_the_network_does() {
        for skip in [false, true] {
            let net = tiny(skip);
            let blob = onnx_to_blob(&model_proto(&net, &[]).unwrap().encode_to_vec()).unwrap();
            let policy = Policy::parse(&blob).unwrap();
            assert_eq!(policy.model().skip.is_some(), skip);
            assert_eq!(policy.model().prior.is_some(), skip);
            let obs: Vec<f32> = (0..11).map(|i| (i as f32 * 0.7).cos() * 3.0).collect();
            let mut scratch = vec![0.0; policy.scratch_len()];
            let mut logits = [0.0f32];
            policy.logits(&obs, &mut scratch, &mut logits).unwrap();
            let want = reference(&net, &obs);
            assert!((logits[0] - want[0]).abs() < 1e-6, "{logits:?} vs {want:?}");
        }
    }

    #[test]
    fn float_data_is_read_like_raw_data() {
        let mut model = exported(true);
        let reference = model_to_blob(&model).unwrap();
        for t in &mut model.graph.as_mut().unwrap().initializer {
            if t.data_type == DataType::Int64 as i32 {
                t.int64_data = t
                    .raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                t.raw_data.clear();
                continue;
            }
            t.float_data = t
                .raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            t.raw_data.clear();
        }
        assert_eq!(model_to_blob(&model).unwrap(), reference);
    }

    #[test]
    fn unsupported_operators_are_named() {
        let mut model = exported(false);
        model.graph.as_mut().unwrap().node[4].op_type = "Relu".into();
        rejects(
            &model,
            "node 4 (`Relu`): operator not supported; diten converts Sub, Mul, Clip, Gemm, Tanh, Add, Gather",
        );
    }

    #[test]
    fn metadata_must_match() {
        let set = |key: &str, value: &str| {
            let mut model = exported(false);
            model
                .metadata_props
                .iter_mut()
                .find(|p| p.key == key)
                .unwrap()
                .value = value.into();
            model
        };
        rejects(
            &set(keys::OBS_LAYOUT, "diten-obs-v0"),
            "diten.obs_layout is `diten-obs-v0`",
        );
        rejects(
            &set(keys::FORMAT, "policy-v3"),
            "diten.format is `policy-v3`",
        );
        rejects(&set(keys::USERS, "2"), "diten.users = 2");
        rejects(
            &set(keys::SERVERS, "x"),
            "diten.servers: `x` is not a count",
        );
        rejects(&set(keys::USERS, "100000"), "out of range");
        let mut model = exported(false);
        model.metadata_props.retain(|p| p.key != keys::OBS_LAYOUT);
        rejects(&model, "metadata diten.obs_layout is missing");
    }

    #[test]
    fn structure_and_shapes_are_checked() {
        let mut m = exported(false);
        m.graph
            .as_mut()
            .unwrap()
            .initializer
            .retain(|t| t.name != "actor.l1.bias");
        rejects(
            &m,
            "node 5 (`Gemm`): input 2 `actor.l1.bias` is not an initializer",
        );

        let mut m = exported(false);
        let g = m.graph.as_mut().unwrap();
        g.node[3].attribute.clear();
        rejects(&m, "node 3 (`Gemm`): attribute `transB` must be 1");

        let mut m = exported(false);
        let g = m.graph.as_mut().unwrap();
        let w = g
            .initializer
            .iter_mut()
            .find(|t| t.name == "actor.l0.weight")
            .unwrap();
        w.dims = vec![11, 3];
        rejects(
            &m,
            "`actor.l0.weight` has shape [11, 3], expected [outputs, 11]",
        );

        let mut m = exported(false);
        let g = m.graph.as_mut().unwrap();
        let w = g
            .initializer
            .iter_mut()
            .find(|t| t.name == "obs_norm.max")
            .unwrap();
        w.raw_data = 5.0f32.to_le_bytes().to_vec();
        rejects(&m, "clips to [-10, 5]");

        let mut m = exported(false);
        m.graph.as_mut().unwrap().node.swap(0, 1);
        rejects(&m, "node 0 (`Mul`): expected the normalisation's Sub here");

        let mut m = exported(false);
        m.graph.as_mut().unwrap().node.pop();
        rejects(&m, "the graph ends after 5 nodes");

        let mut m = exported(true);
        m.graph.as_mut().unwrap().node[7].input[1] = "actor.l0.out".into();
        rejects(&m, "node 7 (`Add`): adds `actor.l1.out`, `actor.l0.out`");

        let mut m = exported(false);
        m.opset_import[0].version = 9;
        rejects(&m, "opset 9");

        assert!(onnx_to_blob(b"\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn tract_agrees() {
        use tract_onnx::prelude::*;
        let net = tiny(true);
        let bytes = model_proto(&net, &[]).unwrap().encode_to_vec();
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let obs: Vec<f32> = (0..22).map(|i| (i as f32 * 1.3).sin() * 4.0).collect();
        let input = Tensor::from_shape(&[2, 11], &obs).unwrap();
        let out = plan.run(tvec!(input.into_tvalue())).unwrap();
        let got = out[0].to_plain_array_view::<f32>().unwrap();
        for (row, g) in obs.chunks(11).zip(got.iter()) {
            let want = reference(&net, row)[0];
            assert!((g - want).abs() < 1e-5, "{g} vs {want}");
        }
    }
}
