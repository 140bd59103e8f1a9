//! Shipping policies end to end: `diten ship` on a tiny training run, its model
//! card checked against `diten compare` run separately on the same episodes, the
//! files against `diten convert`, `sha256sum` and the controller's blob parser,
//! `diten models` (with a broken model beside a good one) and `diten demo`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost::Message;
use serde_json::Value;
use tract_onnx::pb;

use crate::{diten, ok};

/// The decision makers `ship` compares, in its table order.
const DECISION_MAKERS: [&str; 8] = [
    "policy.bin",
    "unimproved:policy.bin",
    "unconsolidated:policy.bin",
    "nearest",
    "nearest-random",
    "sticky",
    "oracle",
    "random",
];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tiny PPO run (4 users, 3 servers, φ = 0.2, with the stay prior), shipped
/// once for every test as `<root>/u4-s3` with 2 seeds of 12 slots.
fn shipped() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let run = crate::scratch_dir("models", "run");
        ok(diten()
            .args(["train", "--users", "4", "--servers", "3", "--slots", "50"])
            .args(["--emd", "0.2", "--envs", "4", "--rollout", "32"])
            .args(["--iterations", "3", "--seed", "5", "--stay-prior", "1.25"])
            .arg("--out")
            .arg(&run)
            .output()
            .expect("running diten train"));
        let out = crate::scratch_dir("models", "root").join("u4-s3");
        ok(diten()
            .args(["ship", "--run"])
            .arg(&run)
            .arg("--out")
            .arg(&out)
            .args(["--seeds", "2", "--slots", "12"])
            .output()
            .expect("running diten ship"));
        // The training run is only read.
        let mut names: Vec<String> = std::fs::read_dir(&run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "checkpoint.ot",
                "config.toml",
                "curve.png",
                "metrics.csv",
                "policy.onnx"
            ]
        );
        out
    })
}

/// The cells of the Markdown table row of `policy` in the card.
fn card_row<'a>(card: &'a str, policy: &str) -> Vec<&'a str> {
    card.lines()
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.len() == 13 && cells[0] == policy)
        .unwrap_or_else(|| panic!("no row for {policy} in\n{card}"))
}

/// Rows of a summary JSON by policy.
fn rows(summary: &Value) -> Vec<(String, &Value)> {
    summary["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["policy"].as_str().expect("policy").to_owned(), r))
        .collect()
}

#[test]
fn the_card_and_the_evaluation_match_an_independent_compare() {
    let dir = shipped();
    let summary: Value =
        serde_json::from_str(&read(&dir.join("evaluation/summary.json"))).expect("JSON");
    // The same comparison, run separately in the model folder.
    let compare_out = crate::scratch_dir("models", "compare");
    let stdout = ok(diten()
        .current_dir(dir)
        .args(["compare", "--scenario", "evaluation/scenario.toml"])
        .args(["--policy", &DECISION_MAKERS.join(",")])
        .args(["--seeds", "2", "--json", "--out"])
        .arg(&compare_out)
        .output()
        .expect("running diten compare"));
    let compare: Value = serde_json::from_str(&stdout).expect("compare JSON");
    assert_eq!(compare["users"], 4);
    assert_eq!(compare["slots"], 12);
    assert_eq!(compare["servers"], serde_json::json!([3]));
    let (ours, theirs) = (rows(&summary), rows(&compare));
    let order: Vec<&str> = theirs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(order, DECISION_MAKERS);
    assert_eq!(ours.len(), theirs.len());
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        for metric in ["objective", "reward", "utility", "cost_total", "migrations"] {
            assert_eq!(a[metric], b[metric], "{name} {metric}");
        }
        assert_eq!(a["violating_slots"], b["violating_slots"], "{name}");
        assert_eq!(a["seeds"], serde_json::json!([1, 2]), "{name}");
    }

    // The card's table shows compare's numbers, and gaps computed from them here.
    let card = read(&dir.join("MODEL.md"));
    let mean = |r: &Value, m: &str| r[m]["mean"].as_f64().expect("mean");
    let oracle = theirs
        .iter()
        .find(|r| r.0 == "oracle")
        .map(|r| mean(r.1, "objective"))
        .expect("an oracle row");
    let sticky_energy = theirs
        .iter()
        .find(|r| r.0 == "sticky")
        .map(|r| mean(r.1, "cost_total"))
        .expect("a sticky row");
    for (name, r) in &theirs {
        let cells = card_row(&card, name);
        let objective = mean(r, "objective");
        assert_eq!(
            cells[4],
            format!(
                "{objective:.5} ± {:.5}",
                r["objective"]["std"].as_f64().unwrap()
            )
        );
        // The card writes a gap that rounds to zero without a sign.
        let unsigned_zero = |t: String| {
            if t[1..]
                .chars()
                .all(|c| c == '0' || c == '.' || c == ' ' || c == '%')
            {
                t[1..].to_owned()
            } else {
                t
            }
        };
        let gap = unsigned_zero(format!("{:+.5}", objective - oracle));
        assert_eq!(cells[5], gap, "{name}");
        assert_eq!(
            cells[6],
            unsigned_zero(format!(
                "{:+.2} %",
                100.0 * (objective - oracle) / oracle.abs()
            )),
            "{name}"
        );
        assert_eq!(
            cells[7],
            format!(
                "{:.4} ± {:.4}",
                mean(r, "utility"),
                r["utility"]["std"].as_f64().unwrap()
            )
        );
        assert_eq!(
            cells[8],
            format!(
                "{:.1} ± {:.1}",
                mean(r, "cost_total"),
                r["cost_total"]["std"].as_f64().unwrap()
            )
        );
        // Energy relative to sticky's, computed here from compare's numbers.
        assert_eq!(
            cells[9],
            format!("{:.2}×", mean(r, "cost_total") / sticky_energy),
            "{name}"
        );
        assert_eq!(cells[10], format!("{:.3}", mean(r, "migrations")));
        assert_eq!(cells[11], format!("{:.1}", mean(r, "violating_slots")));
    }
    for needle in [
        "# u4-s3 — PPO policy for 4 users and 3 edge servers, φ = 0.2",
        "| algorithm | ppo |",
        "| training seed | 5 |",
        "`stay_prior = 1.25`",
        "`iterations = 3`",
        "| training | 3 iterations, 384 slots (7.7 episodes) in ",
        "## Verdict",
        "policy.bin has a mean objective of",
        " Energy per slot (Σ C_s): ",
        "× sticky's); unimproved:policy.bin ",
        "Without the improvement (unimproved:policy.bin) it has",
        "Without the consolidation and the improvement (unconsolidated:policy.bin) the policy has",
        "diten ship --run ",
        "--seeds 2 --slots 12",
        "![objective of every decision maker](compare.png)",
    ] {
        assert!(card.contains(needle), "`{needle}` missing from\n{card}");
    }
    // Sizes and digests, from sha256sum.
    for file in ["policy.onnx", "policy.bin"] {
        let path = dir.join(file);
        let digest = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("running sha256sum");
        let digest = String::from_utf8(digest.stdout).unwrap();
        let hex = digest.split_whitespace().next().expect("a digest");
        let len = std::fs::metadata(&path).unwrap().len();
        let expected = format!("| {file} | {len} bytes, SHA-256 `{hex}` |");
        assert!(
            card.contains(&expected),
            "`{expected}` missing from\n{card}"
        );
    }
}

#[test]
fn the_shipped_files_agree_with_each_other() {
    let dir = shipped();
    for file in ["compare.png", "evaluation/objective_phi0.2.png"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{file}");
    }
    // The blob parses and is what `diten convert` makes of the ONNX file.
    let blob = std::fs::read(dir.join("policy.bin")).unwrap();
    let policy = diten_controller::policy::Policy::parse(&blob).expect("the blob parses");
    assert_eq!((policy.users(), policy.servers()), (4, 3));
    let converted = crate::scratch_dir("models", "convert").with_extension("bin");
    ok(diten()
        .arg("convert")
        .arg(dir.join("policy.onnx"))
        .arg("--out")
        .arg(&converted)
        .output()
        .unwrap());
    assert_eq!(std::fs::read(&converted).unwrap(), blob);
    // The ONNX metadata carries the evaluation summary as written beside it.
    let model =
        pb::ModelProto::decode(&std::fs::read(dir.join("policy.onnx")).unwrap()[..]).expect("ONNX");
    let meta = |key: &str| {
        model
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
            .unwrap_or_else(|| panic!("no {key}"))
    };
    let stored: Value = serde_json::from_str(&meta("diten.evaluation")).expect("JSON");
    let written: Value = serde_json::from_str(&read(&dir.join("evaluation/summary.json"))).unwrap();
    assert_eq!(stored, written);
    assert_eq!(stored["command"], "ship");
    assert_eq!(meta("diten.users"), "4");
    assert_eq!(meta("diten.algo"), "ppo");
    // Nothing temporary is left.
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "{name} left behind");
    }
}

#[test]
fn models_lists_the_model_and_names_a_broken_one() {
    let dir = shipped();
    let stdout = ok(diten()
        .args(["models", "--json", "--dir"])
        .arg(dir.parent().unwrap())
        .output()
        .unwrap());
    let list: Value = serde_json::from_str(&stdout).expect("JSON");
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    let m = &list[0];
    assert_eq!(
        (
            m["name"].as_str(),
            m["users"].as_u64(),
            m["servers"].as_u64()
        ),
        (Some("u4-s3"), Some(4), Some(3))
    );
    assert_eq!(m["emd"], 0.2);
    assert_eq!(
        m["blob_bytes"].as_u64(),
        Some(std::fs::metadata(dir.join("policy.bin")).unwrap().len())
    );
    let summary: Value = serde_json::from_str(&read(&dir.join("evaluation/summary.json"))).unwrap();
    let objective = |policy: &str| {
        rows(&summary)
            .into_iter()
            .find(|r| r.0 == policy)
            .map(|r| r.1["objective"]["mean"].as_f64().unwrap())
            .unwrap()
    };
    let e = &m["evaluation"];
    assert_eq!(e["objective"].as_f64(), Some(objective("policy.bin")));
    assert_eq!(e["oracle_objective"].as_f64(), Some(objective("oracle")));
    assert_eq!(
        e["gap_to_oracle"].as_f64(),
        Some(objective("policy.bin") - objective("oracle"))
    );

    // A second folder: a copy of the good model and a broken one.
    let root = crate::scratch_dir("models", "with-broken");
    for (name, files) in [("a-good", ["policy.onnx", "policy.bin"])] {
        std::fs::create_dir_all(root.join(name)).unwrap();
        for f in files {
            std::fs::copy(dir.join(f), root.join(name).join(f)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("b-broken")).unwrap();
    std::fs::write(root.join("b-broken/policy.onnx"), b"not an onnx model").unwrap();
    std::fs::create_dir_all(root.join("c-not-a-model")).unwrap();
    let out = diten()
        .args(["models", "--dir"])
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stderr}");
    let broken = root.join("b-broken/policy.onnx").display().to_string();
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("error: ") && first.contains(&broken),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let table: Vec<&str> = stdout.lines().collect();
    assert_eq!(table.len(), 3, "{stdout}");
    assert!(
        table[2].starts_with("a-good  ") && table[2].contains(" ppo "),
        "{stdout}"
    );
}

#[test]
fn demo_runs_the_shipped_policy_through_the_controller() {
    let dir = shipped();
    let out = crate::scratch_dir("models", "demo");
    let stdout = ok(diten()
        .args(["demo", "--model"])
        .arg(dir)
        .args(["--slots", "20", "--out"])
        .arg(&out)
        .output()
        .unwrap());
    let names: Vec<&str> = stdout
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "u4-s3/policy.bin",
            "nearest",
            "nearest-random",
            "sticky",
            "oracle"
        ],
        "{stdout}"
    );
    assert!(
        stdout.contains("u4-s3/policy.bin has a mean objective of"),
        "{stdout}"
    );
    let summary: Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    assert_eq!(
        (summary["users"].as_u64(), summary["slots"].as_u64()),
        (Some(4), Some(20))
    );
    assert!(out.join("compare.png").is_file());
}

/// The size-agnostic model, `diten demo`'s default, is shown at 20 users on 15
/// servers: its blob first in the table, every baseline after it.
#[test]
fn demo_runs_the_size_agnostic_policy_at_the_default_shape() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../onnx-models/general");
    let out = crate::scratch_dir("models", "demo-general");
    let stdout = ok(diten()
        .args(["demo", "--model"])
        .arg(&dir)
        .args(["--slots", "8", "--out"])
        .arg(&out)
        .output()
        .unwrap());
    let first = stdout.lines().nth(2).unwrap_or_default();
    assert!(first.starts_with("general/policy.bin  15  0.2"), "{stdout}");
    let summary: Value = serde_json::from_str(&read(&out.join("summary.json"))).unwrap();
    assert_eq!(
        (summary["users"].as_u64(), summary["slots"].as_u64()),
        (Some(20), Some(8))
    );
}

#[test]
fn bad_input_is_one_line_naming_the_file() {
    let check = crate::one_line_error;
    let empty = crate::scratch_dir("models", "empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    let out = crate::scratch_dir("models", "unused");
    check(
        diten()
            .args(["ship", "--run"])
            .arg(&empty)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap(),
        "config.toml",
    );
    let model = crate::scratch_dir("models", "no-model");
    check(
        diten()
            .args(["demo", "--model"])
            .arg(&model)
            .output()
            .unwrap(),
        "policy.onnx",
    );
}

#[test]
fn a_servers_placeholder_puts_each_model_on_its_own_s() {
    let dir = shipped();
    let root = dir.parent().unwrap();
    let objective = |policy: &Path, servers: &str| {
        let stdout = ok(diten()
            .args(["compare", "--users", "4", "--slots", "12", "--emd", "0.2"])
            .args(["--servers", servers, "--seeds", "2", "--json", "--policy"])
            .arg(policy)
            .arg("--out")
            .arg(crate::scratch_dir("models", "placeholder"))
            .output()
            .expect("running diten compare"));
        let json: Value = serde_json::from_str(&stdout).expect("compare JSON");
        json["rows"][0]["objective"]["mean"]
            .as_f64()
            .expect("objective")
    };
    let template = root.join("u4-s{S}").join("policy.bin");
    assert_eq!(
        objective(&template, "3"),
        objective(&dir.join("policy.bin"), "3")
    );
    // No model for S = 4: refused before any episode, naming the file it looked for.
    let out = diten()
        .args(["compare", "--users", "4", "--servers", "3,4", "--policy"])
        .arg(&template)
        .output()
        .unwrap();
    crate::one_line_error(out, "u4-s4");
}
