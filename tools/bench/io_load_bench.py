#!/usr/bin/env python3
"""Reference checkpoint-load throughput with the `safetensors` package, to compare with lethe's
io_load_bench (tests/io/io_load_bench.cpp) on the same file.

    build/tests/io/io_load_bench --keep            # writes /tmp/lethe_io_bench.safetensors
    /opt/lethe-venv/bin/python tools/bench/io_load_bench.py [/tmp/lethe_io_bench.safetensors [REPEAT]]

Times safe_open + get_tensor (framework="numpy": a copy of every tensor into a numpy array) with
the file's pages dropped from the page cache first (posix_fadvise DONTNEED: "cold") and again
with them cached ("warm"), printing the fastest of REPEAT (default 3) runs in GB/s like the C++
benchmark.
"""
import os
import sys
import time

from safetensors import safe_open


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def load(path):
    t0 = time.perf_counter()
    total = 0
    check = 0
    with safe_open(path, framework="numpy") as f:
        t1 = time.perf_counter()
        for k in f.keys():
            a = f.get_tensor(k)
            total += a.nbytes
            check ^= int(a.reshape(-1).view("u1")[a.nbytes // 2]) if a.nbytes else 0
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, total, check


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/lethe_io_bench.safetensors"
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for mode in ("cold", "warm"):
        best = None
        for _ in range(repeat):  # fastest of `repeat` runs, as the C++ benchmark does
            if mode == "cold":
                drop_cache(path)
            r = load(path)
            if best is None or r[0] + r[1] < best[0] + best[1]:
                best = r
        open_s, read_s, total, check = best
        gb = total / 1e9
        print(f"{mode} get_tensor {gb:.3f} GB: open {open_s * 1e3:.2f} ms + copy {read_s:.3f} s"
              f" = {gb / (open_s + read_s):.2f} GB/s (check {check})")


if __name__ == "__main__":
    main()
