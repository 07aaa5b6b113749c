"""What rotation detection adds to rendering: the test corpus' photos (the list in
bench/orientation.py) through the pipeline with the detect step off and on, rounds
interleaved, one thread, in one process.

    IMGRESS_CORPUS=../shared/corpus .venv/bin/python bench/detect_cost.py [--rounds 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, before numpy/libvips start
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from imgress.app import make_pipeline
from imgress.config import load_settings
from orientation import CORPUS_PHOTOS  # bench/orientation.py: photos never trained on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    root = Path(os.environ.get("IMGRESS_CORPUS", "../shared/corpus"))
    photos = [root / p for p in CORPUS_PHOTOS]
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        pipes = {d: make_pipeline(load_settings(data_dir=out / str(d), orientation_detect=d))
                 for d in times}
        for d, pipe in pipes.items():  # load the model outside the timing
            (out / f"warm{d}").mkdir()
            pipe.render(photos[0], out / f"warm{d}")
        for r in range(args.rounds):
            for d, pipe in pipes.items():
                for i, photo in enumerate(photos):
                    target = out / f"{r}-{d}-{i}"
                    target.mkdir()
                    t0 = time.perf_counter()
                    pipe.render(photo, target)
                    times[d].append((time.perf_counter() - t0) * 1000)
    off = statistics.median(times[False])
    print(f"{len(photos)} photos x {args.rounds} rounds, one thread\n")
    print("| pipeline | median ms per image | mean | ratio |\n|---|---|---|---|")
    for d, label in ((False, "variants only"), (True, "variants + rotation detection")):
        med = statistics.median(times[d])
        print(f"| {label} | {med:.1f} | {statistics.mean(times[d]):.1f} | {med / off:.2f}x |")


if __name__ == "__main__":
    main()
