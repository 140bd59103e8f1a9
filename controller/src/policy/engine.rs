//! The policy engine: evaluates a parsed blob on an observation, in `f32`, without
//! allocating, reading the weights straight from the blob's bytes.

use super::blob::{self, Decoded, F32Le, LayerRef, ModelRef};
use super::{CLIP, MAX_WIDTH};
use crate::obs::obs_dim;
use crate::Error;

/// Scratch values [`Policy::logits`] needs at most for a policy with observations
/// of `obs_dim` values: `obs_dim + 2·MAX_WIDTH`. Enough for every policy of that
/// shape; [`Policy::scratch_len`] gives the exact need of one policy.
pub const fn max_scratch_len(obs_dim: usize) -> usize {
    obs_dim + 2 * MAX_WIDTH
}

/// A policy parsed from a blob (see [`blob`](super::blob)); the weights stay in the
/// blob and are borrowed for `'a`.
#[derive(Clone, Debug)]
pub struct Policy<'a> {
    net: Decoded<'a>,
    obs_dim: usize,
    max_hidden: usize,
}

impl<'a> Policy<'a> {
    /// Parses and checks a blob. Never allocates or panics: every way the blob can
    /// be wrong is an [`Error`] (listed in the [`blob`](super::blob) docs). Every
    /// weight is scanned once here, so [`logits`](Self::logits) has nothing left to
    /// check in the model.
    pub fn parse(blob: &'a [u8]) -> Result<Self, Error> {
        let net = blob::decode(blob)?;
        let obs_dim = obs_dim(net.users, net.servers);
        let hidden = net.layers.split_last().map_or(&[][..], |(_, h)| h);
        let max_hidden = hidden.iter().map(|l| width(l.outputs)).max().unwrap_or(0);
        Ok(Policy {
            net,
            obs_dim,
            max_hidden,
        })
    }

    /// Users U the policy decides for.
    pub fn users(&self) -> usize {
        self.net.users
    }

    /// Servers S the policy chooses among.
    pub fn servers(&self) -> usize {
        self.net.servers
    }

    /// Values of the observation the policy takes: `obs_dim(U, S)`.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Logits the policy gives: U·S.
    pub fn logits_len(&self) -> usize {
        self.net.users * self.net.servers
    }

    /// Scratch values [`logits`](Self::logits) needs: `obs_dim + 2·h`, where `h`
    /// is the widest hidden layer (0 with a single layer). At most
    /// [`max_scratch_len`]`(obs_dim)`.
    pub fn scratch_len(&self) -> usize {
        self.obs_dim + 2 * self.max_hidden
    }

    /// The network, borrowing from the blob (for inspection or [`encode`](super::encode)).
    pub fn model(&self) -> ModelRef<'_> {
        self.net.model()
    }

    /// Evaluates the policy: `out[u·S + s]` is the logit of user `u` on server `s`.
    ///
    /// `obs` must hold exactly [`obs_dim`](Self::obs_dim) finite values (as
    /// [`observe`](crate::obs::observe) writes them), `out` exactly
    /// [`logits_len`](Self::logits_len), and `scratch` at least
    /// [`scratch_len`](Self::scratch_len) (its contents are overwritten); otherwise
    /// [`Error::PolicyBuffer`] or [`Error::ObservationValue`], and `out` may be
    /// partly written. Never allocates or panics; the work is fixed by the shape.
    pub fn logits(&self, obs: &[f32], scratch: &mut [f32], out: &mut [f32]) -> Result<(), Error> {
        let need = |buffer, expected: usize, got: usize| {
            if got == expected {
                Ok(())
            } else {
                Err(Error::PolicyBuffer {
                    buffer,
                    expected,
                    got,
                })
            }
        };
        need("policy.obs", self.obs_dim, obs.len())?;
        need("policy.logits", self.logits_len(), out.len())?;
        let short = Error::PolicyBuffer {
            buffer: "policy.scratch",
            expected: self.scratch_len(),
            got: scratch.len(),
        };
        let (x, rest) = scratch.split_at_mut_checked(self.obs_dim).ok_or(short)?;
        let (mut a, rest) = rest.split_at_mut_checked(self.max_hidden).ok_or(short)?;
        let mut b = rest.get_mut(..self.max_hidden).ok_or(short)?;

        let norm = self.net.norm_mean.iter().zip(self.net.norm_inv_std.iter());
        for (index, ((x, &o), (mean, inv_std))) in x.iter_mut().zip(obs).zip(norm).enumerate() {
            if !o.is_finite() {
                return Err(Error::ObservationValue { index });
            }
            *x = ((o - mean) * inv_std).clamp(-CLIP, CLIP);
        }
        let x: &[f32] = x;

        let Some((last, hidden)) = self.net.layers.split_last() else {
            return Ok(()); // never: parsing requires at least one layer
        };
        // Each hidden layer writes `b`, then `a` and `b` swap: `a` holds the newest.
        let mut input = x;
        for layer in hidden {
            let w = width(layer.outputs);
            let dst = b.get_mut(..w).ok_or(short)?;
            dense(layer, input, dst);
            for v in dst.iter_mut() {
                *v = libm::tanhf(*v);
            }
            core::mem::swap(&mut a, &mut b);
            input = a.get(..w).ok_or(short)?;
        }
        dense(last, input, out);
        if let Some(skip) = &self.net.skip {
            add_dense(skip, x, out);
        }
        if let Some(prior) = &self.net.prior {
            // Indices were checked below obs_dim at parse: the 0 fallback never applies.
            for ((o, i), w) in out
                .iter_mut()
                .zip(prior.index.iter())
                .zip(prior.weight.iter())
            {
                *o += w * x.get(i).copied().unwrap_or(0.0);
            }
        }
        Ok(())
    }

    /// The best server of each user: `out[u]` is the index of the largest of
    /// `logits[u·S .. (u+1)·S]` (ties: the lowest index; NaN never wins; a row
    /// of NaN gives 0). `logits` must hold exactly [`logits_len`](Self::logits_len)
    /// values and `out` exactly U, otherwise [`Error::PolicyBuffer`].
    pub fn best_servers(&self, logits: &[f32], out: &mut [usize]) -> Result<(), Error> {
        if logits.len() != self.logits_len() {
            return Err(Error::PolicyBuffer {
                buffer: "policy.logits",
                expected: self.logits_len(),
                got: logits.len(),
            });
        }
        if out.len() != self.users() {
            return Err(Error::PolicyBuffer {
                buffer: "policy.servers",
                expected: self.users(),
                got: out.len(),
            });
        }
        for (best, row) in out
            .iter_mut()
            .zip(logits.chunks_exact(self.servers().max(1)))
        {
            let mut top = f32::NEG_INFINITY;
            *best = 0;
            for (s, &v) in row.iter().enumerate() {
                if v > top {
                    top = v;
                    *best = s;
                }
            }
        }
        Ok(())
    }
}

fn width(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// `out = W·x + b` (all shapes checked at parse).
fn dense(layer: &LayerRef<'_>, x: &[f32], out: &mut [f32]) {
    for (o, (row, b)) in out.iter_mut().zip(rows(layer, x.len())) {
        *o = dot(row, x) + b;
    }
}

/// `out += W·x + b`.
fn add_dense(layer: &LayerRef<'_>, x: &[f32], out: &mut [f32]) {
    for (o, (row, b)) in out.iter_mut().zip(rows(layer, x.len())) {
        *o += dot(row, x) + b;
    }
}

/// The weight rows (as bytes) of `layer` with their biases.
fn rows<'a>(layer: &LayerRef<'a>, inputs: usize) -> impl Iterator<Item = (&'a [u8], f32)> {
    let bias: F32Le<'a> = layer.bias;
    layer
        .weight
        .as_bytes()
        .chunks_exact(4 * inputs.max(1))
        .zip(bias.iter())
}

/// Lanes of the dot product: independent partial sums the compiler can keep in
/// vector registers (a single running sum would serialise every addition).
const LANES: usize = 8;

/// `Σ w_i·x_i` with `w` as little-endian `f32` bytes; extra values on either side
/// are ignored.
#[inline]
fn dot(w: &[u8], x: &[f32]) -> f32 {
    let (w_blocks, w_tail) = w.as_chunks::<{ 4 * LANES }>();
    let (x_blocks, x_tail) = x.as_chunks::<LANES>();
    let mut acc = [0.0f32; LANES];
    for (wb, xb) in w_blocks.iter().zip(x_blocks) {
        let (w4, _) = wb.as_chunks::<4>();
        for ((a, wi), xi) in acc.iter_mut().zip(w4).zip(xb) {
            *a += f32::from_le_bytes(*wi) * xi;
        }
    }
    let (w4, _) = w_tail.as_chunks::<4>();
    let tail: f32 = w4
        .iter()
        .zip(x_tail)
        .map(|(wi, xi)| f32::from_le_bytes(*wi) * xi)
        .sum();
    let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
    ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7)) + tail
}
