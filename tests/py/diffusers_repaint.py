"""Runs diffusers' RePaintScheduler (Lugmayr et al. 2022) on a fixed toy "model" and writes
its timesteps, every N(0, I) draw it takes and the final sample, for tests/test_repaint.cpp to
compare with idiff's RePaint solver (repaint.h) given the same draws.

The process: 20 steps, betas linear from 0.001 to 0.2 (alpha_bar_19 = 0.12: x_0 stays
near [-1, 1] unclipped, so float32 and float64 agree), written to the file, sampled at every
step (so undo_step takes one draw, as idiff's step up does), no clipping. The toy model (also
written in the C++ test): eps(x, t) = 0.5 tanh(x) cos(t / 7) + 0.2 x. The image:
0.8 sin(0.23 k), k = 0 .. 95, as [2, 3, 4, 4]; the mask keeps the left half of every row.
Cases: eta 0 and eta 1 (DDIM with the posterior variance, diffusers' stand-in for ancestral
steps), jump_length 3, jump_n_sample 3.

usage: diffusers_repaint.py OUT.safetensors
"""
import math
import sys

import torch
import diffusers.schedulers.scheduling_repaint as repaint
from safetensors.torch import save_file

T = 20


BETAS = torch.linspace(0.001, 0.2, T, dtype=torch.float64)


def model(x, t):
    return 0.5 * torch.tanh(x) * math.cos(float(t) / 7.0) + 0.2 * x


def run(eta, draws):
    sched = repaint.RePaintScheduler(num_train_timesteps=T, eta=eta, clip_sample=False,
                                     trained_betas=BETAS.numpy())
    sched.set_timesteps(T, jump_length=3, jump_n_sample=3)
    image = 0.8 * torch.sin(0.23 * torch.arange(96, dtype=torch.float64)).reshape(2, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    mask[..., :2] = 1
    taken = []
    gen = torch.Generator().manual_seed(5)

    def draw(shape, generator=None, device=None, dtype=None, layout=None):
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        taken.append(z)
        return z

    repaint.randn_tensor = draw
    x = draw(image.shape)
    t_last = sched.timesteps[0] + 1
    for t in sched.timesteps:
        if t < t_last:
            x = sched.step(model(x, int(t)), t, x, image, mask).prev_sample
        else:
            x = sched.undo_step(x, t_last)
        t_last = t
    return sched.timesteps.to(torch.float64), torch.stack(taken), x


def main(out):
    tensors = {"betas": BETAS}
    for name, eta in (("eta0", 0.0), ("eta1", 1.0)):
        timesteps, draws, x = run(eta, None)
        tensors[name + ".timesteps"] = timesteps
        tensors[name + ".draws"] = draws.contiguous()
        tensors[name + ".sample"] = x.contiguous()
    save_file(tensors, out)


if __name__ == "__main__":
    main(sys.argv[1])
