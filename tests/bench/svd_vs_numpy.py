"""Times kvscope's spectrum SVD path against numpy.linalg.svd on the same matrices.

Usage: svd_vs_numpy.py KVSCOPE_BINARY ROWS COLS COUNT
Both build matrix b from entry k = i*COLS + j as frac(43758.5453 sin(12.9898 k + 78.233 b)) in float64 and compute
singular values only, timing the decompositions alone; the sums of sigma_1 must agree. Run it with Debian's python3 (numpy
from python3-numpy, on the same OpenBLAS)."""
import subprocess
import sys
import time

import numpy as np

kv, rows, cols, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = subprocess.run([kv, "bench", "--svd", f"{rows},{cols},{count}"], capture_output=True, text=True, check=True).stdout
print(out.strip())
kv_seconds = float(out.split(": ")[1].split(" s,")[0])
kv_sum = float(out.split("sum of sigma_1 ")[1].split(";")[0])

# As kvscope does, the matrices are built first and only the decompositions are timed.
idx = np.arange(rows * cols, dtype=np.float64)
matrices = []
for b in range(count):
    x = 43758.5453 * np.sin(12.9898 * idx + 78.233 * b)
    matrices.append((x - np.floor(x)).reshape(rows, cols))
total, t0 = 0.0, time.perf_counter()
for a in matrices:
    total += np.linalg.svd(a, compute_uv=False)[0]
np_seconds = time.perf_counter() - t0
print(f"numpy      {count} matrices {rows}x{cols}: {np_seconds:.2f} s, {1e3 * np_seconds / count:.2f} ms/matrix; sum of sigma_1 {total:.9g}")
assert abs(total - kv_sum) <= 1e-6 * abs(total), "the two computed different singular values"
print(f"ratio      numpy / kvscope = {np_seconds / kv_seconds:.2f}x (numpy {np.__version__})")
