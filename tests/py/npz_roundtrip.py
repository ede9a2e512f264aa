"""numpy's side of the npz tests. The arrays follow fixed formulas that the C++ test uses
too: arr_0 = uint8 NHWC images, arr_1 = int64 labels (a reference sample file), plus
float32, float64 and int32 arrays.
Usage: npz_roundtrip.py write PATH | check PATH"""
import sys

import numpy as np


def expected():
    return {
        "arr_0": (np.arange(2 * 4 * 5 * 3) % 251).astype(np.uint8).reshape(2, 4, 5, 3),
        "arr_1": np.arange(2, dtype=np.int64) * 7 - 3,
        "f32": (np.arange(6, dtype=np.float32) / 4 - 1).reshape(2, 3),
        "f64": np.arange(5, dtype=np.float64) / 3,
        "i32": np.arange(-3, 3, dtype=np.int32),
    }


def main(mode, path):
    want = expected()
    if mode == "write":
        np.savez(path, **want)
    else:
        got = np.load(path)
        assert list(got.keys()) == list(want), list(got.keys())
        for k, v in want.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, (k, got[k].dtype, got[k].shape)
            assert np.array_equal(got[k], v), k
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
