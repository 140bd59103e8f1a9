//! The size-agnostic policy (`policy-v2`, SPEC §3.2a) as an ONNX model, and back.
//!
//! [`general_model_proto`] writes a `policy-v2` network ([`GeneralRef`], the
//! controller's blob format 4) as a graph with symbolic dimensions `U` and `S`;
//! [`general_to_blob`] reads such a model back, accepting exactly the graph the
//! exporter writes, and encodes the blob. The weights travel bit for bit both ways
//! (the graph's matrices are the blob's, transposed and split by column), so
//! blob → ONNX → blob gives the same bytes.
//!
//! # The graph
//!
//! Inputs, float32, built by `diten_controller::policy::general::general_inputs`
//! (the columns of `pair_features`, layout `diten-obs-v2`, split by what they
//! depend on): `users [U, 5]` (joined, φ, `D_t`, `D_{t−1}`, linear objective),
//! `servers [S, 1]` (available), `pairs [U, S, 6]` (distance, migration distance,
//! previous-server flag, C2 and C3 fills, cost term). One output, `logits [U, S]`:
//! the base score of every pair, before the controller's sequential decoding.
//!
//! | nodes | what |
//! |---|---|
//! | `{users,servers,pairs}_norm.{sub,mul,clip}` | Sub, Mul, Clip: `clamp((x − mean)·inv_std, ±10)`, each input with its columns of the blob's normaliser |
//! | `embed.{pairs,users,servers}` | MatMul by `embed.*.weight` `[F, H]` (the embed layer's columns of that input, transposed) |
//! | `embed.users.unsqueeze` | Unsqueeze (axes `[1]`): `[U, 1, H]` |
//! | `embed.add_users`, `embed.add_servers`, `embed.add_bias`, `embed.relu` | `h = relu(·)` `[U, S, H]` (the servers' `[S, H]` broadcasts over U) |
//! | `pass.servers`, `pass.users` | ReduceMean over axis 0 / 1, keepdims: `[1, S, H]`, `[U, 1, H]` |
//! | `mix.{h,servers,users}` | MatMul by `mix.*.weight` `[H, H]` (the mix layer's three column blocks, transposed) |
//! | `mix.add_servers`, `mix.add_users`, `mix.add_bias`, `mix.relu` | `z = relu(·)` `[U, S, H]` |
//! | `out`, `out.add_bias`, `out.squeeze` | MatMul by `out.weight` `[H, 1]`, Add `out.bias`, Squeeze (axes `[2]`): `logits` |
//!
//! Opset 13 (Unsqueeze and Squeeze take their axes as int64 inputs,
//! `axes.1` = `[1]` and `axes.2` = `[2]`). The layer names are the blob's and the
//! trainer's (`embed`, `mix`, `out`).
//!
//! # Metadata
//!
//! [`keys::FORMAT`] = [`FORMAT_V2`], [`keys::OBS_LAYOUT`] = `diten-obs-v2`,
//! [`keys::USERS`] = 64 and [`keys::SERVERS`] = 32 (the most it serves),
//! [`keys::COST_NORM`], [`keys::DECODER`] (the five decoder weights,
//! comma-separated f32 in Rust's shortest round-trip decimal: the decoding is
//! controller code, so its weights ride as metadata, not as an unused
//! initializer), then the caller's (algorithm, scenario, seed, evaluation).

use std::collections::HashMap;

use anyhow::{anyhow, bail, ensure, Context};
use diten_controller::policy::general::{
    encode_general, general_encoded_len, GeneralPolicy, GeneralRef, DYN_FEATURES,
    MAX_GENERAL_SERVERS, MAX_GENERAL_USERS, OBS_LAYOUT_V2, PAIR_COLUMNS, PAIR_FEATURES,
    SERVER_COLUMNS, USER_COLUMNS,
};
use diten_controller::policy::{F32Le, LayerRef, CLIP};
use diten_controller::CostNorm;
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use super::convert::{check_opset, dims_text, type_name};
use super::export::{entry, float_tensor, plain};
use super::{keys, FORMAT_V2, IR_VERSION, OPSET, OUTPUT};

/// The graph's inputs: name, leading dimensions, columns of `pair_features`.
const INPUTS: [(&str, &[&str], &[usize]); 3] = [
    ("users", &["U"], &USER_COLUMNS),
    ("servers", &["S"], &SERVER_COLUMNS),
    ("pairs", &["U", "S"], &PAIR_COLUMNS),
];

/// The metadata keys [`general_model_proto`] writes itself.
const OWN_KEYS: [&str; 6] = [
    keys::FORMAT,
    keys::OBS_LAYOUT,
    keys::USERS,
    keys::SERVERS,
    keys::COST_NORM,
    keys::DECODER,
];

/// The ONNX model of the `policy-v2` network `model` (see the [module
/// docs](self)), with `metadata` after the keys it writes itself; `metadata`
/// may not repeat a key.
pub fn general_model_proto(
    model: &GeneralRef<'_>,
    metadata: &[(String, String)],
) -> anyhow::Result<pb::ModelProto> {
    let decoder: Vec<String> = model.decoder.iter().map(|w| w.to_string()).collect();
    let mut props: Vec<pb::StringStringEntryProto> = [
        (keys::FORMAT, FORMAT_V2.to_owned()),
        (keys::OBS_LAYOUT, OBS_LAYOUT_V2.to_owned()),
        (keys::USERS, MAX_GENERAL_USERS.to_string()),
        (keys::SERVERS, MAX_GENERAL_SERVERS.to_string()),
        (keys::COST_NORM, model.cost_norm.name().to_owned()),
        (keys::DECODER, decoder.join(",")),
    ]
    .into_iter()
    .map(|(key, value)| entry(key, value))
    .collect();
    for (key, value) in metadata {
        ensure!(
            !OWN_KEYS.contains(&key.as_str()),
            "metadata {key}: set by the exporter from the network"
        );
        ensure!(
            !props.iter().any(|p| &p.key == key),
            "metadata {key}: given twice"
        );
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
            "diten size-agnostic policy ({FORMAT_V2}): users [U, {}], servers [S, {}], pairs \
             [U, S, {}] ({OBS_LAYOUT_V2}) -> base logits [U, S], decoded by the controller",
            USER_COLUMNS.len(),
            SERVER_COLUMNS.len(),
            PAIR_COLUMNS.len()
        ),
        graph: Some(graph(model)),
        metadata_props: props,
        ..Default::default()
    })
}

/// The `policy-v2` blob `blob` as the bytes of an ONNX model with `metadata`.
pub fn blob_to_onnx(blob: &[u8], metadata: &[(String, String)]) -> anyhow::Result<Vec<u8>> {
    let policy = GeneralPolicy::parse(blob).map_err(|e| anyhow!("not a policy-v2 blob: {e}"))?;
    Ok(general_model_proto(&policy.model(), metadata)?.encode_to_vec())
}

/// Columns `columns` of the row-major `rows × cols` matrix `w`, transposed:
/// `[columns.len(), rows]`, row-major.
fn columns_t(w: &F32Le<'_>, cols: usize, columns: impl Iterator<Item = usize>) -> Vec<f32> {
    let w: Vec<f32> = w.iter().collect();
    let rows = w.len() / cols.max(1);
    columns
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| w[r * cols + c])
        .collect()
}

/// The graph of the module docs.
fn graph(model: &GeneralRef<'_>) -> pb::GraphProto {
    let h = model.hidden();
    let mean: Vec<f32> = model.pair_mean.iter().collect();
    let inv_std: Vec<f32> = model.pair_inv_std.iter().collect();
    let pick = |v: &[f32], cols: &[usize]| -> Vec<f32> { cols.iter().map(|&c| v[c]).collect() };
    let mut initializer = vec![
        float_tensor("norm.min", &[], &[-CLIP]),
        float_tensor("norm.max", &[], &[CLIP]),
        int_tensor("axes.1", &[1]),
        int_tensor("axes.2", &[2]),
    ];
    let mut node = Vec::new();
    for (name, _, cols) in INPUTS {
        let p = format!("{name}_norm");
        initializer.push(float_tensor(
            &format!("{p}.mean"),
            &[cols.len()],
            &pick(&mean, cols),
        ));
        initializer.push(float_tensor(
            &format!("{p}.inv_std"),
            &[cols.len()],
            &pick(&inv_std, cols),
        ));
        node.push(plain(
            &format!("{p}.sub"),
            "Sub",
            &[name, &format!("{p}.mean")],
            &format!("{p}.centered"),
        ));
        node.push(plain(
            &format!("{p}.mul"),
            "Mul",
            &[&format!("{p}.centered"), &format!("{p}.inv_std")],
            &format!("{p}.scaled"),
        ));
        node.push(plain(
            &format!("{p}.clip"),
            "Clip",
            &[&format!("{p}.scaled"), "norm.min", "norm.max"],
            &format!("{p}.out"),
        ));
        initializer.push(float_tensor(
            &format!("embed.{name}.weight"),
            &[cols.len(), h],
            &columns_t(&model.embed.weight, PAIR_FEATURES, cols.iter().copied()),
        ));
        node.push(plain(
            &format!("embed.{name}"),
            "MatMul",
            &[&format!("{p}.out"), &format!("embed.{name}.weight")],
            &format!("embed.{name}.out"),
        ));
    }
    let bias = |layer: &LayerRef<'_>| layer.bias.iter().collect::<Vec<f32>>();
    initializer.push(float_tensor("embed.bias", &[h], &bias(&model.embed)));
    let blocks = ["h", "servers", "users"];
    for (b, block) in blocks.iter().enumerate() {
        initializer.push(float_tensor(
            &format!("mix.{block}.weight"),
            &[h, h],
            &columns_t(&model.mix.weight, 3 * h, b * h..(b + 1) * h),
        ));
    }
    initializer.push(float_tensor("mix.bias", &[h], &bias(&model.mix)));
    initializer.push(float_tensor(
        "out.weight",
        &[h, 1],
        &columns_t(&model.out.weight, h, 0..h),
    ));
    initializer.push(float_tensor("out.bias", &[1], &bias(&model.out)));
    node.push(plain(
        "embed.users.unsqueeze",
        "Unsqueeze",
        &["embed.users.out", "axes.1"],
        "embed.users.wide",
    ));
    let add = |name: &str, a: &str, b: &str, out: &str| plain(name, "Add", &[a, b], out);
    node.extend([
        add(
            "embed.add_users",
            "embed.pairs.out",
            "embed.users.wide",
            "embed.sum_users",
        ),
        add(
            "embed.add_servers",
            "embed.sum_users",
            "embed.servers.out",
            "embed.sum",
        ),
        add("embed.add_bias", "embed.sum", "embed.bias", "embed.pre"),
        plain("embed.relu", "Relu", &["embed.pre"], "h"),
        reduce_mean("pass.servers", 0, "pass.servers.out"),
        reduce_mean("pass.users", 1, "pass.users.out"),
        plain("mix.h", "MatMul", &["h", "mix.h.weight"], "mix.h.out"),
        plain(
            "mix.servers",
            "MatMul",
            &["pass.servers.out", "mix.servers.weight"],
            "mix.servers.out",
        ),
        plain(
            "mix.users",
            "MatMul",
            &["pass.users.out", "mix.users.weight"],
            "mix.users.out",
        ),
        add(
            "mix.add_servers",
            "mix.h.out",
            "mix.servers.out",
            "mix.sum_servers",
        ),
        add(
            "mix.add_users",
            "mix.sum_servers",
            "mix.users.out",
            "mix.sum",
        ),
        add("mix.add_bias", "mix.sum", "mix.bias", "mix.pre"),
        plain("mix.relu", "Relu", &["mix.pre"], "z"),
        plain("out", "MatMul", &["z", "out.weight"], "out.out"),
        add("out.add_bias", "out.out", "out.bias", "out.pre"),
        plain("out.squeeze", "Squeeze", &["out.pre", "axes.2"], OUTPUT),
    ]);
    pb::GraphProto {
        node,
        name: "diten_policy_v2".to_owned(),
        initializer,
        input: INPUTS
            .iter()
            .map(|(name, dims, cols)| value_info(name, dims, Some(cols.len())))
            .collect(),
        output: vec![value_info(OUTPUT, &["U", "S"], None)],
        ..Default::default()
    }
}

/// `ReduceMean` of `h` over `axis`, keepdims.
fn reduce_mean(name: &str, axis: i64, output: &str) -> pb::NodeProto {
    let mut node = plain(name, "ReduceMean", &["h"], output);
    node.attribute = vec![
        pb::AttributeProto {
            name: "axes".to_owned(),
            r#type: AttributeType::Ints as i32,
            ints: vec![axis],
            ..Default::default()
        },
        pb::AttributeProto {
            name: "keepdims".to_owned(),
            r#type: AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        },
    ];
    node
}

/// An int64 initializer `[values.len()]`.
fn int_tensor(name: &str, values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        name: name.to_owned(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A float32 graph input or output of symbolic `dims`, then `width` if given.
fn value_info(name: &str, dims: &[&str], width: Option<usize>) -> pb::ValueInfoProto {
    let dim = |value| Dimension {
        denotation: String::new(),
        value: Some(value),
    };
    let mut shape: Vec<Dimension> = dims
        .iter()
        .map(|d| dim(dimension::Value::DimParam((*d).to_owned())))
        .collect();
    shape.extend(width.map(|w| dim(dimension::Value::DimValue(w as i64))));
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim: shape }),
            })),
        }),
        doc_string: String::new(),
    }
}

/// A value info's shape as text: `[U, S, 6]`.
fn shape_text(v: &pb::ValueInfoProto) -> String {
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => format!("[{}]", dims_text(t).join(", ")),
        _ => "(not a tensor)".to_owned(),
    }
}

/// Converts a decoded `policy-v2` ONNX model into a blob: the metadata, the
/// initializers by name, then the graph must be the one [`general_model_proto`]
/// writes for those weights (inputs, output and every node, in order); the first
/// difference is named.
pub fn general_to_blob(model: &pb::ModelProto) -> anyhow::Result<Vec<u8>> {
    check_opset(model)?;
    let meta: HashMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    let get = |key: &str| {
        meta.get(key)
            .copied()
            .with_context(|| format!("metadata {key} is missing (not a policy exported by diten)"))
    };
    let layout = get(keys::OBS_LAYOUT)?;
    ensure!(
        layout == OBS_LAYOUT_V2,
        "metadata {} is `{layout}`, a {FORMAT_V2} model reads `{OBS_LAYOUT_V2}`",
        keys::OBS_LAYOUT
    );
    let cost_norm = match meta.get(keys::COST_NORM) {
        None => CostNorm::Paper,
        Some(name) => CostNorm::from_name(name).with_context(|| {
            format!(
                "metadata {}: `{name}` is no objective (expected `paper` or `linear`)",
                keys::COST_NORM
            )
        })?,
    };
    let decoder_text = get(keys::DECODER)?;
    let decoder: Vec<f32> = decoder_text
        .split(',')
        .map(|v| v.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
        .collect::<Option<_>>()
        .filter(|v: &Vec<f32>| v.len() == DYN_FEATURES)
        .with_context(|| {
            format!(
                "metadata {}: `{decoder_text}` is not {DYN_FEATURES} comma-separated f32",
                keys::DECODER
            )
        })?;
    let graph = model.graph.as_ref().context("the model has no graph")?;
    let init = Initializers::new(graph)?;
    let h = init.get("embed.bias", None)?.len();
    ensure!(h >= 1, "initializer `embed.bias`: empty (no hidden units)");
    let mut mean = vec![0.0f32; PAIR_FEATURES];
    let mut inv_std = vec![0.0f32; PAIR_FEATURES];
    let mut embed = vec![0.0f32; h * PAIR_FEATURES];
    for (name, _, cols) in INPUTS {
        let m = init.get(&format!("{name}_norm.mean"), Some(&[cols.len()]))?;
        let s = init.get(&format!("{name}_norm.inv_std"), Some(&[cols.len()]))?;
        let w = init.get(&format!("embed.{name}.weight"), Some(&[cols.len(), h]))?;
        for (k, &c) in cols.iter().enumerate() {
            mean[c] = m[k];
            inv_std[c] = s[k];
            for o in 0..h {
                embed[o * PAIR_FEATURES + c] = w[k * h + o];
            }
        }
    }
    let mut mix = vec![0.0f32; h * 3 * h];
    for (b, block) in ["h", "servers", "users"].iter().enumerate() {
        let w = init.get(&format!("mix.{block}.weight"), Some(&[h, h]))?;
        for i in 0..h {
            for o in 0..h {
                mix[o * 3 * h + b * h + i] = w[i * h + o];
            }
        }
    }
    let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let (mean, inv_std, embed, mix) = (bytes(&mean), bytes(&inv_std), bytes(&embed), bytes(&mix));
    let embed_b = bytes(&init.get("embed.bias", Some(&[h]))?);
    let mix_b = bytes(&init.get("mix.bias", Some(&[h]))?);
    let out_w = bytes(&init.get("out.weight", Some(&[h, 1]))?);
    let out_b = bytes(&init.get("out.bias", Some(&[1]))?);
    let decoder = bytes(&decoder);
    let layer = |inputs: usize, outputs: usize, weight, bias| LayerRef {
        inputs: inputs as u32,
        outputs: outputs as u32,
        weight: F32Le::new(weight),
        bias: F32Le::new(bias),
    };
    let net = GeneralRef {
        pair_mean: F32Le::new(&mean),
        pair_inv_std: F32Le::new(&inv_std),
        embed: layer(PAIR_FEATURES, h, &embed, &embed_b),
        mix: layer(3 * h, h, &mix, &mix_b),
        out: layer(h, 1, &out_w, &out_b),
        decoder: F32Le::new(&decoder),
        cost_norm,
    };
    let fit = |e: diten_controller::Error| anyhow!("the model does not fit a policy-v2 blob: {e}");
    let mut blob = vec![0; general_encoded_len(&net).map_err(fit)?];
    let len = encode_general(&net, &mut blob).map_err(fit)?;
    blob.truncate(len);
    same_graph(graph, &self::graph(&net))?;
    Ok(blob)
}

/// `got` must have `want`'s inputs, output and nodes.
fn same_graph(got: &pb::GraphProto, want: &pb::GraphProto) -> anyhow::Result<()> {
    let inputs: Vec<&pb::ValueInfoProto> = got
        .input
        .iter()
        .filter(|v| !got.initializer.iter().any(|t| t.name == v.name))
        .collect();
    ensure!(
        inputs.len() == want.input.len(),
        "the graph has {} inputs, expected 3 (`users` [U, {}], `servers` [S, {}], `pairs` \
         [U, S, {}])",
        inputs.len(),
        USER_COLUMNS.len(),
        SERVER_COLUMNS.len(),
        PAIR_COLUMNS.len()
    );
    for (i, (g, w)) in inputs.iter().zip(&want.input).enumerate() {
        ensure!(
            g.name == w.name,
            "graph input {i} is `{}`, expected `{}`",
            g.name,
            w.name
        );
        ensure!(
            *g == w,
            "graph input `{}`: float32 of shape {}, expected float32 {}",
            g.name,
            shape_text(g),
            shape_text(w)
        );
    }
    ensure!(
        got.output.len() == 1 && got.output[0] == want.output[0],
        "graph outputs: {}, expected one, `{OUTPUT}` float32 [U, S]",
        got.output
            .iter()
            .map(|o| format!("`{}` {}", o.name, shape_text(o)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, w) in want.node.iter().enumerate() {
        let Some(g) = got.node.get(i) else {
            bail!(
                "the graph ends after {i} nodes, expected `{}` ({}) next",
                w.name,
                w.op_type
            );
        };
        ensure!(
            g == w,
            "node {i} (`{}`): expected `{}` ({} of {} into `{}`), as the exporter's \
             {FORMAT_V2} graph has it",
            g.op_type,
            w.name,
            w.op_type,
            w.input.join(", "),
            w.output.join(", ")
        );
    }
    if let Some(g) = got.node.get(want.node.len()) {
        bail!(
            "node {} (`{}`): unexpected after the output is computed",
            want.node.len(),
            g.op_type
        );
    }
    Ok(())
}

/// The float32 initializers of a graph, by name.
struct Initializers<'a>(HashMap<&'a str, &'a pb::TensorProto>);

impl<'a> Initializers<'a> {
    fn new(graph: &'a pb::GraphProto) -> anyhow::Result<Self> {
        let mut map = HashMap::new();
        for t in &graph.initializer {
            ensure!(
                map.insert(t.name.as_str(), t).is_none(),
                "initializer `{}`: defined twice",
                t.name
            );
        }
        Ok(Initializers(map))
    }

    /// The values of `name`, of shape `dims` when given.
    fn get(&self, name: &str, dims: Option<&[usize]>) -> anyhow::Result<Vec<f32>> {
        let t = self
            .0
            .get(name)
            .with_context(|| format!("initializer `{name}`: missing"))?;
        ensure!(
            t.data_type == DataType::Float as i32,
            "initializer `{name}`: element type {}, expected FLOAT",
            type_name(t.data_type)
        );
        ensure!(
            t.data_location != Some(DataLocation::External as i32) && t.external_data.is_empty(),
            "initializer `{name}`: stored outside the model (external data is not supported)"
        );
        if let Some(dims) = dims {
            let want: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            ensure!(
                t.dims == want,
                "initializer `{name}`: shape {:?}, expected {dims:?}",
                t.dims
            );
        }
        let count = t.dims.iter().try_fold(1usize, |n, &d| {
            usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        let values: Vec<f32> = if t.raw_data.is_empty() {
            t.float_data.clone()
        } else {
            let (chunks, rest) = t.raw_data.as_chunks::<4>();
            ensure!(
                rest.is_empty(),
                "initializer `{name}`: {} bytes of raw data, not whole float32 values",
                t.raw_data.len()
            );
            chunks.iter().map(|b| f32::from_le_bytes(*b)).collect()
        };
        ensure!(
            Some(values.len()) == count,
            "initializer `{name}`: {} values for shape {:?}",
            values.len(),
            t.dims
        );
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped size-agnostic blob.
    fn shipped() -> Vec<u8> {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../onnx-models/general/policy.bin"
        );
        std::fs::read(root).unwrap()
    }

    fn exported() -> pb::ModelProto {
        let blob = shipped();
        let policy = GeneralPolicy::parse(&blob).unwrap();
        general_model_proto(&policy.model(), &[]).unwrap()
    }

    #[track_caller]
    fn rejects(model: &pb::ModelProto, needle: &str) {
        let err = general_to_blob(model).expect_err("should be rejected");
        let text = format!("{err:#}");
        assert!(text.contains(needle), "`{text}` should mention `{needle}`");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn blob_onnx_blob_is_the_same_bytes() {
        let blob = shipped();
        let onnx = blob_to_onnx(&blob, &[]).unwrap();
        assert_eq!(super::super::onnx_to_blob(&onnx).unwrap(), blob);
        let model = pb::ModelProto::decode(&onnx[..]).unwrap();
        let keys: Vec<&str> = model
            .metadata_props
            .iter()
            .map(|p| p.key.as_str())
            .collect();
        assert_eq!(keys, OWN_KEYS);
    }

    #[test]
    fn shapes_nodes_and_metadata_are_named() {
        let mut m = exported();
        let input = &mut m.graph.as_mut().unwrap().input[2];
        *input = value_info("pairs", &["U", "S"], Some(7));
        rejects(
            &m,
            "graph input `pairs`: float32 of shape [U, S, 7], expected float32 [U, S, 6]",
        );

        let mut m = exported();
        let input = &mut m.graph.as_mut().unwrap().input[0];
        *input = value_info("users", &[], Some(5));
        rejects(
            &m,
            "graph input `users`: float32 of shape [5], expected float32 [U, 5]",
        );

        let mut m = exported();
        m.graph.as_mut().unwrap().input.swap(0, 1);
        rejects(&m, "graph input 0 is `servers`, expected `users`");

        let mut m = exported();
        m.graph.as_mut().unwrap().node[3].op_type = "Tanh".into();
        rejects(&m, "node 3 (`Tanh`): expected `embed.users` (MatMul");

        let mut m = exported();
        m.graph.as_mut().unwrap().node.pop();
        rejects(&m, "the graph ends after");

        let mut m = exported();
        let t = m
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| t.name == "mix.h.weight")
            .unwrap();
        t.dims = vec![16, 15];
        rejects(
            &m,
            "initializer `mix.h.weight`: shape [16, 15], expected [16, 16]",
        );

        let mut m = exported();
        m.metadata_props.retain(|p| p.key != keys::DECODER);
        rejects(&m, "metadata diten.decoder is missing");

        let mut m = exported();
        for p in &mut m.metadata_props {
            if p.key == keys::DECODER {
                p.value = "1,2,3".into();
            }
        }
        rejects(&m, "metadata diten.decoder: `1,2,3` is not 5");
    }
}
