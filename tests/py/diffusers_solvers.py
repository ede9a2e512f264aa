"""Runs diffusers' DPM-Solver++ and UniPC schedulers on a fixed toy "model" and writes their
timesteps, sigmas and final samples, for tests/test_sampling_interop.cpp to compare with
idiff's solvers configured alike.

The toy model (also written in the C++ test): eps(x, t) = 0.5 tanh(x) cos(t / 300) + 0.2 x,
or without the cos factor for the Karras cases (diffusers calls the model at rounded
timesteps there while the solver uses the exact Karras sigmas; a model that ignores t makes
the comparison about the solver alone). x_T = 1.3 sin(0.37 k), k = 0 .. 95, as [2, 3, 4, 4].
Every case runs on the first 900 steps of the cosine schedule, so sampling starts at
t = 899: at t = 999 alpha_bar is so small that unclipped few-step solvers blow up (and
Karras' spacing spends most steps near it).

usage: diffusers_solvers.py OUT.safetensors
"""
import sys

import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
from safetensors.torch import save_file

COMMON = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
              prediction_type="epsilon", final_sigmas_type="zero", lower_order_final=True)

CASES = {
    # name: (scheduler class, its settings, steps)
    "dpmpp_2m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2), 10),
    "dpmpp_3m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=3), 12),
    "dpmpp_2m_long": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2), 20),
    "dpmpp_3m_karras": (DPMSolverMultistepScheduler,
                        dict(algorithm_type="dpmsolver++", solver_order=3, use_karras_sigmas=True), 10),
    "unipc_bh2_2": (UniPCMultistepScheduler, dict(solver_type="bh2", solver_order=2), 10),
    # bh1 into sigma 0 is NaN in diffusers (B(h) = h = -inf times a zero correction): end at
    # the smallest sigma instead.
    "unipc_bh1_2": (UniPCMultistepScheduler,
                    dict(solver_type="bh1", solver_order=2, final_sigmas_type="sigma_min"), 8),
    "unipc_bh2_3_long": (UniPCMultistepScheduler, dict(solver_type="bh2", solver_order=3), 20),
    "unipc_bh2_3_karras": (UniPCMultistepScheduler,
                           dict(solver_type="bh2", solver_order=3, use_karras_sigmas=True), 12),
    "unipc_bh2_2_karras": (UniPCMultistepScheduler,
                           dict(solver_type="bh2", solver_order=2, use_karras_sigmas=True), 10),
}


def model(x, t, karras):
    eps = 0.5 * torch.tanh(x)
    if not karras:
        eps = eps * torch.cos(torch.tensor(float(t), dtype=torch.float64) / 300.0)
    return eps + 0.2 * x


def main(out):
    x_T = 1.3 * torch.sin(0.37 * torch.arange(96, dtype=torch.float64)).reshape(2, 3, 4, 4)
    tensors = {}
    for name, (cls, settings, steps) in CASES.items():
        karras = settings.get("use_karras_sigmas", False)
        betas = cls(**COMMON).betas[:900].numpy()
        sched = cls(**dict(COMMON, num_train_timesteps=900, **settings), trained_betas=betas)
        sched.set_timesteps(steps)
        x = x_T.clone()
        for t in sched.timesteps:
            x = sched.step(model(x, int(t), karras), t, x).prev_sample
        tensors[name + ".timesteps"] = sched.timesteps.to(torch.float64)
        tensors[name + ".sigmas"] = torch.as_tensor(sched.sigmas, dtype=torch.float64)
        tensors[name + ".sample"] = x.contiguous()
    save_file(tensors, out)


if __name__ == "__main__":
    main(sys.argv[1])
