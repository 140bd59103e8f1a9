//! `diten solve` end to end (SPEC §3.1): the binary on JSON instances.
//!
//! Every expected number is a hand calculation written out next to the case (the
//! arithmetic done on a pocket calculator to 16 digits), never a call into the
//! controller. Shared constants of the derivations, with the SPEC §2 defaults:
//!
//! * rate = W·log2(1 + P·ξ/N0) = 15e3 · log2(1 + 0.2 / 10^(−204/10))
//!   = 15e3 · 65.44540504081482 = 981681.0756122223 bit/s.
//! * v(φ) = α4·exp(−((α5 + φ)/α6)²): v(0) = 0.9165009846048493,
//!   v(0.2) = 0.8770938317384239, v(0.4) = 0.7487182167709777, v(0.6) = 0.5700985877913977.
//! * ρ = v − α1·exp(−α2·x^v) with x = α3·D̄/784 (images × 0.0006).
//! * Norm(C) = 2/(1 + exp(−C/(2 f0))) − 1.
//! * Barrier term added to r per constraint: (1/f)·ln(max(slack, 1e-3)), f = 10.

use std::path::PathBuf;
use std::process::Output;

use serde_json::{json, Value};

use crate::{diten, run_with_stdin};

/// SPEC §3.1's example instance.
fn spec_instance() -> Value {
    json!({
        "params": {},
        "servers": [{"x": 10.0, "y": 20.0, "p": 125.0, "q": 1450.0, "eps": 55.0}],
        "users": [{"x": 3.0, "y": 4.0, "emd": 0.2, "twin_bits": 4500.0,
                   "data_bits": 784000.0, "prev_data_bits": 392000.0, "prev_server": 0}],
        "association": [0]
    })
}

/// `instance` with the value at JSON pointer `pointer` replaced (or, for a new key
/// in an existing object, added).
fn with(mut instance: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a '/'");
    let parent = instance
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent} exists"));
    match parent {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
        }
        Value::Array(list) => list[key.parse::<usize>().expect("array index")] = value,
        _ => panic!("{pointer} does not point into an object or array"),
    }
    instance
}

/// `instance` without the key at `pointer`.
fn without(mut instance: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a '/'");
    instance
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(key))
        .unwrap_or_else(|| panic!("{pointer} exists"));
    instance
}

/// Runs `diten solve --instance -` with `input` on stdin.
fn solve_stdin(input: &str) -> Output {
    run_with_stdin(diten().args(["solve", "--instance", "-"]), input)
}

/// A fresh file under cargo's scratch folder for integration tests.
fn scratch_file(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("solve");
    std::fs::create_dir_all(&dir).expect("creating the scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("writing a scratch file");
    path
}

/// Asserts success with one line of JSON on stdout and nothing on stderr; returns
/// the stdout text.
#[track_caller]
fn success(out: &Output) -> String {
    let stdout = String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "diten failed: {stderr}");
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    stdout
}

/// Solves `instance` through stdin and returns the parsed output.
#[track_caller]
fn solve(instance: &Value) -> Value {
    let stdout = success(&solve_stdin(&instance.to_string()));
    serde_json::from_str(&stdout).expect("stdout is JSON")
}

/// Asserts `out[pointer]` is a number within `tol` of `want`.
#[track_caller]
fn close(out: &Value, pointer: &str, want: f64, tol: f64) {
    let got = out
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is a number in {out}"));
    assert!(
        (got - want).abs() <= tol,
        "{pointer} = {got}, want {want} ± {tol}"
    );
}

/// Asserts `out[pointer]` equals `want` exactly.
#[track_caller]
fn equal(out: &Value, pointer: &str, want: Value) {
    assert_eq!(out.pointer(pointer), Some(&want), "{pointer} in {out}");
}

/// Tolerance for hand-calculated values: they carry 16 digits, so only the
/// rounding of libm and of the summation order remains.
const HAND: f64 = 1e-9;

/// Asserts a failed run: non-zero exit, empty stdout, exactly one line on stderr
/// that starts with `error: ` and contains `needle` (the field it names).
#[track_caller]
fn check_error(out: &Output, needle: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "diten succeeded: {stdout}");
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(stdout.is_empty(), "stdout must be empty: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.ends_with('\n'), "stderr ends its line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(
        stderr.contains(needle),
        "stderr should name {needle:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// [`check_error`] for `instance` given on stdin.
#[track_caller]
fn check_bad(instance: &str, needle: &str) {
    check_error(&solve_stdin(instance), needle);
}

#[test]
fn spec_example_gives_the_spec_output() {
    // The numbers are SPEC §3.1's, to its printed precision. By hand, for the record:
    // D̄ = 784000 bits = 1000 images (γ = 0), x = 0.6, x^v(0.2) = 0.6388778482354305,
    // ρ = 0.8770938317384239 − 0.8862·exp(−6.8382·0.6388778) = 0.8658685542155742;
    // syn = 0.1 · 784000/rate · (|3−10| + |4−20| = 23) = 1.8368490997704523;
    // cmp = 1e-7 · 55 · (50+10) · 784000 = 258.72; mig = 0 (stays);
    // e = 0.3·ρ − 0.7·Norm(260.5568491) = 0.03950681821822574;
    // r = e + ln(1450−258.72)/10 + ln(125−1.8368491)/10 = 1.2291361726988552.
    let path = scratch_file("spec.json", &spec_instance().to_string());
    let out = diten()
        .args(["solve", "--instance"])
        .arg(&path)
        .output()
        .expect("running diten");
    let stdout = success(&out);

    // Field order is part of the contract.
    let keys = [
        "\"association\":",
        "\"gamma\":",
        "\"objective\":",
        "\"reward\":",
        "\"feasible\":",
        "\"utility\":",
        "\"servers\":",
        "\"mig\":",
        "\"syn\":",
        "\"cmp\":",
        "\"total\":",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| stdout.find(k).unwrap_or_else(|| panic!("{k} in {stdout}")))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order: {stdout}"
    );

    let out: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let spec = 1e-6;
    equal(&out, "/association", json!([0]));
    close(&out, "/gamma/0", 0.0, spec);
    close(&out, "/objective", 0.0395068, spec);
    close(&out, "/reward", 1.229136, spec);
    equal(&out, "/feasible", json!(true));
    close(&out, "/utility/0", 0.865869, spec);
    close(&out, "/servers/0/mig", 0.0, spec);
    close(&out, "/servers/0/syn", 1.836849, spec);
    close(&out, "/servers/0/cmp", 258.72, spec);
    close(&out, "/servers/0/total", 260.556849, spec);
    assert_eq!(out.as_object().map(|o| o.len()), Some(7), "no extra fields");
}

#[test]
fn stdin_instance_is_read_with_a_dash() {
    // The same instance through `--instance -`, with `params` left out altogether
    // (defaults) and integers where the SPEC writes floats: same numbers.
    let text = r#"{"servers": [{"x": 10, "y": 20, "p": 125, "q": 1450, "eps": 55}],
                   "users": [{"x": 3, "y": 4, "emd": 0.2, "twin_bits": 4500,
                              "data_bits": 784000, "prev_data_bits": 392000, "prev_server": 0}],
                   "association": [0]}"#;
    let out: Value = serde_json::from_str(&success(&solve_stdin(text))).expect("stdout is JSON");
    close(&out, "/objective", 0.03950681821822574, HAND);
    close(&out, "/reward", 1.2291361726988552, HAND);
    close(&out, "/servers/0/total", 260.55684909977043, HAND);
}

#[test]
fn two_servers_by_hand_with_migration_first_slot_and_c3_violation() {
    // No user has previous data, so γ = 0 for all and every number is closed-form.
    // s0 at (0, 0), s1 at (100, 0), both ε = 50: n_cmp·ε·60 = 3e-4 per bit.
    // u0 on s0, first slot (prev_server null): no migration; at s0, so syn = 0.
    // u1 on s0, migrates from s1: l(s0, s1) = 100.
    // u2 on s1, stays on s1; 50 m away; its syn exceeds p1 = 5 (C3 violated).
    let instance = json!({
        "servers": [{"x": 0, "y": 0, "p": 100, "q": 1000, "eps": 50},
                    {"x": 100, "y": 0, "p": 5, "q": 1000, "eps": 50}],
        "users": [
            {"x": 0, "y": 0, "emd": 0.2, "twin_bits": 4500, "data_bits": 784000,
             "prev_data_bits": 0, "prev_server": null},
            {"x": 10, "y": 0, "emd": 0.0, "twin_bits": 4500, "data_bits": 78400,
             "prev_data_bits": 0, "prev_server": 1},
            {"x": 100, "y": 50, "emd": 0.4, "twin_bits": 4500, "data_bits": 1568000,
             "prev_data_bits": 0, "prev_server": 1}],
        "association": [0, 0, 1]
    });
    let out = solve(&instance);
    equal(&out, "/association", json!([0, 0, 1]));
    equal(&out, "/gamma", json!([0.0, 0.0, 0.0]));
    equal(&out, "/feasible", json!(false));
    // ρ0: 1000 images, φ = 0.2 (as in the SPEC example) = 0.8658685542155742.
    close(&out, "/utility/0", 0.8658685542155742, HAND);
    // ρ1: 100 images, x = 0.06, x^v(0) = 0.07588822901807389,
    //     ρ = 0.9165009846048493 − 0.8862·exp(−6.8382·0.0758882) = 0.38907751627272125.
    close(&out, "/utility/1", 0.38907751627272125, HAND);
    // ρ2: 2000 images, x = 1.2, x^v(0.4) = 1.146263441342321,
    //     ρ = 0.7487182167709777 − 0.8862·exp(−6.8382·1.1462634) = 0.7483687811738786.
    close(&out, "/utility/2", 0.7483687811738786, HAND);
    // s0: mig = n_mig·l·(D̄ + D_twin) = 1e-4·100·(78400 + 4500) = 829 (u1 only);
    //     syn = 0.1·(78400/rate)·10 = 0.07986300433784577 (u0's distance is 0);
    //     cmp = 3e-4·(784000 + 78400) = 258.72; total = 1087.7998630043378.
    close(&out, "/servers/0/mig", 829.0, HAND);
    close(&out, "/servers/0/syn", 0.07986300433784577, HAND);
    close(&out, "/servers/0/cmp", 258.72, HAND);
    close(&out, "/servers/0/total", 1087.7998630043378, HAND);
    // s1: mig = 0 (u2 stays); syn = 0.1·(1568000/rate)·50 = 7.986300433784575 > p1 = 5;
    //     cmp = 3e-4·1568000 = 470.4; total = 478.3863004337845.
    close(&out, "/servers/1/mig", 0.0, HAND);
    close(&out, "/servers/1/syn", 7.986300433784575, HAND);
    close(&out, "/servers/1/cmp", 470.4, HAND);
    close(&out, "/servers/1/total", 478.3863004337845, HAND);
    // e = (0.3/3)·(ρ0 + ρ1 + ρ2) − (0.7/2)·(Norm(1087.79986) + Norm(478.38630))
    //   = 0.1·2.0033148516621737 − 0.35·(0.8763350312342189 + 0.5356126714553944)
    //   = −0.29385021077514717.
    close(&out, "/objective", -0.29385021077514717, HAND);
    // r = e + [ln(1000 − 258.72) + ln(100 − 0.0798630) + ln(1000 − 470.4)]/10
    //       + ln(1e-3)/10 (C3 slack of s1 is negative: clamped at δ) − 10·1 violation
    //   = e + 0.6608378421668338 + 0.4604371236869847 + 0.6272122004622799
    //       − 0.6907755278982137 − 10 = −9.236138572357262.
    close(&out, "/reward", -9.236138572357262, HAND);
}

#[test]
fn c2_failing_at_gamma_zero_gives_gamma_zero_and_infeasible() {
    // s0 is SPEC's server with q = 200; its two users have previous data, but even
    // at γ = 0 cmp = 1e-7·55·60·(784000 + 156800) = 3.3e-4·940800 = 310.464 > 200.
    // s1 at (50, 50) with u2, migrating from s0 (l = 40 + 30 = 70), no previous data.
    let instance = json!({
        "servers": [{"x": 10, "y": 20, "p": 125, "q": 200, "eps": 55},
                    {"x": 50, "y": 50, "p": 130, "q": 1400, "eps": 54}],
        "users": [
            {"x": 3, "y": 4, "emd": 0.2, "twin_bits": 4500, "data_bits": 784000,
             "prev_data_bits": 392000, "prev_server": 0},
            {"x": 10, "y": 20, "emd": 0.0, "twin_bits": 4500, "data_bits": 156800,
             "prev_data_bits": 784000, "prev_server": null},
            {"x": 50, "y": 50, "emd": 0.6, "twin_bits": 4500, "data_bits": 392000,
             "prev_data_bits": 0, "prev_server": 0}],
        "association": [0, 0, 1]
    });
    let out = solve(&instance);
    equal(&out, "/gamma", json!([0.0, 0.0, 0.0]));
    equal(&out, "/feasible", json!(false));
    // ρ0 = 0.8658685542155742 (SPEC example);
    // ρ1: 200 images, x = 0.12, x^v(0) = 0.14324144892329577 → 0.583738497772788;
    // ρ2: 500 images, x = 0.3, x^v(0.6) = 0.5033934562429648 → 0.5417482902250895.
    close(&out, "/utility/0", 0.8658685542155742, HAND);
    close(&out, "/utility/1", 0.583738497772788, HAND);
    close(&out, "/utility/2", 0.5417482902250895, HAND);
    // s0: mig 0 (u0 stays, u1 first slot); syn = 1.8368490997704523 (u1 sits on s0);
    //     cmp = 310.464 (violates C2); total = 312.30084909977046.
    close(&out, "/servers/0/mig", 0.0, HAND);
    close(&out, "/servers/0/syn", 1.8368490997704523, HAND);
    close(&out, "/servers/0/cmp", 310.464, HAND);
    close(&out, "/servers/0/total", 312.30084909977046, HAND);
    // s1: mig = 1e-4·70·(392000 + 4500) = 2775.5; syn = 0 (distance 0);
    //     cmp = 1e-7·54·60·392000 = 127.008; total = 2902.508.
    close(&out, "/servers/1/mig", 2775.5, HAND);
    close(&out, "/servers/1/syn", 0.0, HAND);
    close(&out, "/servers/1/cmp", 127.008, HAND);
    close(&out, "/servers/1/total", 2902.508, HAND);
    // e = 0.1·(ρ0 + ρ1 + ρ2) − 0.35·(Norm(312.300849) + Norm(2902.508))
    //   = 0.1·1.9913553422134517 − 0.35·(0.37168438193687514 + 0.9985895243711551)
    //   = −0.2804603329864654.
    close(&out, "/objective", -0.2804603329864654, HAND);
    // r = e + ln(1e-3)/10 (s0's C2 slack −110.464, clamped) + ln(125 − 1.8368491)/10
    //       + ln(1400 − 127.008)/10 + ln(130)/10 − 10·1 violation
    //   = e − 0.6907755278982137 + 0.48135099065243436 + 0.7149125314170024
    //       + 0.48675344504555823 − 10 = −9.288218893769685.
    close(&out, "/reward", -9.288218893769685, HAND);
}

#[test]
fn without_cost_weight_all_previous_data_is_reused() {
    // β1 = 1, β2 = 0: the objective is ρ alone, strictly increasing in γ, and C2 holds
    // at γ = 1 (cmp = 3.3e-4·(784000 + 392000) = 388.08 ≤ 1450), so γ = 1.
    let instance = with(
        spec_instance(),
        "/params",
        json!({"beta1": 1.0, "beta2": 0.0}),
    );
    let out = solve(&instance);
    close(&out, "/gamma/0", 1.0, HAND);
    // ρ: 1500 images, x = 0.9, x^v(0.2) = 0.911730298116938 → 0.8753565033328773.
    close(&out, "/utility/0", 0.8753565033328773, HAND);
    close(&out, "/servers/0/cmp", 388.08, HAND);
    close(&out, "/servers/0/total", 389.91684909977045, HAND);
    // e = (1/1)·ρ − 0 = 0.8753565033328773.
    close(&out, "/objective", 0.8753565033328773, HAND);
    // r = e + ln(1450 − 388.08)/10 + ln(125 − 1.8368491)/10
    //   = e + 0.6967833869397615 + 0.48135099065243436 = 2.053490880925073.
    close(&out, "/reward", 2.053490880925073, HAND);
    equal(&out, "/feasible", json!(true));
}

#[test]
fn params_override_the_defaults() {
    // SPEC's slot without previous data (γ = 0, closed-form), with β1 = β2 = 0.5,
    // f0 = 100, n_syn = 0.2, n_cmp = 2e-7, E_s = 40, f = 5 and 392 bits per sample.
    let instance = with(
        with(spec_instance(), "/users/0/prev_data_bits", json!(0)),
        "/params",
        json!({"beta1": 0.5, "beta2": 0.5, "f0": 100, "n_syn": 0.2, "n_cmp": 2e-7,
               "epochs_train": 40, "barrier_f": 5, "bits_per_sample": 392}),
    );
    let out = solve(&instance);
    equal(&out, "/gamma", json!([0.0]));
    // x = 0.0006·784000/392 = 1.2, x^v(0.2) = 1.1734089124143703,
    // ρ = 0.8770938317384239 − 0.8862·exp(−6.8382·1.1734089) = 0.8768035961076789.
    close(&out, "/utility/0", 0.8768035961076789, HAND);
    // syn = 0.2·(784000/rate)·23 = 3.6736981995409046;
    // cmp = 2e-7·55·(40 + 10)·784000 = 431.2; total = 434.87369819954097.
    close(&out, "/servers/0/syn", 3.6736981995409046, HAND);
    close(&out, "/servers/0/cmp", 431.2, HAND);
    close(&out, "/servers/0/total", 434.87369819954097, HAND);
    // e = 0.5·ρ − 0.5·Norm_{f0=100}(434.8737) = 0.5·0.8768036 − 0.5·0.7958481269752744
    //   = 0.04047773456620224.
    close(&out, "/objective", 0.04047773456620224, HAND);
    // r = e + ln(1450 − 431.2)/5 + ln(125 − 3.6736982)/5
    //   = e + 1.3852761486210603 + 0.9596967250190639 = 2.3854506082063263.
    close(&out, "/reward", 2.3854506082063263, HAND);
}

#[test]
fn linear_cost_norm_prices_energy_linearly() {
    // SPEC §2.1b: Norm(x) becomes x/(4 f0). SPEC's slot (γ = 0 with the defaults:
    // the price 0.7·129.36/800 of γ's energy far exceeds its marginal utility):
    // e = 0.3·0.8658685542155742 − 0.7·260.55684909977043/800 = 0.031773323302373147;
    // r = e + the same barrier terms as the SPEC example (1.1896293544806293).
    let linear = with(spec_instance(), "/params", json!({"cost_norm": "linear"}));
    let out = solve(&linear);
    close(&out, "/gamma/0", 0.0, HAND);
    close(&out, "/objective", 0.031773323302373147, HAND);
    close(
        &out,
        "/reward",
        0.03177332330237315 + 1.1896293544806293,
        HAND,
    );
    close(&out, "/servers/0/total", 260.55684909977043, HAND);
}

#[test]
fn linear_cost_norm_finds_the_interior_optimum() {
    // With f0 = 8000 the price of γ is constant: λ = (β2/S)·a/(4 f0) with
    // a = 392000 bits · 3.3e-4 (the user stays: no migration) = 129.36, and the
    // problem is concave, so γ* solves β1·ρ'(γ) = λ. ρ'(γ) by hand: with
    // n = 1000 + 500γ images, x = 0.0006·n, v = v(0.2),
    // ρ' = α1·α2·v·x^(v−1)·0.3·exp(−α2·x^v). Bisection, written out here.
    let (a1, a2, a4, a5, a6) = (0.8862f64, 6.8382f64, 0.9172f64, -0.0231f64, 0.8366f64);
    let v = a4 * (-((a5 + 0.2) / a6).powi(2)).exp();
    let x = |g: f64| 0.0006 * (1000.0 + 500.0 * g);
    let rho = |g: f64| v - a1 * (-a2 * x(g).powf(v)).exp();
    let drho = |g: f64| a1 * a2 * v * x(g).powf(v - 1.0) * 0.3 * (-a2 * x(g).powf(v)).exp();
    let lambda = 0.7 * 129.36 / (4.0 * 8000.0);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    assert!(
        0.3 * drho(lo) > lambda && 0.3 * drho(hi) < lambda,
        "interior"
    );
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if 0.3 * drho(mid) > lambda {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let g = 0.5 * (lo + hi);
    let total = 260.55684909977043 + 129.36 * g;
    let e = 0.3 * rho(g) - 0.7 * total / (4.0 * 8000.0);
    let instance = with(
        spec_instance(),
        "/params",
        json!({"cost_norm": "linear", "f0": 8000}),
    );
    let out = solve(&instance);
    close(&out, "/gamma/0", g, 1e-6);
    close(&out, "/utility/0", rho(g), 1e-9);
    close(&out, "/objective", e, 1e-9);
    close(&out, "/servers/0/total", total, 1e-6);
}

#[test]
fn bad_values_name_the_field() {
    let spec = spec_instance;
    let bad = |pointer: &str, value: Value| with(spec(), pointer, value).to_string();
    check_bad(
        &bad("/users/0/data_bits", json!(-1.0)),
        "users[0].data_bits: must be >= 0",
    );
    check_bad(
        &bad("/users/0/data_bits", json!("x")),
        "users[0].data_bits: invalid type: string \"x\", expected f64",
    );
    // JSON has no NaN; the string is a type error.
    check_bad(
        &bad("/users/0/emd", json!("NaN")),
        "users[0].emd: invalid type: string \"NaN\"",
    );
    check_bad(
        &bad("/users/0/emd", json!(3.0)),
        "users[0].emd: is out of range",
    );
    check_bad(&bad("/servers/0/q", json!(0)), "servers[0].q: must be > 0");
    check_bad(&bad("/association", json!([1])), "association[0]");
    check_bad(
        &bad("/association", json!([0, 0])),
        "association: 2 entries for 1 users",
    );
    check_bad(
        &bad("/users/0/prev_server", json!(1)),
        "users[0].prev_server: is out of range",
    );
    check_bad(
        &bad("/users/0/prev_server", json!(-1)),
        "users[0].prev_server",
    );
    check_bad(
        &bad("/servers", json!([])),
        "servers: at least one server is required",
    );
    check_bad(
        &bad("/users", json!([])),
        "users: at least one user is required",
    );
    check_bad(
        &bad("/params/beta2", json!(-0.5)),
        "params.beta2: must be >= 0",
    );
    check_bad(&bad("/params/alpha", json!([1, 2, 3])), "params.alpha");
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    let bad = |pointer: &str| with(spec_instance(), pointer, json!(1)).to_string();
    check_bad(&bad("/params/beta3"), "params.beta3: unknown field `beta3`");
    check_bad(&bad("/extra"), "unknown field `extra`");
    check_bad(&bad("/servers/0/z"), "servers[0].z: unknown field `z`");
    check_bad(
        &bad("/users/0/speed"),
        "users[0].speed: unknown field `speed`",
    );
}

#[test]
fn objects_cannot_be_written_as_arrays() {
    // serde's derived structs would take the field values in order; the contract
    // has named fields only.
    let positional =
        |pointer: &str, value: Value| with(spec_instance(), pointer, value).to_string();
    check_bad(
        &positional("/servers/0", json!([10.0, 20.0, 125.0, 1450.0, 55.0])),
        "servers[0]: invalid type: array",
    );
    check_bad(
        &positional(
            "/users/0",
            json!([3.0, 4.0, 0.2, 4500.0, 784000.0, 392000.0, 0]),
        ),
        "users[0]: invalid type: array",
    );
    check_bad(
        &positional("/params", json!([])),
        "params: invalid type: array",
    );
}

#[test]
fn malformed_json_is_one_clean_line() {
    check_bad("{\"servers\": [", "invalid JSON");
    check_bad("", "invalid JSON");
    check_bad("[1, 2]", "invalid type: array");
    check_bad("42", "invalid type: integer `42`");
    check_bad(&format!("{} {{}}", spec_instance()), "trailing characters");
    check_bad(
        &without(spec_instance(), "/users").to_string(),
        "missing field `users`",
    );
    // A number beyond f64 (JSON allows it, serde_json rejects it) names its field.
    let huge = spec_instance().to_string().replace("784000.0", "1e999");
    check_bad(&huge, "users[0].data_bits: number out of range");
    // A newline inside a key still gives one line of error.
    check_bad(r#"{"a\nb": 1}"#, "unknown field `a\\nb`");
}

#[test]
fn missing_file_names_the_path() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-instance.json");
    let out = diten()
        .args(["solve", "--instance"])
        .arg(&path)
        .output()
        .expect("running diten");
    check_error(&out, &path.display().to_string());
}

#[test]
fn missing_association_needs_a_policy_file() {
    let instance = without(spec_instance(), "/association").to_string();
    check_bad(&instance, "association");
    let out = solve_stdin(&instance);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--policy FILE"), "{stderr}");

    let out = run_with_stdin(
        diten().args(["solve", "--instance", "-", "--policy", "nearest"]),
        &spec_instance().to_string(),
    );
    check_error(&out, "`nearest` is not a file");
}

/// Solves `instance` through stdin with `--solver NAME` and returns the parsed output.
#[track_caller]
fn solve_with(instance: &Value, solver: &str) -> Value {
    let out = run_with_stdin(
        diten().args(["solve", "--instance", "-", "--solver", solver]),
        &instance.to_string(),
    );
    serde_json::from_str(&success(&out)).expect("stdout is JSON")
}

/// `--solver f32` against `--solver exact` (the independent reference: the exact
/// solver is checked against brute force and hand calculations) on `instance`:
/// same association, e within 1e-5, γ in [0, 1], C2 kept on every server where
/// the exact solution keeps it. Returns both outputs.
#[track_caller]
fn check_f32_against_exact(instance: &Value) -> (Value, Value) {
    let exact = solve_with(instance, "exact");
    assert_eq!(exact, solve(instance), "--solver exact is the default");
    let single = solve_with(instance, "f32");
    equal(&single, "/association", exact["association"].clone());
    let (e, s) = (
        exact["objective"].as_f64().expect("objective"),
        single["objective"].as_f64().expect("objective"),
    );
    assert!((e - s).abs() <= 1e-5, "e: exact {e}, f32 {s}");
    for g in single["gamma"].as_array().expect("gamma") {
        let g = g.as_f64().expect("γ is a number");
        assert!((0.0..=1.0).contains(&g), "γ = {g}");
    }
    let servers = instance["servers"].as_array().expect("servers");
    for (k, srv) in servers.iter().enumerate() {
        let q = srv["q"].as_f64().expect("q");
        if exact["servers"][k]["cmp"].as_f64().expect("cmp") <= q {
            let cmp = single["servers"][k]["cmp"].as_f64().expect("cmp");
            assert!(cmp <= q, "server {k}: C_cmp {cmp} > q {q}");
        }
    }
    equal(&single, "/feasible", exact["feasible"].clone());
    (exact, single)
}

#[test]
fn f32_solver_matches_exact_on_the_spec_example() {
    let (_, single) = check_f32_against_exact(&spec_instance());
    // SPEC §3.1's objective (the hand check above) within the f32 path's 1e-5.
    close(&single, "/objective", 0.0395068, 1e-5);
}

#[test]
fn f32_solver_matches_exact_on_a_crowded_server_where_c2_binds() {
    // Five users on server 0: C_cmp at γ = 0 is 3.3e-4·(4·392000 + 0) = 517.44
    // and at γ = 1 it adds 3.3e-4·(4·1568000 + 784000) = 2328.48, so q = 1450
    // binds; user 4 has no current data (steep utility at small γ) and user 3
    // migrates from server 1. User 5 alone on server 1.
    let user = |x: f64, images: f64, prev: f64, emd: f64, from: usize| {
        json!({"x": x, "y": 10.0, "emd": emd, "twin_bits": 4500.0,
               "data_bits": images * 784.0, "prev_data_bits": prev * 784.0,
               "prev_server": from})
    };
    let instance = json!({
        "params": {},
        "servers": [{"x": 10.0, "y": 20.0, "p": 125.0, "q": 1450.0, "eps": 55.0},
                    {"x": 60.0, "y": 70.0, "p": 140.0, "q": 1480.0, "eps": 54.5}],
        "users": [user(5.0, 500.0, 2000.0, 0.0, 0), user(15.0, 500.0, 2000.0, 0.2, 0),
                  user(20.0, 500.0, 2000.0, 0.4, 0), user(12.0, 500.0, 2000.0, 0.6, 1),
                  user(8.0, 0.0, 1000.0, 1.2, 0), user(55.0, 1200.0, 1800.0, 0.2, 1)],
        "association": [0, 0, 0, 0, 0, 1]
    });
    let (exact, single) = check_f32_against_exact(&instance);
    // C2 binds on server 0 in the exact solution; the f32 one fills it to within
    // the resolution of f32 γ (a few 1e-8 relative; 1e-6·q allowed).
    let cmp = exact["servers"][0]["cmp"].as_f64().expect("cmp");
    assert!(cmp > 1450.0 * (1.0 - 1e-9), "C2 binds on server 0: {exact}");
    close(&single, "/servers/0/cmp", cmp, 1e-6 * 1450.0);
}

/// `examples/u20-s21.json` after churn (SPEC §2.2a): its association dropped, the
/// last three users gone, user 0 just joined (`prev_server: null`) and server 4
/// down.
fn churned_instance() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/u20-s21.json");
    let text = std::fs::read_to_string(path).expect("reading examples/u20-s21.json");
    let mut instance: Value = serde_json::from_str(&text).expect("the example is JSON");
    instance
        .as_object_mut()
        .expect("an object")
        .remove("association");
    instance["users"]
        .as_array_mut()
        .expect("users")
        .truncate(17);
    instance["users"][0]["prev_server"] = Value::Null;
    instance["servers"][4]["available"] = Value::Bool(false);
    instance
}

#[test]
fn the_general_policy_decides_any_size_and_avoids_down_servers() {
    let instance = churned_instance();
    let file = scratch_file("churned.json", &instance.to_string());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = diten()
        .args(["solve", "--instance"])
        .arg(&file)
        .arg("--policy")
        .arg(format!("{root}/onnx-models/general/policy.bin"))
        .output()
        .expect("running diten solve");
    let decided: Value = serde_json::from_str(&success(&out)).expect("stdout is JSON");
    let association: Vec<u64> = decided["association"]
        .as_array()
        .expect("an association")
        .iter()
        .map(|v| v.as_u64().expect("a server index"))
        .collect();
    assert_eq!(association.len(), 17);
    assert!(
        association.iter().all(|&s| s < 21 && s != 4),
        "{association:?}"
    );
    // The figures are those of that association solved on its own.
    let given = with(instance.clone(), "/association", json!(association));
    let alone = solve(&given);
    assert_eq!(decided["objective"], alone["objective"]);
    assert_eq!(decided["gamma"], alone["gamma"]);

    // A flat blob serves exactly its (U, S): the error names both counts.
    let out = diten()
        .args(["solve", "--instance"])
        .arg(&file)
        .arg("--policy")
        .arg(format!("{root}/onnx-models/u20-s15/policy.bin"))
        .output()
        .expect("running diten solve");
    check_error(&out, "users: 17 in the status, the policy decides for 20");
}
