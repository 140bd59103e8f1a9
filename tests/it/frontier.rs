//! `diten frontier` end to end on a tiny scenario: the files it writes, and each
//! of its points against an independent `diten compare` run of the same episodes
//! with the price written into the scenario file by hand.

use std::path::Path;

use serde_json::Value;

use crate::{diten, ok, one_line_error, scratch_dir};

/// A 4-user, 3-server scenario of 12 slots; `params` is appended as its
/// `[params]` table.
fn scenario(dir: &Path, name: &str, params: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let text =
        format!("users = 4\nservers = 3\nslots = 12\nseed = 1\nemd = 0.2\n\n[params]\n{params}");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The `--json` rows of a `diten compare` run: (policy, objective, utility, energy).
fn compare(scenario: &str, policy: &str) -> Vec<(String, f64, f64, f64)> {
    let out = ok(diten()
        .args([
            "compare",
            "--scenario",
            scenario,
            "--seeds",
            "1,2",
            "--jobs",
            "1",
        ])
        .args(["--policy", policy, "--json", "--out"])
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
            (
                r["policy"].as_str().unwrap().to_owned(),
                mean("objective"),
                mean("utility"),
                mean("cost_total"),
            )
        })
        .collect()
}

/// The fields of one CSV line (RFC 4180 quoting: the frontier's label holds a comma).
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[test]
fn frontier_points_are_the_oracle_at_each_price() {
    let dir = scratch_dir("frontier", "points");
    let paper = scenario(&dir, "paper.toml", "");
    let out = dir.join("out");
    ok(diten()
        .args(["frontier", "--scenario", &paper, "--prices", "150,40000"])
        .args([
            "--seeds",
            "1,2",
            "--policy",
            "sticky,oracle",
            "--jobs",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap());
    let text = std::fs::read_to_string(out.join("frontier.csv")).unwrap();
    let rows: Vec<Vec<String>> = text.lines().map(fields).collect();
    assert!(
        text.starts_with("servers,policy,price,utility,energy,objective,"),
        "{text}"
    );
    assert_eq!(
        rows.len(),
        1 + 4,
        "two prices and two decision makers: {text}"
    );
    let png = std::fs::read(out.join("frontier_s3.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    let close = |a: f64, b: &String| {
        let b: f64 = b.parse().unwrap();
        assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
    };
    // The sweep's points: the oracle under the linear objective at each price.
    for price in ["150", "40000"] {
        let row = rows.iter().find(|r| r[2] == price).unwrap();
        assert_eq!(row[0], "3");
        assert_eq!(row[1], "oracle, linear e");
        assert_eq!(row[7], "linear");
        let linear = scenario(
            &dir,
            &format!("linear-{price}.toml"),
            &format!("cost_norm = \"linear\"\nf0 = {price}\n"),
        );
        let (_, e, utility, energy) = compare(&linear, "oracle").remove(0);
        close(utility, &row[3]);
        close(energy, &row[4]);
        close(e, &row[5]);
    }
    // Off the sweep: the decision makers under the scenario's (paper) objective.
    for (policy, e, utility, energy) in compare(&paper, "sticky,oracle") {
        let row = rows.iter().find(|r| r[1] == policy).unwrap();
        assert_eq!(row[2], "", "no price off the sweep");
        assert_eq!(row[7], "paper");
        close(utility, &row[3]);
        close(energy, &row[4]);
        close(e, &row[5]);
    }
    // An energy-dominated price spends less energy than a utility-dominated one
    // on the same episodes, and earns less utility.
    let at = |price: &str| rows.iter().find(|r| r[2] == price).unwrap();
    let (cheap, dear) = (at("40000"), at("150"));
    assert!(dear[4].parse::<f64>().unwrap() < cheap[4].parse::<f64>().unwrap());
    assert!(dear[3].parse::<f64>().unwrap() < cheap[3].parse::<f64>().unwrap());
}

#[test]
fn a_price_must_be_positive() {
    let dir = scratch_dir("frontier", "bad");
    one_line_error(
        diten()
            .args(["frontier", "--prices", "100,0", "--out"])
            .arg(&dir)
            .output()
            .unwrap(),
        "--prices: `0` is not a price",
    );
}
