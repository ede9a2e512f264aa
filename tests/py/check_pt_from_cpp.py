"""Checks a .pt written by idiff against the tensors of a safetensors file: loads it with
torch.load(weights_only=True) and with plain torch.load, and requires the same keys in the
same order, bitwise-equal tensors, views and shared storages as idiff wrote them.
Usage: check_pt_from_cpp.py FILE.pt EXPECTED.safetensors"""
import collections
import sys

import torch

from tensorfiles import read_safetensors, same


def main(pt, expected_path):
    expected = read_safetensors(expected_path)
    for weights_only in (True, False):
        sd = torch.load(pt, weights_only=weights_only)
        assert type(sd) is collections.OrderedDict, type(sd)
        assert list(sd) == list(expected), (list(sd), list(expected))
        for k, t in sd.items():
            assert same(t, expected[k]), (k, t, expected[k])
            assert not t.requires_grad, k
    if "view_t" in sd:  # a transposed view keeps its strides
        assert not sd["view_t"].is_contiguous() and sd["view_t"].stride() == (1, 3), sd["view_t"].stride()
    if "shared_a" in sd:  # two views of one storage stay one storage
        a, b = sd["shared_a"], sd["shared_b"]
        assert a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        assert b.storage_offset() == 4, b.storage_offset()
    print(f"ok: {len(sd)} tensors")


if __name__ == "__main__":
    main(*sys.argv[1:])
