"""Shared fixtures: the repository root and the `diten` binary the tests check the
module against (an independent process: the command, not the module)."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def diten_bin() -> Path:
    """`DITEN_BIN` (`make pytest` sets it), else target/release/diten, else
    target/debug/diten."""
    default = ROOT / "target" / "release" / "diten"
    if not default.is_file():
        default = ROOT / "target" / "debug" / "diten"
    path = Path(os.environ.get("DITEN_BIN", default))
    if not path.is_file():
        pytest.fail(f"no diten binary at {path}: run `make test` or set DITEN_BIN")
    return path


def run(bin_path, *args, stdin=None, check=True):
    """Runs the diten binary; returns the completed process."""
    p = subprocess.run(
        [str(bin_path), *map(str, args)], input=stdin, capture_output=True, text=True, cwd=ROOT
    )
    if check and p.returncode != 0:
        raise AssertionError(f"diten {' '.join(map(str, args))} failed: {p.stderr}")
    return p
