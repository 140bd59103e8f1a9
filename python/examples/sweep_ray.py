"""A grid of diten evaluations (S × φ × seed) as Ray tasks, gathered into one table.

Each task runs ``diten.compare`` (the sweep of ``diten compare``, in Rust, the
GIL released) for one (S, φ, seed) cell and returns its summary rows; the driver
gathers them into a pandas DataFrame and writes a CSV. Ray does the scheduling:
on one machine ``ray.init()`` starts a local cluster; on a real cluster start
the head with ``ray start --head``, the workers with ``ray start
--address=HEAD:6379``, install the ``diten`` wheel on every node, and run this
script with ``RAY_ADDRESS=HEAD:6379`` (or ``--address``).

    python python/examples/sweep_ray.py --servers 9,15,21 --emd 0,0.2 --seeds 1,2,3 \
        --policies nearest,sticky,oracle --slots 750 --out runs/sweep.csv
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Optional

import pandas as pd
import ray

import diten


@ray.remote(num_cpus=1)
def cell(policies: list, servers: int, emd: float, seed: int, users: int, slots: int) -> list:
    """One (S, φ, seed) cell: the summary rows of ``diten compare`` on one thread."""
    summary = diten.compare(policies, servers=servers, emd=emd, seeds=[seed], users=users,
                            slots=slots, jobs=1)
    return [dict(row, seed=seed) for row in diten.api.to_frame(summary).to_dict("records")]


def sweep(policies, servers, emds, seeds, users=20, slots=750, address: Optional[str] = None,
          num_cpus: Optional[int] = None) -> pd.DataFrame:
    """Runs the grid on Ray (``address``/``RAY_ADDRESS`` for a cluster, else a local
    one with ``num_cpus``) and returns one row per (policy, S, φ, seed)."""
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), num_cpus=num_cpus,
                 include_dashboard=False, log_to_driver=False)
    futures = [cell.remote(list(policies), s, e, seed, users, slots)
               for s, e, seed in itertools.product(servers, emds, seeds)]
    rows = [row for rows in ray.get(futures) for row in rows]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["policy", "servers", "emd", "seed"]).reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="nearest,sticky,oracle")
    ap.add_argument("--servers", default="9,15,21")
    ap.add_argument("--emd", default="0.2")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--slots", type=int, default=750)
    ap.add_argument("--address", default=None, help="Ray cluster (default: RAY_ADDRESS, else local)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster")
    ap.add_argument("--out", default="sweep.csv")
    a = ap.parse_args()
    frame = sweep(a.policies.split(","), [int(s) for s in a.servers.split(",")],
                  [float(e) for e in a.emd.split(",")], [int(s) for s in a.seeds.split(",")],
                  a.users, a.slots, a.address, a.num_cpus)
    frame.to_csv(a.out, index=False)
    cols = ["policy", "servers", "emd", "seed", "objective_mean", "cost_total_mean"]
    print(frame[cols].to_string(index=False))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
