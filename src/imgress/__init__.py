"""imgress: image ingestion (bulk and direct uploads, processing, delivery, downloads)."""

import os

# The rotation model's numpy matmuls run inside worker threads that already use every
# core; BLAS threads on top of them oversubscribe the CPU (measured: 33 ms per image
# with 2 BLAS threads on a busy 2-core machine, 7 ms with 1). Set before numpy loads;
# an operator's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
