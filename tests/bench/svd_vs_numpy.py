"""Times kvscope's spectrum SVD paths against numpy on the same matrices.

Usage: svd_vs_numpy.py KVSCOPE_BINARY ROWS COLS COUNT
Both build matrix b from entry k = i*COLS + j as frac(43758.5453 sin(12.9898 k + 78.233 b)) in float64 and compute
singular values only, timing the decompositions alone: kvscope's exact route (`bench --svd`) against
numpy.linalg.svd(compute_uv=False), and its Gram route (`bench --svd --svd-method gram`) against numpy's
sqrt(eigvalsh(A^T A)). The sums of sigma_1 must agree. Run it with Debian's python3 (numpy from python3-numpy, on the
same OpenBLAS)."""
import subprocess
import sys
import time

import numpy as np

kv, rows, cols, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])


def kvscope(method):
    out = subprocess.run([kv, "bench", "--svd", f"{rows},{cols},{count}", "--svd-method", method], capture_output=True, text=True,
                         check=True).stdout
    print(out.strip())
    return float(out.split("): ")[1].split(" s,")[0]), float(out.split("sum of sigma_1 ")[1].split(";")[0])


# kvscope runs first, while numpy's copies of the matrices do not yet take memory.
kv_runs = {method: kvscope(method) for method in ("exact", "gram")}

# As kvscope does, the matrices are built first and only the decompositions are timed.
idx = np.arange(rows * cols, dtype=np.float64)
matrices = []
for b in range(count):
    x = 43758.5453 * np.sin(12.9898 * idx + 78.233 * b)
    matrices.append((x - np.floor(x)).reshape(rows, cols))


def numpy_time(name, sigma_1):
    total, t0 = 0.0, time.perf_counter()
    for a in matrices:
        total += sigma_1(a)
    seconds = time.perf_counter() - t0
    print(f"numpy {name:5} {count} matrices {rows}x{cols}: {seconds:.4f} s, {1e3 * seconds / count:.4f} ms/matrix; "
          f"sum of sigma_1 {total:.17g}")
    return seconds, total


for method, name, sigma_1 in (("exact", "svd", lambda a: np.linalg.svd(a, compute_uv=False)[0]),
                              ("gram", "gram", lambda a: np.sqrt(np.linalg.eigvalsh(a.T @ a if rows >= cols else a @ a.T)[-1]))):
    kv_seconds, kv_sum = kv_runs[method]
    np_seconds, np_sum = numpy_time(name, sigma_1)
    assert abs(np_sum - kv_sum) <= 1e-9 * abs(np_sum), "the two computed different singular values"
    print(f"ratio {method:5} numpy / kvscope = {np_seconds / kv_seconds:.2f}x (numpy {np.__version__})")
