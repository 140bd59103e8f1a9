//! `diten train-general` end to end on a tiny budget: it writes a `policy-v2`
//! blob that the controller runs for any number of users and servers, churn
//! included, through `diten compare`; bad input is a one-line error.

use serde_json::Value;

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
    one_line_error(
        diten()
            .args(["train-general", "--hidden", "0", "--out"])
            .arg(dir.join("bad"))
            .output()
            .unwrap(),
        "hidden",
    );
}
