"""Checks a model checkpoint written by `idiff train` from Python: it loads with
torch.load(weights_only=True), its keys and shapes are the reference's (in order, from a
fixture's key list) and its values equal EXPECTED. Usage:
check_train_checkpoint.py MODEL.pt FIXTURE.json EXPECTED.safetensors"""
import json
import sys

import torch

from tensorfiles import read_safetensors, same


def main(path, fixture_json, expected_path):
    sd = torch.load(path, weights_only=True)
    keys = json.load(open(fixture_json))["keys"]
    assert [k for k, _ in keys] == list(sd.keys()), "keys differ from the reference's"
    for k, shape in keys:
        assert list(sd[k].shape) == shape, (k, sd[k].shape, shape)
        assert sd[k].dtype == torch.float32, (k, sd[k].dtype)
    expected = read_safetensors(expected_path)
    for k in sd:
        assert same(sd[k], expected[k]), k
    print(f"ok: {len(sd)} tensors")


if __name__ == "__main__":
    main(*sys.argv[1:])
