//! Shared by the controller's benches: a tiny deterministic generator and the
//! 20-user, 21-server slots of `gamma/u20_s21` (also decided by `decide/u20_s21`).

use diten_controller::{Server, Slot, User};

/// xorshift64*: a tiny deterministic generator so the benchmark needs no rand crate.
pub struct Rng(u64);
impl Rng {
    /// The generator of instance or policy `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// A slot and the association it was drawn with.
pub type Instance = (Slot<20, 21>, [usize; 20]);

/// Instance `seed`: 21 servers with default draws, 20 users each on the nearest
/// server with room (at most 4 per server), about one in five migrating.
pub fn instance(seed: u64) -> Instance {
    let mut rng = Rng::new(seed);
    let servers: Vec<Server> = (0..21)
        .map(|_| Server {
            x: rng.range(0.0, 120.0),
            y: rng.range(0.0, 120.0),
            p: rng.range(120.0, 150.0),
            q: rng.range(1400.0, 1500.0),
            eps: rng.range(54.0, 56.0),
            available: true,
        })
        .collect();
    let mut load = [0usize; 21];
    let mut association = [0usize; 20];
    let mut users = Vec::new();
    for a in association.iter_mut() {
        let (x, y) = (rng.range(0.0, 120.0), rng.range(0.0, 120.0));
        // Nearest server with room (at most 4 users each).
        let mut order: Vec<usize> = (0..21).collect();
        order.sort_by(|&i, &j| {
            let di = (servers[i].x - x).abs() + (servers[i].y - y).abs();
            let dj = (servers[j].x - x).abs() + (servers[j].y - y).abs();
            di.total_cmp(&dj)
        });
        let s = order.iter().copied().find(|&s| load[s] < 4).unwrap_or(0);
        load[s] += 1;
        *a = s;
        let prev = if rng.next() < 0.2 { order[1] } else { s };
        users.push(User {
            x,
            y,
            emd: 0.2,
            twin_bits: rng.range(4.4e3, 4.6e3),
            data_bits: (200.0 + rng.range(0.0, 1800.0)).round() * 784.0,
            prev_data_bits: (200.0 + rng.range(0.0, 1800.0)).round() * 784.0,
            prev_server: Some(prev),
        });
    }
    (
        Slot::new(&servers, &users).expect("valid instance"),
        association,
    )
}
