//! `diten foresight` end to end on a tiny scenario: the files it writes, and its
//! figures against an independent `diten compare` run of the oracle and the
//! lookahead on the same episodes, the objective written into the scenario file
//! by hand.

use std::path::Path;

use serde_json::Value;

use crate::{diten, ok, one_line_error, scratch_dir};

/// A 4-user, 3-server scenario of 8 slots; `params` is appended as its `[params]`
/// table.
fn scenario(dir: &Path, name: &str, params: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let text =
        format!("users = 4\nservers = 3\nslots = 8\nseed = 1\nemd = 0.2\n\n[params]\n{params}");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Mean objective and energy over seeds 1 and 2 of each policy, from `diten
/// compare --json`, in policy order.
fn compare(scenario: &str) -> Vec<(f64, f64)> {
    let out = ok(diten()
        .args(["compare", "--scenario", scenario, "--seeds", "1,2"])
        .args([
            "--jobs",
            "1",
            "--policy",
            "oracle,lookahead",
            "--json",
            "--out",
        ])
        .arg(Path::new(scenario).with_extension("out"))
        .output()
        .unwrap());
    let json: Value = serde_json::from_str(&out).unwrap();
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mean = |m: &str| r[m]["mean"].as_f64().unwrap();
            (mean("objective"), mean("cost_total"))
        })
        .collect()
}

#[test]
fn foresight_pairs_the_oracle_and_the_lookahead() {
    let dir = scratch_dir("foresight", "pairs");
    let paper = scenario(&dir, "paper.toml", "");
    let linear = scenario(&dir, "linear.toml", "cost_norm = \"linear\"\nf0 = 3000.0\n");
    let out = dir.join("run");
    let table = ok(diten()
        .args([
            "foresight",
            "--scenario",
            &paper,
            "--seeds",
            "1,2",
            "--jobs",
            "1",
        ])
        .args([
            "--objectives",
            "paper,linear",
            "--linear-f0",
            "3000",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap());
    assert!(
        table.contains("| paper (f0 = 200) | 3 | 0.2 | 2 | 8 |"),
        "{table}"
    );
    assert!(
        table.contains("| linear (f0 = 3000) | 3 | 0.2 | 2 | 8 |"),
        "{table}"
    );
    assert!(out.join("foresight.md").is_file() && out.join("scenario.toml").is_file());

    let csv = std::fs::read_to_string(out.join("foresight.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    let num = |r: &[&str], name: &str| r[col(name)].parse::<f64>().unwrap();
    for (norm, file) in [("paper", &paper), ("linear", &linear)] {
        let mine: Vec<&Vec<&str>> = rows
            .iter()
            .filter(|r| r[col("cost_norm")] == norm)
            .collect();
        assert_eq!(mine.len(), 2, "{csv}");
        for r in &mine {
            let gain = num(r, "lookahead_objective") - num(r, "myopic_objective");
            assert!((num(r, "gain") - gain).abs() < 1e-15, "{csv}");
            assert_eq!(r[col("slots")], "8");
        }
        let mean = |name: &str| mine.iter().map(|r| num(r, name)).sum::<f64>() / 2.0;
        let reference = compare(file);
        for (got, want) in [
            (mean("myopic_objective"), reference[0].0),
            (mean("myopic_energy"), reference[0].1),
            (mean("lookahead_objective"), reference[1].0),
            (mean("lookahead_energy"), reference[1].1),
        ] {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{norm}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn an_objective_must_be_known() {
    let dir = scratch_dir("foresight", "bad");
    one_line_error(
        diten()
            .args(["foresight", "--objectives", "paper,cubic", "--out"])
            .arg(&dir)
            .output()
            .unwrap(),
        "`cubic` is not an objective",
    );
}
