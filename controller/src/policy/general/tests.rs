//! The `policy-v2` blob, features, forward pass and decoder. The forward pass is
//! checked against the module docs' formulas written out again in f64 below (a
//! second implementation, not the engine); the features against hand figures.

extern crate std;

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;
use crate::model::Load;
use crate::test_rng::Rng;
use crate::{Server, User};

type Sl = Slot<16, 8>;

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Raw weights of a general model with hidden width `h`.
pub(crate) struct Raw {
    h: usize,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    embed: (Vec<f32>, Vec<f32>),
    mix: (Vec<f32>, Vec<f32>),
    out: (Vec<f32>, Vec<f32>),
    decoder: Vec<f32>,
}

impl Raw {
    pub(crate) fn random(seed: u64, h: usize) -> Raw {
        let mut rng = Rng::new(seed);
        Raw {
            h,
            mean: rng.values(PAIR_FEATURES, 0.3),
            inv_std: (0..PAIR_FEATURES).map(|_| rng.range(0.5, 2.0)).collect(),
            embed: (rng.values(h * PAIR_FEATURES, 0.6), rng.values(h, 0.3)),
            mix: (rng.values(h * 3 * h, 0.4), rng.values(h, 0.3)),
            out: (rng.values(h, 0.8), rng.values(1, 0.3)),
            decoder: rng.values(DYN_FEATURES, 2.0),
        }
    }

    /// The blob of these weights.
    pub(crate) fn blob(&self, cost_norm: CostNorm) -> Vec<u8> {
        let b = |v: &Vec<f32>| le(v);
        let (em, eb, mm, mb, om, ob) = (
            b(&self.embed.0),
            b(&self.embed.1),
            b(&self.mix.0),
            b(&self.mix.1),
            b(&self.out.0),
            b(&self.out.1),
        );
        let (mean, inv, dec) = (b(&self.mean), b(&self.inv_std), b(&self.decoder));
        let h = self.h as u32;
        let layer = |i, o, w, bias| LayerRef {
            inputs: i,
            outputs: o,
            weight: F32Le::new(w),
            bias: F32Le::new(bias),
        };
        let model = GeneralRef {
            pair_mean: F32Le::new(&mean),
            pair_inv_std: F32Le::new(&inv),
            embed: layer(PAIR_FEATURES as u32, h, &em, &eb),
            mix: layer(3 * h, h, &mm, &mb),
            out: layer(h, 1, &om, &ob),
            decoder: F32Le::new(&dec),
            cost_norm,
        };
        let mut out = vec![0u8; general_encoded_len(&model).unwrap()];
        assert_eq!(encode_general(&model, &mut out).unwrap(), out.len());
        out
    }

    /// The base logits of the module docs, in f64, from the features.
    fn base(&self, params: &Params, slot: &Sl) -> Vec<Vec<f64>> {
        let (n, m, h) = (slot.users().len(), slot.servers().len(), self.h);
        let rate = params.rate_bps();
        let relu = |v: f64| v.max(0.0);
        let emb = |u: usize, s: usize| -> Vec<f64> {
            let x = pair_features(params, slot, rate, u, s).unwrap();
            let xn: Vec<f64> = (0..PAIR_FEATURES)
                .map(|i| {
                    ((f64::from(x[i]) - f64::from(self.mean[i])) * f64::from(self.inv_std[i]))
                        .clamp(-10.0, 10.0)
                })
                .collect();
            (0..h)
                .map(|o| {
                    relu(
                        f64::from(self.embed.1[o])
                            + (0..PAIR_FEATURES)
                                .map(|i| f64::from(self.embed.0[o * PAIR_FEATURES + i]) * xn[i])
                                .sum::<f64>(),
                    )
                })
                .collect()
        };
        let hs: Vec<Vec<Vec<f64>>> = (0..n)
            .map(|u| (0..m).map(|s| emb(u, s)).collect())
            .collect();
        let g: Vec<Vec<f64>> = (0..m)
            .map(|s| {
                (0..h)
                    .map(|k| (0..n).map(|u| hs[u][s][k]).sum::<f64>() / n as f64)
                    .collect()
            })
            .collect();
        let kk: Vec<Vec<f64>> = (0..n)
            .map(|u| {
                (0..h)
                    .map(|k| (0..m).map(|s| hs[u][s][k]).sum::<f64>() / m as f64)
                    .collect()
            })
            .collect();
        (0..n)
            .map(|u| {
                (0..m)
                    .map(|s| {
                        let cat: Vec<f64> = hs[u][s]
                            .iter()
                            .chain(&g[s])
                            .chain(&kk[u])
                            .copied()
                            .collect();
                        let z: Vec<f64> = (0..h)
                            .map(|o| {
                                relu(
                                    f64::from(self.mix.1[o])
                                        + (0..3 * h)
                                            .map(|i| f64::from(self.mix.0[o * 3 * h + i]) * cat[i])
                                            .sum::<f64>(),
                                )
                            })
                            .collect();
                        f64::from(self.out.1[0])
                            + (0..h).map(|o| f64::from(self.out.0[o]) * z[o]).sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }
}

fn server(x: f64, y: f64, available: bool) -> Server {
    Server {
        x,
        y,
        p: 125.0,
        q: 1450.0,
        eps: 55.0,
        available,
    }
}

pub(crate) fn random_slot(rng: &mut Rng, n: usize, m: usize) -> Sl {
    random_slot_in(rng, n, m)
}

/// A random slot of `n` users and `m` servers in a `Slot<U, S>`.
fn random_slot_in<const U: usize, const S: usize>(rng: &mut Rng, n: usize, m: usize) -> Slot<U, S> {
    let mut servers: Vec<Server> = (0..m)
        .map(|_| {
            let mut s = server(120.0 * rng.unit(), 120.0 * rng.unit(), rng.unit() > 0.2);
            s.q = 600.0 + 900.0 * rng.unit();
            s.p = 20.0 + 110.0 * rng.unit();
            s
        })
        .collect();
    if !servers.iter().any(|s| s.available) {
        servers[0].available = true;
    }
    let users: Vec<User> = (0..n)
        .map(|_| User {
            x: 120.0 * rng.unit(),
            y: 120.0 * rng.unit(),
            emd: [0.0, 0.2, 0.4][(3.0 * rng.unit()) as usize],
            twin_bits: 4500.0,
            data_bits: 784.0 * (200.0 + 1800.0 * rng.unit()).floor(),
            prev_data_bits: 784.0 * (200.0 + 1800.0 * rng.unit()).floor(),
            prev_server: (rng.unit() > 0.2).then(|| ((m as f64) * rng.unit()) as usize),
        })
        .collect();
    Slot::new(&servers, &users).unwrap()
}

#[test]
fn the_features_match_hand_figures() {
    // One user at (3, 4) on server 0 at (10, 20), last on server 1 at (50, 60).
    let servers = [server(10.0, 20.0, true), server(50.0, 60.0, false)];
    let user = User {
        x: 3.0,
        y: 4.0,
        emd: 0.2,
        twin_bits: 4500.0,
        data_bits: 784_000.0,
        prev_data_bits: 392_000.0,
        prev_server: Some(1),
    };
    let slot = Sl::new(&servers, &[user]).unwrap();
    let params = Params::default();
    let rate = params.rate_bps();
    let f = pair_features(&params, &slot, rate, 0, 0).unwrap();
    // Distances: |3−10| + |4−20| = 23 m; server 1 to server 0: 40 + 40 = 80 m.
    assert_eq!(f[0], 0.23);
    assert_eq!(f[1], 0.8);
    assert_eq!((f[2], f[3]), (0.0, 0.0));
    // C2: n_cmp·ε·D·(E_train + E_ft) = 1e-7·55·784000·60 = 258.72; over q = 1450.
    assert!((f[4] - (258.72 / 1450.0) as f32).abs() < 1e-6, "{}", f[4]);
    // C3: n_syn·(D/rate)·l = 0.1·(784000/rate)·23, over p = 125.
    let syn = 0.1 * (784_000.0 / rate) * 23.0;
    assert!((f64::from(f[5]) - syn / 125.0).abs() < 1e-6);
    // Migration at γ = 0: n_mig·l_mig·(D_t + D_twin) = 1e-4·80·788500 = 6308, so
    // C = 6308 + syn + 258.72 and the feature is ln(1 + C/(2·f0)) = ln(1 + C/400).
    let total = 1e-4 * 80.0 * (784_000.0 + 4500.0) + syn + 258.72;
    let expected = (1.0 + total / 400.0f64).ln();
    assert!(
        (f64::from(f[6]) - expected).abs() < 1e-5,
        "{} vs {expected}",
        f[6]
    );
    assert_eq!(&f[7..], &[1.0, 0.2, 0.784, 0.392, 0.0]);
    // On its previous server, which is down now.
    let g = pair_features(&params, &slot, rate, 0, 1).unwrap();
    assert_eq!((g[1], g[2], g[3], g[7]), (0.0, 1.0, 0.0, 0.0));
    assert!(pair_features(&params, &slot, rate, 1, 0).is_none());
}

#[test]
fn a_blob_round_trips_and_every_defect_is_named() {
    let raw = Raw::random(1, 8);
    let blob = raw.blob(CostNorm::Linear);
    assert!(is_general_blob(&blob));
    let policy = GeneralPolicy::parse(&blob).unwrap();
    assert_eq!(policy.model().hidden(), 8);
    assert_eq!(policy.model().cost_norm, CostNorm::Linear);
    assert_eq!(
        policy.model().decoder.iter().collect::<Vec<_>>(),
        raw.decoder
    );
    // The policy-v1 parser names the version; this one every defect.
    assert!(matches!(
        crate::policy::Policy::parse(&blob),
        Err(Error::Blob(BlobError::Version {
            found: 4,
            expected: 3
        }))
    ));
    let mut bad = blob.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        GeneralPolicy::parse(&bad),
        Err(Error::Blob(BlobError::Crc { .. }))
    ));
    assert!(matches!(
        GeneralPolicy::parse(&blob[..blob.len() - 1]),
        Err(Error::Blob(BlobError::Truncated { .. }))
    ));
    let mut longer = blob.clone();
    longer.push(0);
    assert!(matches!(
        GeneralPolicy::parse(&longer),
        Err(Error::Blob(BlobError::Trailing { .. }))
    ));
    let mut v1 = blob.clone();
    v1[4] = 3;
    // ... and says which version it reads (it said 3, the policy-v1 format's).
    let e = GeneralPolicy::parse(&v1).unwrap_err();
    assert_eq!(
        e,
        Error::Blob(BlobError::Version {
            found: 3,
            expected: 4
        })
    );
    assert_eq!(
        e.to_string(),
        "blob.version: format version 3 is not supported (expected 4)"
    );
    let mut v1_layout = blob.clone();
    v1_layout[6..22].copy_from_slice(b"diten-obs-v1\0\0\0\0");
    assert!(matches!(
        GeneralPolicy::parse(&v1_layout),
        Err(Error::Blob(BlobError::Layout {
            expected: "diten-obs-v2"
        }))
    ));
    // A NaN weight never parses (it would not encode either).
    let mut nan = Raw::random(1, 8);
    nan.mix.0[5] = f32::NAN;
    let b = nan
        .mix
        .0
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>();
    let layer = LayerRef {
        inputs: 24,
        outputs: 8,
        weight: F32Le::new(&b),
        bias: F32Le::new(&[0u8; 32]),
    };
    let policy = GeneralPolicy::parse(&blob).unwrap();
    let model = GeneralRef {
        mix: layer,
        ..policy.model()
    };
    assert!(matches!(
        general_encoded_len(&model),
        Err(Error::Blob(BlobError::Value { index: 5, .. }))
    ));
}

/// The engine's base logits (the decoder's term and penalty taken off again)
/// match the formulas of the module docs, for slots of many sizes.
#[test]
fn the_forward_pass_matches_the_formulas() {
    let mut rng = Rng::new(7);
    let params = Params::default();
    for case in 0..40 {
        // Every padded width of the engine (16, 32, 64), at and below it.
        let h = [4, 8, 16, 12, 24, 32, 40, 64][case as usize % 8];
        let raw = Raw::random(case, h);
        let blob = raw.blob(CostNorm::Paper);
        if h > RUN_MAX_HIDDEN {
            // A build without the feature `wide` refuses it, naming the width.
            let e = GeneralPolicy::parse(&blob).unwrap_err().to_string();
            assert!(e.contains("outputs") && e.contains(&h.to_string()), "{e}");
            continue;
        }
        let policy = GeneralPolicy::parse(&blob).unwrap();
        let (n, m) = (
            1 + (16.0 * rng.unit()) as usize,
            1 + (8.0 * rng.unit()) as usize,
        );
        let slot = random_slot(&mut rng, n.min(16), m.min(8));
        let (n, m) = (slot.users().len(), slot.servers().len());
        let mut scratch = vec![0.0; policy.scratch_len(n, m)];
        let mut out = vec![0.0; n * m];
        policy
            .logits(&params, &slot, &mut scratch, &mut out)
            .unwrap();
        let base = raw.base(&params, &slot);
        // Replay the decoder (its own placement, from the argmax of each row).
        let mut placed = vec![Placed::default(); m];
        let mut features = vec![[0.0f32; DYN_FEATURES]; m];
        let (mut penalty, mut loads) = (vec![0.0f32; m], vec![LoadF32::default(); m]);
        for u in 0..n {
            user_step(
                &params,
                &slot,
                u,
                &placed,
                &mut features,
                &mut penalty,
                &mut loads,
            );
            let row = &out[u * m..(u + 1) * m];
            for s in 0..m {
                if penalty[s] == f32::NEG_INFINITY {
                    assert_eq!(row[s], f32::NEG_INFINITY);
                    continue;
                }
                let term: f64 = (0..DYN_FEATURES)
                    .map(|i| f64::from(features[s][i]) * f64::from(raw.decoder[i]))
                    .sum();
                let want = base[u][s] + term + f64::from(penalty[s]);
                assert!(
                    (f64::from(row[s]) - want).abs() < 1e-3 * (1.0 + want.abs()) * 1e-1,
                    "case {case} u {u} s {s}: {} vs {want}",
                    row[s]
                );
            }
            let best = (0..m)
                .filter(|&s| slot.available(s))
                .fold(None, |b: Option<usize>, s| match b {
                    Some(t) if row[t] >= row[s] => Some(t),
                    _ => Some(s),
                })
                .unwrap();
            placed[best].add(&params, loads[best]);
            // The kept Norm is the one the module docs' formula gives.
            let want = (f64::from(placed[best].load.total) / (4.0 * params.f0)).tanh();
            assert!((f64::from(placed[best].norm) - want).abs() < 1e-6);
        }
    }
}

/// The decoder never picks a down server, and where some server still takes a
/// user, the user's pick keeps C2 and C3 with the users placed before it.
#[test]
fn the_decoder_respects_availability_and_capacity() {
    let mut rng = Rng::new(11);
    let params = Params::default();
    let rate = params.rate_bps();
    for case in 0..200 {
        let raw = Raw::random(100 + case, 8);
        let policy_blob = raw.blob(CostNorm::Paper);
        let policy = GeneralPolicy::parse(&policy_blob).unwrap();
        let slot = random_slot(&mut rng, 1 + case as usize % 16, 1 + case as usize % 8);
        let (n, m) = (slot.users().len(), slot.servers().len());
        let mut scratch = vec![0.0; policy.scratch_len(n, m)];
        let mut out = vec![0.0; n * m];
        policy
            .logits(&params, &slot, &mut scratch, &mut out)
            .unwrap();
        let mut sums = vec![Load::default(); m];
        for u in 0..n {
            let row = &out[u * m..(u + 1) * m];
            let pick = (0..m).fold(0, |b, s| if row[s] > row[b] { s } else { b });
            assert!(slot.available(pick), "case {case}: down server {pick}");
            let user = &slot.users()[u];
            let fits_somewhere = (0..m).any(|s| {
                slot.available(s)
                    && (sums[s] + Load::at_zero(&params, &slot, user, s, rate))
                        .fits(&slot.servers()[s])
            });
            let after = sums[pick] + Load::at_zero(&params, &slot, user, pick, rate);
            if fits_somewhere {
                assert!(
                    after.fits(&slot.servers()[pick]),
                    "case {case}: user {u} overfills"
                );
            }
            sums[pick] = after;
        }
    }
}

/// The AVX2 pass gives the portable pass's base logits bit for bit: its lane
/// arithmetic on the lanes' edge values (NaN, −0, infinities) against the
/// portable per-pair functions, then whole forward passes at every padded
/// width, on random weights and slots of every size up to the capacity, and on
/// the shipped blob. Skipped on a CPU without AVX2.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[test]
fn the_avx_pass_gives_the_portable_logits_bit_for_bit() {
    use super::avx::Lanes;
    let Some(simd) = pulp::x86::V3::try_new() else {
        std::eprintln!("no AVX2 on this CPU: nothing to compare");
        return;
    };
    fn lanes_agree<const N: usize>(simd: pulp::x86::V3, rng: &mut Rng) {
        let edge = [
            f32::NAN,
            -0.0,
            0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -1.0,
            1.0e30,
        ];
        let mut vector = |edges: bool| -> [f32; N] {
            core::array::from_fn(|i| match edges && i < edge.len() {
                true => edge[i],
                false => (rng.unit() as f32 - 0.5) * 4.0,
            })
        };
        // Per lane (pair): its own h, server term and context; lane 0 with the
        // edge values.
        let per_lane: Vec<[[f32; N]; 3]> = (0..8)
            .map(|i| [vector(i == 0), vector(i == 1), vector(i == 2)])
            .collect();
        let (user, out) = (vector(false), vector(false));
        let w: Vec<f32> = (0..N * N)
            .map(|i| ((i * 7919) % 13) as f32 * 0.37 - 2.0)
            .collect();
        let x: Vec<[f32; N_PAIR]> = (0..8)
            .map(|i| core::array::from_fn(|k| ((i * 5 + k * 3) % 7) as f32 * 0.75 - 2.0))
            .collect();
        let columns = |pick: usize| -> Vec<f32> { per_lane.iter().flat_map(|l| l[pick]).collect() };
        let (pre, ctx) = (columns(1), columns(2));
        let xs: [pulp::f32x8; N_PAIR] =
            core::array::from_fn(|k| pulp::cast::<[f32; 8], _>(core::array::from_fn(|i| x[i][k])));
        let hs: [pulp::f32x8; N] = core::array::from_fn(|o| {
            pulp::cast::<[f32; 8], _>(core::array::from_fn(|i| per_lane[i][0][o]))
        });
        struct Block<'t, const N: usize> {
            lanes: Lanes,
            user: &'t [f32; N],
            pre: &'t [f32],
            ctx: &'t [f32],
            w: &'t [f32],
            out: &'t [f32; N],
            xs: &'t [pulp::f32x8; N_PAIR],
            hs: &'t [pulp::f32x8; N],
        }
        impl<const N: usize> pulp::NullaryFnOnce for Block<'_, N> {
            type Output = ([f32; 8], [[f32; 8]; N]);
            #[inline(always)]
            fn call(self) -> Self::Output {
                let (user, pre, ctx, w, out) = (self.user, self.pre, self.ctx, self.w, self.out);
                let (pre, ctx) = (self.lanes.columns::<N>(pre), self.lanes.columns::<N>(ctx));
                let h = self.lanes.embed::<N>(user, &pre, 0, w, self.xs);
                let head = self.lanes.head::<N>(self.hs, &ctx, 0, user, w, out, 0.25);
                (pulp::cast(head), h.map(pulp::cast))
            }
        }
        let (head, h) = simd.vectorize(Block::<N> {
            lanes: Lanes(simd),
            user: &user,
            pre: &pre,
            ctx: &ctx,
            w: &w,
            out: &out,
            xs: &xs,
            hs: &hs,
        });
        for (i, lane) in per_lane.iter().enumerate() {
            let embed = super::pair::embed(&user, &lane[1], &w, &x[i]);
            let h_lane: Vec<u32> = h.iter().map(|v| v[i].to_bits()).collect();
            let embed: Vec<u32> = embed.iter().map(|v| v.to_bits()).collect();
            assert_eq!(h_lane, embed, "embed, lane {i}, N = {N}");
            let want = super::pair::head(&lane[0], &lane[2], &user, &w, &out, 0.25);
            assert!(
                want.to_bits() == head[i].to_bits() || (want.is_nan() && head[i].is_nan()),
                "head, lane {i}, N = {N}: {want} against {}",
                head[i]
            );
        }
    }
    let mut rng = Rng::new(11);
    for _ in 0..20 {
        lanes_agree::<16>(simd, &mut rng);
        lanes_agree::<32>(simd, &mut rng);
        lanes_agree::<64>(simd, &mut rng);
    }

    // Whole forward passes, random models of every padded width and the shipped one.
    let params = Params::default();
    let shipped = include_bytes!("../../../../onnx-models/general/policy.bin");
    let raws: Vec<Vec<u8>> = [4usize, 16, 12, 24, 32, 40, 64]
        .iter()
        .enumerate()
        .map(|(i, &h)| Raw::random(100 + i as u64, h).blob(CostNorm::Paper))
        .chain([shipped.to_vec()])
        .collect();
    for (case, blob) in raws.iter().enumerate() {
        let policy = GeneralPolicy::parse(blob).unwrap();
        // Every server count up to the capacity (full blocks of 8 and ragged
        // ones), users up to the capacity.
        for m in 1..=MAX_GENERAL_SERVERS {
            let n = 1 + (MAX_GENERAL_USERS as f64 * rng.unit()) as usize;
            let slot: Slot<MAX_GENERAL_USERS, MAX_GENERAL_SERVERS> = random_slot_in(&mut rng, n, m);
            let inputs = SlotIn::new(&params, &slot);
            let mut scratch = vec![0.0; policy.scratch_len(n, m)];
            let (mut fast, mut slow) = (vec![0.0f32; n * m], vec![0.0f32; n * m]);
            policy.base_in(&inputs, &mut scratch, &mut fast).unwrap();
            match padded_width(policy.model().hidden()) {
                16 => policy.forward::<16, 64, 32>(&inputs, &mut scratch, &mut slow),
                32 => policy.forward::<32, 64, 32>(&inputs, &mut scratch, &mut slow),
                _ => policy.forward::<64, 64, 32>(&inputs, &mut scratch, &mut slow),
            }
            .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "model {case}, {n} x {m}");
        }
    }
}

/// The AVX2 `ln_1p` gives `libm`'s `log1pf` bit for bit on every value the
/// forward pass hands it (0 <= x < inf): the edges of its branches, a million
/// random bit patterns and a million costs of the usual range. Skipped on a
/// CPU without AVX2.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[test]
fn the_avx_ln_1p_is_libms_log1pf() {
    let Some(simd) = pulp::x86::V3::try_new() else {
        std::eprintln!("no AVX2 on this CPU: nothing to compare");
        return;
    };
    let mut rng = Rng::new(5);
    let mut values: Vec<f32> = [
        0x0000_0000u32,
        0x0000_0001,
        0x007f_ffff,
        0x0080_0000,
        0x337f_ffff,
        0x3380_0000,
        0x3380_0001,
        0x3ed4_13cf,
        0x3ed4_13d0,
        0x3ed4_13d1,
        0x3f80_0000,
        0x4000_0000,
        0x4b80_0000,
        0x4c00_0000,
        0x7f7f_ffff,
    ]
    .iter()
    .map(|&b| f32::from_bits(b))
    .collect();
    values.extend((0..1_000_000).map(|_| f32::from_bits((rng.unit() * 2_139_095_040.0) as u32)));
    values.extend((0..1_000_000).map(|_| (rng.unit() * 8.0) as f32));
    check_lanes(simd, &values, Lanes1::Ln1p);
}

/// The AVX2 `tanh` gives `libm`'s `tanhf` bit for bit: the edges of its and
/// `expm1f`'s branches, a million random bit patterns of every sign, and a
/// million values of Norm's usual range. Skipped on a CPU without AVX2.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[test]
fn the_avx_tanh_is_libms_tanhf() {
    let Some(simd) = pulp::x86::V3::try_new() else {
        std::eprintln!("no AVX2 on this CPU: nothing to compare");
        return;
    };
    let mut rng = Rng::new(6);
    let edges = [
        0x0000_0000u32,
        0x0000_0001,
        0x007f_ffff,
        0x0080_0000,
        0x3280_0000,
        0x3300_0000,
        0x3e82_c578,
        0x3e82_c579,
        0x3f0c_9f54,
        0x3f0c_9f55,
        0x3f05_1592,
        0x3ed8_8c81,
        0x4120_0000,
        0x4120_0001,
        0x7f7f_ffff,
        0x7f80_0000,
        0x7fc0_0000,
        0x8000_0000,
        0xbf00_0000,
    ];
    let mut values: Vec<f32> = edges
        .iter()
        .flat_map(|&b: &u32| [b.wrapping_sub(1), b, b.wrapping_add(1)])
        .map(f32::from_bits)
        .collect();
    values.extend((0..1_000_000).map(|_| f32::from_bits((rng.unit() * 4_294_967_295.0) as u32)));
    values.extend((0..1_000_000).map(|_| (rng.unit() * 3.0) as f32));
    check_lanes(simd, &values, Lanes1::Tanh);
}

/// Every non-negative finite f32 (about 2.1e9 values, the whole domain the
/// engine hands them) through the AVX2 `ln_1p` and `tanh` against `libm`'s
/// `log1pf` and `tanhf` (about 40 s in release):
/// `cargo test -p diten-controller --features host-math,simd --release --lib -- --ignored every_f32`.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[test]
#[ignore]
fn the_avx_ln_1p_and_tanh_are_libms_on_every_f32() {
    let Some(simd) = pulp::x86::V3::try_new() else {
        return;
    };
    let mut values = Vec::with_capacity(1 << 20);
    for start in (0u32..0x7f80_0000).step_by(1 << 20) {
        values.clear();
        values.extend((start..(start + (1 << 20)).min(0x7f80_0000)).map(f32::from_bits));
        check_lanes(simd, &values, Lanes1::Ln1p);
        check_lanes(simd, &values, Lanes1::Tanh);
    }
}

/// The AVX2 decoding gives the portable decoding's logits bit for bit, on
/// random base logits, slots of every size up to the capacity, both cost
/// normalisers and random decoder weights. Skipped on a CPU without AVX2.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[test]
fn the_avx_decoding_gives_the_portable_logits_bit_for_bit() {
    let Some(simd) = pulp::x86::V3::try_new() else {
        std::eprintln!("no AVX2 on this CPU: nothing to compare");
        return;
    };
    let mut rng = Rng::new(21);
    for case in 0..200 {
        let m = 1 + case % MAX_GENERAL_SERVERS;
        let n = 1 + (MAX_GENERAL_USERS as f64 * rng.unit()) as usize;
        let mut params = Params::default();
        if case % 3 == 0 {
            params.cost_norm = CostNorm::Linear;
        }
        // A small f0 crowds Norm's rise into tanh's upper branches.
        params.f0 = [200.0, 20.0, 2000.0][case % 3];
        let slot: Slot<MAX_GENERAL_USERS, MAX_GENERAL_SERVERS> = random_slot_in(&mut rng, n, m);
        let inputs = SlotIn::new(&params, &slot);
        let decoder: [f32; DYN_FEATURES] =
            core::array::from_fn(|_| (rng.unit() as f32 - 0.5) * 8.0);
        let base: Vec<f32> = (0..n * m)
            .map(|_| (rng.unit() as f32 - 0.5) * 6.0)
            .collect();
        let (mut fast, mut slow) = (base.clone(), base);
        avx::decode(simd, &params, &inputs, &decoder, &mut fast);
        decode_in(&params, &inputs, &decoder, &mut slow);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&slow), "case {case}: {n} x {m}");
    }
}

/// Which lane function [`check_lanes`] checks.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
#[derive(Clone, Copy)]
enum Lanes1 {
    Ln1p,
    Tanh,
}

/// `values` through the AVX2 lane function `which`, against `libm`'s.
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
fn check_lanes(simd: pulp::x86::V3, values: &[f32], which: Lanes1) {
    struct Run<'v> {
        simd: pulp::x86::V3,
        values: &'v [f32],
        which: Lanes1,
    }
    impl pulp::NullaryFnOnce for Run<'_> {
        type Output = Vec<f32>;
        #[inline(always)]
        fn call(self) -> Vec<f32> {
            let lanes = super::avx::Lanes(self.simd);
            let mut out = Vec::with_capacity(self.values.len());
            for chunk in self.values.chunks(8) {
                let mut x = [0.0f32; 8];
                x[..chunk.len()].copy_from_slice(chunk);
                let x = pulp::cast(x);
                let y: [f32; 8] = pulp::cast(match self.which {
                    Lanes1::Ln1p => lanes.ln_1p(x),
                    Lanes1::Tanh => lanes.tanh(x),
                });
                out.extend_from_slice(&y[..chunk.len()]);
            }
            out
        }
    }
    let got = simd.vectorize(Run {
        simd,
        values,
        which,
    });
    for (&x, &y) in values.iter().zip(&got) {
        let (name, want) = match which {
            Lanes1::Ln1p => ("ln_1p", libm::log1pf(x)),
            Lanes1::Tanh => ("tanh", libm::tanhf(x)),
        };
        assert!(
            y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
            "{name}({x:e} = {:#010x}): {y:e} against libm's {want:e}",
            x.to_bits()
        );
    }
}
