"""pytorch-fid's side of the evaluation tests (test_eval.cpp), with seeded random weights
(nothing downloaded). Writes into OUT:
  inception.pth     state dict of pytorch-fid's FID Inception structure (torch.save zip)
  inception_legacy.pth   the same in torch.save's pre-1.6 (non-zip) format
  a.npz, b.npz      two small sets of uint8 NHWC images (arr_0); a_compressed.npz is a
                    again through np.savez_compressed; a_png/ holds a's images as PNGs
  expected.npz      pytorch-fid's pool features of a and b and the Inception3 logits (its
                    fc on those features)
The batch-norm running statistics are fitted on calibration images (a random network's
features are otherwise nearly constant); the script checks that features of different
images differ before writing anything.

pytorch-fid's FID of a and b takes scipy's sqrtm of a 2048x2048 singular product, minutes
on two cores, so it is computed once and committed with the features it came from
(tests/data/fid_parity_pytorch_fid.npz, written by --write-fixture, which also holds two
Gaussian feature sets and pytorch-fid's FID of them). Each test run checks
that this run's features equal the committed ones to float32 rounding (same seeded
weights and images), so the committed FID is pytorch-fid's FID of these features.
Usage: fid_parity.py OUT FIXTURE | fid_parity.py OUT --write-fixture FIXTURE"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import pytorch_fid.inception as pi
from pytorch_fid.fid_score import calculate_frechet_distance


def fid_structure():
    """pytorch-fid's fid_inception_v3() without its weight download."""
    inc = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inc.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
    inc.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
    inc.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
    inc.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
    inc.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
    inc.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
    inc.Mixed_7b = pi.FIDInceptionE_1(1280)
    inc.Mixed_7c = pi.FIDInceptionE_2(2048)
    return inc


def images(rng, n, size, kind):
    """Smooth coloured patterns plus noise; kind 0 and 1 differ in their statistics."""
    y, x = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(1, 4, size=3)
        ph = rng.uniform(0, 6.3, size=3)
        chans = [np.sin(2 * np.pi * f[c] * (x if kind == 0 else y) + ph[c]) for c in range(3)]
        img = 0.5 + 0.35 * np.stack(chans, -1) + rng.normal(0, 0.1 + 0.1 * kind, (size, size, 3))
        out.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.stack(out)


def gaussian_sets():
    """Two correlated Gaussian feature sets (12 dimensions) and pytorch-fid's FID of them."""
    rng = np.random.default_rng(1)
    g1 = rng.normal(0, 1, (400, 12)) @ rng.normal(0, 1, (12, 12))
    g2 = rng.normal(0.5, 1, (300, 12)) @ rng.normal(0, 1, (12, 12))
    fid_g = calculate_frechet_distance(g1.mean(0), np.cov(g1, rowvar=False), g2.mean(0),
                                       np.cov(g2, rowvar=False))
    return g1, g2, fid_g


def to01(arr):
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def main(out, fixture, write_fixture):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    inc = fid_structure()
    with torch.no_grad():
        for m in inc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
                m.momentum = None  # cumulative: running stats = calibration batch stats
                m.reset_running_stats()
        inc.train()
        calib = 2 * F.interpolate(to01(images(rng, 6, 48, 0)), size=(299, 299), mode="bilinear",
                                  align_corners=False) - 1
        inc(calib)
    inc.eval()
    sd = inc.state_dict()
    torch.save(sd, os.path.join(out, "inception.pth"))
    # The same weights in torch.save's pre-1.6 (non-zip) format.
    torch.save(sd, os.path.join(out, "inception_legacy.pth"), _use_new_zipfile_serialization=False)

    # pytorch-fid's own wrapper, loading the random state dict in place of the download.
    pi.load_state_dict_from_url = lambda *args, **kwargs: sd
    model = pi.InceptionV3([pi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    a = images(rng, 5, 32, 0)
    b = images(rng, 5, 40, 1)
    np.savez(os.path.join(out, "a.npz"), arr_0=a)
    np.savez(os.path.join(out, "b.npz"), arr_0=b)
    np.savez_compressed(os.path.join(out, "a_compressed.npz"), arr_0=a)
    os.makedirs(os.path.join(out, "a_png"))
    for i, img in enumerate(a):
        Image.fromarray(img).save(os.path.join(out, "a_png", f"{i:03d}.png"))

    with torch.no_grad():
        pool = {k: model(to01(v))[0].squeeze(-1).squeeze(-1) for k, v in (("a", a), ("b", b))}
        # Inception3's head after its average pool: dropout (identity in eval), fc.
        logits = {k: inc.fc(p).double().numpy() for k, p in pool.items()}
        feat = {k: p.double().numpy() for k, p in pool.items()}
    # Outputs must depend on the inputs, or the comparison proves nothing.
    for k, f in feat.items():
        spread = np.abs(f - f.mean(0)).max() / (np.abs(f).max() + 1e-12)
        assert spread > 1e-2, f"features of set {k} barely vary ({spread})"

    if write_fixture:
        stats = {k: (f.mean(0), np.cov(f, rowvar=False)) for k, f in feat.items()}
        fid_ab = calculate_frechet_distance(*stats["a"], *stats["b"])
        g1, g2, fid_g = gaussian_sets()
        np.savez(fixture, feat_a=feat["a"], feat_b=feat["b"], fid_ab=np.array([fid_ab]), g1=g1,
                 g2=g2, fid_g=np.array([fid_g]))
    committed = np.load(fixture)
    for k in ("a", "b"):
        # Same weights and images give the same features up to float32 rounding, which
        # varies with the thread count and the CPU's kernels (about 1e-5 here); different
        # weights or images would differ completely.
        want = committed["feat_" + k]
        err = np.linalg.norm(feat[k] - want) / np.linalg.norm(want)
        assert err < 1e-3, (
            f"set {k}: this run's features differ from {fixture}'s (relative error {err:.2e}); "
            "regenerate it with --write-fixture (slow) after a torch/torchvision/pytorch-fid "
            "upgrade")

    np.savez(os.path.join(out, "expected.npz"), feat_a=feat["a"], feat_b=feat["b"],
             logits_a=logits["a"], logits_b=logits["b"])
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--write-fixture":
        main(sys.argv[1], sys.argv[3], True)
    else:
        main(sys.argv[1], sys.argv[2], False)
