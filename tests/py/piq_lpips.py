"""piq's LPIPS as consistency_models builds it (LPIPS(replace_pooling=True, reduction="none"))
on seeded random weights, for tests/test_lpips.cpp: writes the weights as a user would bring
them (torchvision's VGG16 features as a state dict .pth, LPIPS' five layer weights as a list
.pt like piq's lpips_weights.pt), the inputs, and piq's distances and gradients.

Nothing is downloaded: piq's two downloads (torchvision's pretrained VGG16 and its LPIPS
weights) are replaced by the random ones. VGG16: torchvision's own initialisation, seed 0;
layer weights uniform in [0, 1), seed 1.

Cases: x, y [2, 3, 64, 64] in [0, 1], the second pair close (LPIPS itself, and d LPIPS / dx); a, b [1, 3, 16, 16]
in [-1, 1] through consistency_models' loss_norm "lpips" (bilinear resize to 224, then
LPIPS of (a + 1) / 2 and (b + 1) / 2).

usage: piq_lpips.py OUT_DIR
"""
import os
import sys

import piq.perceptual as perceptual
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file


def main(out):
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None)
    torch.manual_seed(1)
    channels = [64, 128, 256, 512, 512]
    layer_weights = [torch.rand(1, c, 1, 1) for c in channels]
    torch.save({k: v for k, v in vgg.state_dict().items() if k.startswith("features.")},
               os.path.join(out, "vgg16.pth"))
    torch.save(layer_weights, os.path.join(out, "lpips_weights.pt"))

    perceptual.vgg16 = lambda pretrained=True, progress=False: vgg
    torch.hub.load_state_dict_from_url = lambda *args, **kwargs: layer_weights
    lpips = perceptual.LPIPS(replace_pooling=True, reduction="none")

    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 64, 64, generator=g).requires_grad_(True)
    y = torch.rand(2, 3, 64, 64, generator=g)
    # The second pair close (x plus a little noise): its distance must come out smaller.
    y[1] = (x[1].detach() + 0.05 * torch.randn(3, 64, 64, generator=g)).clamp(0, 1)
    d = lpips(x, y)
    d.sum().backward()
    a = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    b = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    up = lambda t: F.interpolate(t, size=224, mode="bilinear")
    with torch.no_grad():
        loss = lpips((up(a) + 1) / 2.0, (up(b) + 1) / 2.0)
    save_file({"x": x.detach(), "y": y, "lpips": d.detach(), "grad_x": x.grad, "a": a, "b": b,
               "loss": loss}, os.path.join(out, "lpips.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
