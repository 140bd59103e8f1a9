//! The observation a policy sees: one function shared by the simulator (training)
//! and the gateway (deployment), so the two can never drift.
//!
//! Layout [`OBS_LAYOUT`] (`diten-obs-v1`), for U users and S servers, all `f32`,
//! [`obs_dim`]`(U, S) = U·(4 + 3S) + 4S` values:
//!
//! * per user u, in user order, a block of `4 + 3S`:
//!   `D_u,t / 1e6`, `D_u,t−1 / 1e6`, `φ_u`, `D_twin,u / 1e4`, then for each server s
//!   the distance `l_{u,s} / 100` (metres, Manhattan), then for each s the migration
//!   distance `l_{s_prev(u),s} / 100` (0 for every s when u has no previous server),
//!   then for each s the one-hot `[s = s_prev(u)]`;
//! * per server s, in server order, a block of 4: `q_s / 1e3`, `p_s / 1e2`,
//!   `ε_s / 1e2`, and the share of users whose previous server is s.
//!
//! The fixed scales only bring the values near 1; exported models also carry a
//! per-feature normalisation learnt in training.

use crate::{manhattan, Error, Slot};

/// Identifier of the layout [`observe`] writes; stored in every model and checked
/// at load.
pub const OBS_LAYOUT: &str = "diten-obs-v1";

/// Values per user in the observation for `servers` servers.
pub const fn user_block(servers: usize) -> usize {
    4 + 3 * servers
}

/// Position in the observation of the one-hot "user `user`'s previous server is
/// `server`" for `servers` servers (what a policy's stay prior reads).
pub const fn prev_server_feature(user: usize, server: usize, servers: usize) -> usize {
    user * user_block(servers) + 4 + 2 * servers + server
}

/// Values per server in the observation.
pub const SERVER_BLOCK: usize = 4;

/// Length of the observation for `users` users and `servers` servers.
pub const fn obs_dim(users: usize, servers: usize) -> usize {
    users * user_block(servers) + SERVER_BLOCK * servers
}

const DATA_SCALE: f64 = 1e6;
const TWIN_SCALE: f64 = 1e4;
const DIST_SCALE: f64 = 100.0;
const Q_SCALE: f64 = 1e3;
const P_SCALE: f64 = 1e2;
const EPS_SCALE: f64 = 1e2;

/// Writes the observation of `slot` into `out[..obs_dim(U, S)]` and returns that
/// length. `out` longer than needed is fine (the rest is untouched); shorter is
/// [`Error::ObservationLength`]. Never allocates or panics.
pub fn observe<const U: usize, const S: usize>(
    slot: &Slot<U, S>,
    out: &mut [f32],
) -> Result<usize, Error> {
    let servers = slot.servers();
    let users = slot.users();
    let (n_users, n_servers) = (users.len(), servers.len());
    let dim = obs_dim(n_users, n_servers);
    let got = out.len();
    let Some(out) = out.get_mut(..dim) else {
        return Err(Error::ObservationLength { expected: dim, got });
    };
    let (user_part, server_part) = out.split_at_mut(n_users * user_block(n_servers));
    for (user, block) in users
        .iter()
        .zip(user_part.chunks_exact_mut(user_block(n_servers)))
    {
        let (head, rest) = block.split_at_mut(4);
        let (dist, rest) = rest.split_at_mut(n_servers);
        let (mig, onehot) = rest.split_at_mut(n_servers);
        for (v, x) in head.iter_mut().zip([
            user.data_bits / DATA_SCALE,
            user.prev_data_bits / DATA_SCALE,
            user.emd,
            user.twin_bits / TWIN_SCALE,
        ]) {
            *v = x as f32;
        }
        let prev = user.prev_server.and_then(|p| servers.get(p));
        for (s, srv) in servers.iter().enumerate() {
            let d = manhattan(user.x, user.y, srv.x, srv.y) / DIST_SCALE;
            let m = prev.map_or(0.0, |p| manhattan(p.x, p.y, srv.x, srv.y) / DIST_SCALE);
            let one = if user.prev_server == Some(s) {
                1.0
            } else {
                0.0
            };
            if let (Some(dv), Some(mv), Some(ov)) =
                (dist.get_mut(s), mig.get_mut(s), onehot.get_mut(s))
            {
                *dv = d as f32;
                *mv = m as f32;
                *ov = one;
            }
        }
    }
    let share = 1.0 / n_users.max(1) as f64;
    for (s, (srv, block)) in servers
        .iter()
        .zip(server_part.chunks_exact_mut(SERVER_BLOCK))
        .enumerate()
    {
        let prev_users = users.iter().filter(|u| u.prev_server == Some(s)).count();
        for (v, x) in block.iter_mut().zip([
            srv.q / Q_SCALE,
            srv.p / P_SCALE,
            srv.eps / EPS_SCALE,
            prev_users as f64 * share,
        ]) {
            *v = x as f32;
        }
    }
    Ok(dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Server, User};

    fn srv(x: f64, y: f64) -> Server {
        Server {
            x,
            y,
            p: 125.0,
            q: 1450.0,
            eps: 55.0,
            available: true,
        }
    }

    #[test]
    fn layout_by_hand() {
        let servers = [srv(0.0, 0.0), srv(30.0, 40.0)];
        let users = [
            User {
                x: 10.0,
                y: 5.0,
                emd: 0.2,
                twin_bits: 4500.0,
                data_bits: 784_000.0,
                prev_data_bits: 392_000.0,
                prev_server: Some(1),
            },
            User {
                x: 30.0,
                y: 30.0,
                emd: 0.0,
                twin_bits: 4400.0,
                data_bits: 0.0,
                prev_data_bits: 0.0,
                prev_server: None,
            },
        ];
        let slot: Slot<4, 4> = Slot::new(&servers, &users).unwrap();
        let mut out = [f32::NAN; 32];
        assert_eq!(obs_dim(2, 2), 2 * 10 + 8);
        assert_eq!(observe(&slot, &mut out), Ok(28));
        #[rustfmt::skip]
        let expected: [f32; 28] = [
            // user 0: data, prev data, emd, twin; dist to s0 = 15, s1 = 20+35 = 55;
            // migration from s1: to s0 = 70, to s1 = 0; one-hot s1
            0.784, 0.392, 0.2, 0.45, 0.15, 0.55, 0.70, 0.0, 0.0, 1.0,
            // user 1: no previous server
            0.0, 0.0, 0.0, 0.44, 0.60, 0.10, 0.0, 0.0, 0.0, 0.0,
            // servers: q, p, eps, share of users previously there
            1.45, 1.25, 0.55, 0.0,
            1.45, 1.25, 0.55, 0.5,
        ];
        for (i, (a, b)) in out.iter().zip(expected).enumerate() {
            assert!((a - b).abs() < 1e-6, "obs[{i}] = {a}, expected {b}");
        }
        assert!(out[28..].iter().all(|v| v.is_nan()), "wrote past obs_dim");
    }

    #[test]
    fn short_buffer_is_an_error() {
        let slot: Slot<4, 4> = Slot::new(
            &[srv(0.0, 0.0)],
            &[User {
                x: 0.0,
                y: 0.0,
                emd: 0.0,
                twin_bits: 1.0,
                data_bits: 1.0,
                prev_data_bits: 0.0,
                prev_server: None,
            }],
        )
        .unwrap();
        let mut out = [0.0; 10];
        assert_eq!(
            observe(&slot, &mut out),
            Err(Error::ObservationLength {
                expected: 11,
                got: 10
            })
        );
    }
}
