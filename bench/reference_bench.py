"""Times the Python reference (improved-diffusion) on the configurations of idiff's
benchmarks, so both run on the same LibTorch, device and thread count.

The reference's code is not part of idiff: pass the folder of a checkout with --ref.

Two modes:
  one shot   --config tiny --what train,sample,ddim --batch 16: prints one JSON object per
             measurement on stdout.
  --serve    reads one JSON request per line on stdin ({"config": "tiny", "what": "train",
             "batch": 16, "steps": 10, ...}; the keys are the one-shot flags) and answers each
             with one JSON line; idiff_bench drives it so that idiff and the reference take
             turns on the same machine. Models stay built between requests.

The work timed mirrors bench/bench_workloads.cpp: a training step is zero_grad, a
UniformSampler draw, training_losses, (loss * w).mean().backward(), AdamW, update_ema;
sampling is p_sample_loop over --sample_steps respaced steps, ddim is ddim_sample_loop
over ddim<--ddim_steps>. Parameters that are initialised to zero get N(0, 0.01^2) noise
first, so no layer multiplies zeros (both sides do the same).
"""
import argparse
import contextlib
import json
import os
import resource
import sys
import time

CONFIGS = {
    # The unet_tiny fixture's model: 32x32, 32 channels, 1 res block, attention at 16 and 8.
    "tiny": dict(image_size=32, num_channels=32, num_res_blocks=1, num_heads=4,
                 attention_resolutions="16,8", learn_sigma=True, noise_schedule="cosine",
                 use_scale_shift_norm=True),
    # The CIFAR-10 model of the paper (52.5M parameters).
    "cifar10": dict(image_size=32, num_channels=128, num_res_blocks=3, learn_sigma=True,
                    dropout=0.3, noise_schedule="cosine", diffusion_steps=4000),
    # The ImageNet-64 model of the paper (121M parameters).
    "imagenet64": dict(image_size=64, num_channels=128, num_res_blocks=3, learn_sigma=True,
                       noise_schedule="cosine", diffusion_steps=4000),
}

DEFAULTS = dict(config="tiny", what="train,sample", batch=16, steps=10, warmup=2,
                sample_steps=100, ddim_steps=50, precision="fp32", use_checkpoint=False)


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss():
    # As idiff_bench does: free heap pages go back to the kernel first (glibc's
    # malloc_trim), so the growth measured is the region's own need.
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    # Linux: writing 5 to clear_refs resets the resident-set high-water mark that
    # getrusage reports; where that is refused the peak is the process's lifetime peak.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Reference:
    def __init__(self, ref, threads, device):
        sys.path.insert(0, ref)
        import torch as th
        from improved_diffusion import script_util
        from improved_diffusion.nn import update_ema
        from improved_diffusion.resample import UniformSampler
        self.th, self.script_util = th, script_util
        self.update_ema, self.UniformSampler = update_ema, UniformSampler
        if threads:
            th.set_num_threads(threads)
        th.manual_seed(0)
        self.dev = th.device(device)
        self.models = {}

    def sync(self):
        if self.dev.type == "cuda":
            self.th.cuda.synchronize()

    def flags(self, config, use_checkpoint):
        flags = self.script_util.model_and_diffusion_defaults()
        flags.update(CONFIGS[config])
        flags["use_checkpoint"] = use_checkpoint
        return flags

    def model(self, config, use_checkpoint):
        key = (config, use_checkpoint)
        if key not in self.models:
            th = self.th
            flags = self.flags(config, use_checkpoint)
            model, diffusion = self.script_util.create_model_and_diffusion(**flags)
            model.to(self.dev)
            with th.no_grad():
                for p in model.parameters():
                    if not p.any():
                        p.normal_(0, 0.01)
            self.models[key] = dict(model=model, diffusion=diffusion, opt=None, ema=None)
        return self.models[key]

    def measure(self, req):
        th = self.th
        r = dict(DEFAULTS, **req)
        entry = self.model(r["config"], bool(r["use_checkpoint"]))
        model, flags = entry["model"], self.flags(r["config"], bool(r["use_checkpoint"]))
        size, batch, what = flags["image_size"], int(r["batch"]), r["what"]
        bf16 = r["precision"] == "bf16"
        clock = time.process_time if r.get("clock") == "cpu" else time.perf_counter
        autocast = (lambda: th.autocast(self.dev.type, dtype=th.bfloat16)) if bf16 else None
        cuda = self.dev.type == "cuda"
        if cuda:
            th.cuda.empty_cache()
            th.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        rss_before = current_rss_bytes()
        if what == "train":
            diffusion = entry["diffusion"]
            model.train()
            if entry["opt"] is None:
                entry["opt"] = th.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
                entry["ema"] = [p.detach().clone() for p in model.parameters()]
            opt, ema = entry["opt"], entry["ema"]
            sampler = self.UniformSampler(diffusion)
            x = th.randn(batch, 3, size, size, device=self.dev)

            def step():
                opt.zero_grad()
                t, w = sampler.sample(x.shape[0], self.dev)
                if autocast:
                    with autocast():
                        losses = diffusion.training_losses(model, x, t)
                else:
                    losses = diffusion.training_losses(model, x, t)
                (losses["loss"] * w).mean().backward()
                opt.step()
                self.update_ema(ema, model.parameters(), rate=0.9999)

            for _ in range(int(r["warmup"])):
                step()
            self.sync()
            start = clock()
            for _ in range(int(r["steps"])):
                step()
            self.sync()
            images = int(r["steps"]) * batch
        else:
            model.eval()
            flags["timestep_respacing"] = (str(r["sample_steps"]) if what == "sample"
                                           else "ddim%d" % int(r["ddim_steps"]))
            _, sdiff = self.script_util.create_model_and_diffusion(**flags)
            shape = (batch, 3, size, size)
            loop = sdiff.p_sample_loop if what == "sample" else sdiff.ddim_sample_loop
            with th.no_grad():
                with autocast() if autocast else contextlib.nullcontext():
                    # One model call first: one-time set-up (kernels, primitives) is not timed.
                    model(th.randn(*shape, device=self.dev),
                          th.zeros(batch, dtype=th.long, device=self.dev))
                    self.sync()
                    start = clock()
                    loop(model, shape, clip_denoised=True, device=self.dev)
                    self.sync()
            images = batch
        secs = clock() - start
        peak = (th.cuda.max_memory_allocated() if cuda
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before)
        return dict(impl="reference", config=r["config"], what=what, batch=batch,
                    precision=r["precision"], use_checkpoint=bool(r["use_checkpoint"]),
                    images_per_sec=images / secs, seconds=secs, peak_bytes=peak,
                    threads=th.get_num_threads())


    def profile(self, req):
        from torch.profiler import profile, ProfilerActivity
        cuda = self.dev.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            out = self.measure(req)
        sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=int(req["profile"]))
        print(table, file=sys.stderr, flush=True)
        return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--serve", action="store_true")
    p.add_argument("--config", default=DEFAULTS["config"])
    p.add_argument("--what", default=DEFAULTS["what"])
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--warmup", type=int, default=DEFAULTS["warmup"])
    p.add_argument("--sample_steps", type=int, default=DEFAULTS["sample_steps"])
    p.add_argument("--ddim_steps", type=int, default=DEFAULTS["ddim_steps"])
    p.add_argument("--precision", default=DEFAULTS["precision"], choices=["fp32", "bf16"])
    p.add_argument("--use_checkpoint", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    ref = Reference(args.ref, args.threads, args.device)
    if args.serve:
        print(json.dumps(dict(ready=True, threads=ref.th.get_num_threads(),
                              torch=ref.th.__version__)), flush=True)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            req = json.loads(line)
            if req.get("quit"):
                break
            try:
                if req.get("profile"):
                    out = ref.profile(req)
                else:
                    out = ref.measure(req)
            except Exception as e:  # reported to idiff_bench, which prints it
                out = dict(error="%s: %s" % (type(e).__name__, e))
            print(json.dumps(out), flush=True)
        return
    for what in args.what.split(","):
        req = {k: getattr(args, k) for k in DEFAULTS if k != "what"}
        req["what"] = what
        print(json.dumps(ref.measure(req)), flush=True)


if __name__ == "__main__":
    main()
