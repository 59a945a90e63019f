#!/usr/bin/env python
"""A longer fuzz run of the input parsers than the suite's: the tests of
tests/test_fuzz_parsers.py (image decoding and the upload check, chest_xray's DICOM check
and reader, the multipart and urlencoded parsers through the real API on PostgreSQL and
SQLite), each with --examples examples from a fresh random seed.

    .venv/bin/python scripts/fuzz_parsers.py --examples 5000
    .venv/bin/python scripts/fuzz_parsers.py --examples 2000 --seed 1234 -k dicom

Needs PostgreSQL on 127.0.0.1 like the service tests (TWINLENS_TEST_PG_* to point
elsewhere). Prints each test's statistics (examples run, time, how each example ended) and
exits non-zero when any test finds an input that crashes a parser or gets a 5xx; the
failing input is printed with a @reproduce_failure line to replay it.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "test_fuzz_parsers.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per fuzz test (the suite runs 300)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run: its seed is printed at the start")
    parser.add_argument("-k", dest="select", default=None, help="only the tests whose names match (pytest -k)")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzzing with {args.examples} examples per test, seed {seed}", flush=True)
    # The tests read the number of examples from the environment; set, it also lets them explore
    # (the suite's own run is derandomised).
    os.environ["TWINLENS_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pytest_args = [str(TESTS), "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
                   f"--hypothesis-seed={seed}", "-o", "timeout=0", "-W", "ignore::UserWarning"]
    if args.select:
        pytest_args += ["-k", args.select]
    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
