"""Loads an optimizer state written by idiff with torch.load(weights_only=True), feeds it to
torch.optim.AdamW.load_state_dict for parameters of the shapes in EXPECTED, checks that the
restored state equals EXPECTED bit for bit and the hyper-parameters came through, and takes
a step. Usage: check_opt_from_cpp.py OPT.pt EXPECTED.safetensors"""
import sys

import torch

from tensorfiles import read_safetensors, same


def main(path, expected_path):
    expected = read_safetensors(expected_path)
    sd = torch.load(path, weights_only=True)
    assert set(sd) == {"state", "param_groups"}, sd.keys()
    n = len(sd["state"])
    params = [torch.nn.Parameter(torch.zeros_like(expected[f"{i}.exp_avg"])) for i in range(n)]
    opt = torch.optim.AdamW(params, lr=0.5)
    opt.load_state_dict(sd)
    group = opt.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8, group
    assert group["weight_decay"] == 0.0 and group["amsgrad"] is False and group["foreach"] is None, group
    for i, p in enumerate(params):
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert same(opt.state[p][k], expected[f"{i}.{k}"]), (i, k)
    sum((p ** 2).sum() for p in params).backward()
    opt.step()
    assert all(float(opt.state[p]["step"]) == float(expected["0.step"]) + 1 for p in params)
    print(f"ok: {n} parameters")


if __name__ == "__main__":
    main(*sys.argv[1:])
