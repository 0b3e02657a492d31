"""The fuzz suite at length: many more mutated files and records than the tests run (tests/fuzzing.py).

For each target — saved PNGs (settings read back and checked against the panels' limits), run files,
model bundles (loaded and sampled), guided-diffusion .pt files, the stored session settings, library
rows (listed, reopened), saved sweeps' group rows (listed, reopened) — it runs N seeded cases and
prints how many were accepted, refused with a readable line, or failed the oracle (another exception,
a message over several lines, a file changed), with the first failures. Exits 0 when nothing failed.

Usage: python bench/fuzz.py [--cases 1000] [--seed 1] [--only png,bundle]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fuzzing  # noqa: E402

TARGETS = {
    "png": lambda folder, n, seed: fuzzing.fuzz_png(folder, n, seed),
    "run-file": lambda folder, n, seed: fuzzing.fuzz_run_file(folder, n, seed),
    "bundle": lambda folder, n, seed: fuzzing.fuzz_bundle(folder, n, seed),
    "pt": lambda folder, n, seed: fuzzing.fuzz_pt(folder, max(1, n // 4), seed),  # each builds a UNet
    "settings": lambda folder, n, seed: fuzzing.fuzz_settings(10 * n, seed),  # microseconds each
    "library": lambda folder, n, seed: fuzzing.fuzz_library_rows(folder, n, seed),
    "groups": lambda folder, n, seed: fuzzing.fuzz_library_groups(folder, n, seed),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases per target (pt: a quarter, settings: ×10)")
    parser.add_argument("--seed", type=int, default=1, help="the tests use seed 0; another seed, other cases")
    parser.add_argument("--only", default="", help="comma list of targets: " + ", ".join(TARGETS))
    args = parser.parse_args()
    chosen = [t for t in args.only.split(",") if t] or list(TARGETS)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; seed {args.seed}")
    total = fuzzing.Tally()
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as folder:
            start = time.perf_counter()
            tally = TARGETS[name](Path(folder), args.cases, args.seed)
            seconds = time.perf_counter() - start
        total.add(tally)
        print(f"{name:9s} {tally.cases:6d} cases in {seconds:6.1f} s: {tally.outcomes['accepted']} accepted, "
              f"{tally.outcomes['refused']} refused readably, {len(tally.failures)} failed")
        for failure in tally.failures[:10]:
            print(f"    {failure}")
    print(f"all      {total.cases:6d} cases: {len(total.failures)} failed")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
