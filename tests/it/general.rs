//! `diten train-general` end to end on a tiny budget: it writes a `policy-v2`
//! blob that the controller runs for any number of users and servers, churn
//! included, through `diten compare`; bad input is a one-line error.

use prost::Message;
use serde_json::Value;
use tract_onnx::pb;

use crate::{diten, ok, one_line_error};

#[test]
fn a_general_policy_trains_and_decides_every_shape() {
    let dir = crate::scratch_dir("general", "tiny");
    ok(diten()
        .args([
            "train-general",
            "--episodes",
            "3",
            "--slots",
            "4",
            "--epochs",
            "2",
        ])
        .args(["--jobs", "1", "--out"])
        .arg(&dir)
        .output()
        .expect("running diten train-general"));
    for file in ["policy.bin", "metrics.csv", "config.toml"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    let blob = dir.join("policy.bin");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/churn.toml");
    // One blob, three shapes and churn; the controller never names a down
    // server (the simulator would reject the decision and the run fail).
    for (users, servers) in [("5", "3,4"), ("9", "6")] {
        let policies = format!("budget=0:{},nearest", blob.display());
        let out = ok(diten()
            .args(["compare", "--json", "--seeds", "1", "--slots", "12"])
            .args([
                "--scenario",
                scenario,
                "--users",
                users,
                "--servers",
                servers,
            ])
            .args(["--policy", &policies, "--out"])
            .arg(dir.join(format!("compare-{users}")))
            .output()
            .expect("running diten compare"));
        let summary: Value = serde_json::from_str(&out).expect("JSON summary");
        assert_eq!(summary["complete"], true, "{out}");
        let rows = summary["rows"].as_array().expect("an array of rows");
        let ours: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                r["policy"]
                    .as_str()
                    .is_some_and(|p| p.contains("policy.bin"))
            })
            .collect();
        assert_eq!(ours.len(), servers.split(',').count(), "{out}");
        for row in ours {
            let e = row["objective"]["mean"].as_f64();
            assert!(e.is_some_and(f64::is_finite), "{row}");
        }
    }
    // As ONNX, the blob carries its run's training record (the config.toml
    // beside it); a copy elsewhere says `unknown`.
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
    let seed = config["seed"].as_integer().expect("config.toml has a seed");
    let metadata = |blob: &std::path::Path, onnx: &std::path::Path| {
        ok(diten()
            .arg("convert")
            .arg(blob)
            .arg("--out")
            .arg(onnx)
            .output()
            .unwrap());
        let model = pb::ModelProto::decode(&std::fs::read(onnx).unwrap()[..]).unwrap();
        let get = |k: &str| {
            let p = model.metadata_props.iter().find(|p| p.key == k);
            p.map(|p| p.value.clone()).unwrap_or_default()
        };
        (get("diten.algo"), get("diten.seed"), get("diten.scenario"))
    };
    let (algo, got_seed, scenario) = metadata(&blob, &dir.join("policy.onnx"));
    assert_eq!(
        (algo.as_str(), got_seed),
        ("general-imitation", seed.to_string())
    );
    assert!(scenario.contains("churn_share"), "{scenario}");
    let alone = crate::scratch_dir("general", "alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(&blob, alone.join("policy.bin")).unwrap();
    let (algo, got_seed, _) = metadata(&alone.join("policy.bin"), &alone.join("policy.onnx"));
    assert_eq!((algo.as_str(), got_seed.as_str()), ("unknown", "unknown"));
    one_line_error(
        diten()
            .args(["train-general", "--hidden", "0", "--out"])
            .arg(dir.join("bad"))
            .output()
            .unwrap(),
        "hidden",
    );
}
