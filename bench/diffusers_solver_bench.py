"""diffusers' DPM-Solver++ and UniPC on an improved-diffusion checkpoint, for
idiff_solver_bench (bench/solver_bench.cpp), which runs this with the x_T it measured and
their ground truth, and prints the rows beside its own.

The model is the Python reference's UNet (pass its checkout with --ref) with the
checkpoint's weights; x_T sits at --t_start, which diffusers reaches by a process of the
first t_start + 1 steps (trained_betas), so that its spacings and Karras sigmas start
there. With --clip the x_0 of every step is clipped to [-1, 1] as the reference's
--clip_denoised does: diffusers' thresholding with sample_max_value 1 (its quantile floor
is 1, so the threshold is 1 whatever the quantile). Prints one JSON line per configuration:
  {"solver": ..., "schedule": ..., "error": {"NFE": RMS}, "seconds": {"NFE": s per image}}
"""
import argparse
import json
import sys
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--model_path", required=True)
    p.add_argument("--io", required=True)
    p.add_argument("--t_start", type=int, required=True)
    p.add_argument("--nfe", default="5,10,20")
    p.add_argument("--flags", required=True, help="the model's idiff flags, one string")
    p.add_argument("--clip", action="store_true", help="clip each step's x_0 to [-1, 1]")
    a = p.parse_args()
    sys.path.insert(0, a.ref)
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler
    from improved_diffusion import gaussian_diffusion
    from improved_diffusion.script_util import create_model, model_and_diffusion_defaults
    from safetensors.torch import load_file

    words = a.flags.split()
    flags = {words[i].lstrip("-"): words[i + 1] for i in range(0, len(words), 2)}
    defaults = model_and_diffusion_defaults()
    def value(key):
        v = flags.get(key, defaults[key])
        if isinstance(defaults[key], bool):
            return str(v).lower() in ("true", "1", "yes")
        return type(defaults[key])(v)
    kw = {k: value(k) for k in (
        "image_size", "num_channels", "num_res_blocks", "learn_sigma", "class_cond",
        "use_checkpoint", "attention_resolutions", "num_heads", "num_heads_upsample",
        "use_scale_shift_norm", "dropout")}
    grey = int(flags.get("image_channels", 3))
    if grey == 3:
        model = create_model(**kw)
    else:
        # create_model builds RGB models only; idiff's --image_channels 1 is the same UNet
        # with one input and output channel (two with learned sigma).
        from improved_diffusion.unet import UNetModel
        size = kw["image_size"]
        model = UNetModel(
            in_channels=grey, model_channels=kw["num_channels"],
            out_channels=grey * (2 if kw["learn_sigma"] else 1),
            num_res_blocks=kw["num_res_blocks"],
            attention_resolutions=tuple(size // int(r) for r in kw["attention_resolutions"].split(",")),
            dropout=kw["dropout"], channel_mult={256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}[size],
            num_classes=None, use_checkpoint=False, num_heads=kw["num_heads"],
            num_heads_upsample=kw["num_heads_upsample"], use_scale_shift_norm=kw["use_scale_shift_norm"])
    if a.model_path.endswith(".safetensors"):
        sd = load_file(a.model_path)
    else:
        sd = torch.load(a.model_path, map_location="cpu", weights_only=True)
    model.load_state_dict(sd)
    model.eval()
    steps = value("diffusion_steps")
    betas = gaussian_diffusion.get_named_beta_schedule(value("noise_schedule"), steps)[: a.t_start + 1]
    scale = 1000.0 / steps if value("rescale_timesteps") else 1.0
    io = load_file(a.io)
    x_T, truth = io["x_T"], io["truth"]
    channels = x_T.shape[1]

    def eps(x, t):
        with torch.no_grad():
            out = model(x, torch.full((x.shape[0],), float(t) * scale))
        return out[:, :channels]

    common = dict(num_train_timesteps=a.t_start + 1, trained_betas=betas, final_sigmas_type="zero",
                  lower_order_final=True)
    if a.clip:
        common.update(thresholding=True, sample_max_value=1.0)
    configs = [
        ("DPM-Solver++ 2M", DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2)),
        ("DPM-Solver++ 3M", DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=3)),
        ("UniPC bh2 2", UniPCMultistepScheduler, dict(solver_type="bh2", solver_order=2)),
        ("UniPC bh1 3", UniPCMultistepScheduler, dict(solver_type="bh1", solver_order=3)),
        ("UniPC bh2 3", UniPCMultistepScheduler, dict(solver_type="bh2", solver_order=3)),
    ]
    for name, cls, settings in configs:
        for schedule in ("linspace", "trailing", "karras"):
            extra = dict(use_karras_sigmas=True) if schedule == "karras" else dict(timestep_spacing=schedule)
            row = {"solver": name, "schedule": schedule, "error": {}, "seconds": {}}
            for nfe in (int(v) for v in a.nfe.split(",")):
                sched = cls(**common, **settings, **extra)
                sched.set_timesteps(nfe)
                x = x_T.clone()
                start = time.perf_counter()
                try:
                    for t in sched.timesteps:
                        x = sched.step(eps(x, int(t)), t, x).prev_sample
                except (IndexError, AssertionError) as e:
                    # diffusers' Karras sigmas from the top of a cosine schedule can map two
                    # sigmas to one timestep, and its step index then runs off the end (or
                    # its UniPC order reaches 0).
                    row.setdefault("failed", {})[str(nfe)] = str(e)
                    row["error"][str(nfe)] = None
                    continue
                row["seconds"][str(nfe)] = (time.perf_counter() - start) / x.shape[0]
                err = (x - truth).pow(2).mean().sqrt().item()
                row["error"][str(nfe)] = err if err == err and err != float("inf") else None  # NaN: diverged
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
