"""Times the Python reference (improved-diffusion) on the configurations of idiff's
benchmarks, so both run on the same LibTorch, device and thread count.

The reference's code is not part of idiff: pass the folder of a checkout with --ref.
Prints one JSON object per measurement on stdout (bench_idiff reads them).
"""
import argparse
import json
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
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--config", default="tiny")
    p.add_argument("--what", default="train,sample")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sample_steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    sys.path.insert(0, args.ref)
    import torch as th
    from improved_diffusion import script_util
    from improved_diffusion.nn import update_ema
    from improved_diffusion.resample import UniformSampler

    if args.threads:
        th.set_num_threads(args.threads)
    th.manual_seed(0)
    dev = th.device(args.device)
    flags = script_util.model_and_diffusion_defaults()
    flags.update(CONFIGS[args.config])
    model, diffusion = script_util.create_model_and_diffusion(**flags)
    model.to(dev)

    def sync():
        if dev.type == "cuda":
            th.cuda.synchronize()

    if "train" in args.what:
        model.train()
        opt = th.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
        ema = [p.detach().clone() for p in model.parameters()]
        sampler = UniformSampler(diffusion)
        x = th.randn(args.batch, 3, flags["image_size"], flags["image_size"], device=dev)

        def step():
            opt.zero_grad()
            t, w = sampler.sample(x.shape[0], dev)
            losses = diffusion.training_losses(model, x, t)
            (losses["loss"] * w).mean().backward()
            opt.step()
            update_ema(ema, model.parameters(), rate=0.9999)

        for _ in range(2):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        secs = time.perf_counter() - start
        print(json.dumps(dict(impl="reference", config=args.config, what="train", batch=args.batch,
                              images_per_sec=args.steps * args.batch / secs,
                              threads=th.get_num_threads())), flush=True)

    if "sample" in args.what:
        model.eval()
        flags["timestep_respacing"] = str(args.sample_steps)
        _, sdiff = script_util.create_model_and_diffusion(**flags)
        shape = (args.batch, 3, flags["image_size"], flags["image_size"])
        with th.no_grad():
            sync()
            start = time.perf_counter()
            sdiff.p_sample_loop(model, shape, clip_denoised=True, device=dev)
            sync()
            secs = time.perf_counter() - start
        print(json.dumps(dict(impl="reference", config=args.config, what="sample", batch=args.batch,
                              images_per_sec=args.batch / secs, threads=th.get_num_threads())),
              flush=True)


if __name__ == "__main__":
    main()
