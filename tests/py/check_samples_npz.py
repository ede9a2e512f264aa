"""Checks a samples file written by `idiff sample` with numpy, against the layout of the
reference's image_sample.py: np.savez(path, arr_0[, arr_1]) with arr_0 uint8 images
[N, H, W, 3] and arr_1 int64 labels [N]. Usage: check_samples_npz.py FILE N SIZE LABELS(0|1)"""
import sys

import numpy as np


def main(path, n, size, labels):
    n, size, labels = int(n), int(size), labels == "1"
    f = np.load(path)
    assert sorted(f.files) == (["arr_0", "arr_1"] if labels else ["arr_0"]), f.files
    a = f["arr_0"]
    assert a.dtype == np.uint8 and a.shape == (n, size, size, 3), (a.dtype, a.shape)
    assert a.flags["C_CONTIGUOUS"]
    if labels:
        y = f["arr_1"]
        assert y.dtype == np.int64 and y.shape == (n,), (y.dtype, y.shape)
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
