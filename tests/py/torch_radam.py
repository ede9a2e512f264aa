"""torch.optim.RAdam on the parameters and gradients in IN.safetensors (p.I: the initial
parameters; g.S.I: the gradient of parameter I at step S; lr and wd as scalars), written to
OUT.safetensors as p.I after the last step. Then loads idiff's optimizer file OPT.pt into a
fresh RAdam (load_state_dict), checks its hyper-parameters and that its state equals the
state torch reached, and takes one more step. Usage: torch_radam.py IN OUT OPT.pt"""
import sys

import torch

from tensorfiles import read_safetensors, write_safetensors


def main(in_path, out_path, opt_path):
    t = read_safetensors(in_path)
    n = sum(1 for k in t if k.startswith("p."))
    steps = sum(1 for k in t if k.startswith("g.") and k.endswith(".0"))
    lr, wd = float(t["lr"]), float(t["wd"])
    params = [torch.nn.Parameter(t[f"p.{i}"].clone()) for i in range(n)]
    opt = torch.optim.RAdam(params, lr=lr, weight_decay=wd)
    for s in range(steps):
        for i, p in enumerate(params):
            p.grad = t[f"g.{s}.{i}"].clone()
        opt.step()
    write_safetensors(out_path, {f"p.{i}": p.detach() for i, p in enumerate(params)})

    sd = torch.load(opt_path, weights_only=True)
    fresh = [torch.nn.Parameter(p.detach().clone()) for p in params]
    other = torch.optim.RAdam(fresh, lr=0.5)
    other.load_state_dict(sd)
    group = other.param_groups[0]
    assert group["lr"] == lr and group["weight_decay"] == wd, group
    assert group["betas"] == (0.9, 0.999) and group["decoupled_weight_decay"] is False, group
    for p, q in zip(params, fresh):
        for k in ("step", "exp_avg", "exp_avg_sq"):
            a, b = opt.state[p][k], other.state[q][k]
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), (k, (a - b).abs().max())
    sum((q ** 2).sum() for q in fresh).backward()
    other.step()
    print(f"ok: {n} parameters, {steps} steps")


if __name__ == "__main__":
    main(*sys.argv[1:])
