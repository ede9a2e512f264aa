#!/usr/bin/env python3
"""Writes tests/data/data_resize_pil.safetensors: input images and what the reference's
ImageDataset.__getitem__ (improved_diffusion/image_datasets.py) makes of them with Pillow.

Run with any Python that has Pillow and numpy (neither is needed by the test suite, which
only reads the committed file):

    python3 tests/py/make_data_resize_fixture.py tests/data/data_resize_pil.safetensors

Each case i stores `case{i}.input` (uint8 [H, W, C], C = 1 L, 2 LA, 3 RGB, 4 RGBA),
`case{i}.resolution` (int64 [1]) and `case{i}.output` (uint8 [3, R, R]: the reference's
array before its final `/ 127.5 - 1`, which the test applies in float32 as it does). The pipeline below is the reference's, verbatim
apart from taking the PIL image from an array instead of a file.
"""
import json
import struct
import sys

import numpy as np
from PIL import Image

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def reference_pipeline(pil_image, resolution):
    while min(*pil_image.size) >= 2 * resolution:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = resolution / min(*pil_image.size)
    pil_image = pil_image.resize(
        tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC
    )
    arr = np.array(pil_image.convert("RGB"))
    crop_y = (arr.shape[0] - resolution) // 2
    crop_x = (arr.shape[1] - resolution) // 2
    arr = arr[crop_y : crop_y + resolution, crop_x : crop_x + resolution]
    return np.transpose(arr, [2, 0, 1])  # the reference then does .astype(np.float32) / 127.5 - 1


def make_image(rng, h, w, c):
    # A smooth pattern plus noise, so bicubic overshoots and clipping occur.
    y, x = np.mgrid[0:h, 0:w]
    base = 127.5 + 100 * np.sin(x / 3.0 + y / 5.0)
    img = np.stack([base + 60 * rng.standard_normal((h, w)) for _ in range(c)], axis=-1)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if c in (2, 4):  # alpha with fully transparent, opaque and partial pixels
        alpha = rng.integers(0, 256, size=(h, w))
        alpha[::5, :] = 0
        alpha[1::5, :] = 255
        img[..., -1] = alpha
    return img


# (height, width, channels, resolution): what each exercises
CASES = [
    (70, 100, 3, 32),  # one box halving, then bicubic down to 32 x 46
    (45, 37, 3, 16),   # odd sizes: box halving 37x45 -> 18x22 has fractional boxes
    (23, 29, 1, 32),   # grey, bicubic upsampling
    (80, 64, 4, 16),   # RGBA: two halvings (premultiplied alpha), then same size (a copy)
    (50, 30, 2, 20),   # grey + alpha, bicubic up without halving
    (32, 32, 3, 32),   # already the target size: identity
    (45, 100, 3, 20),  # halving then bicubic downsampling (support widened by the scale)
    (4, 7, 3, 6),      # round(7 * 1.5) = round(10.5) = 10: Python rounds half to even
    (67, 131, 3, 8),   # three halvings, then a copy
    (33, 64, 3, 16),   # halving with an odd short side
]


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    dtypes = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    import PIL
    header["__metadata__"] = {"generator": "tests/py/make_data_resize_fixture.py",
                              "pillow": PIL.__version__}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    import PIL
    rng = np.random.default_rng(1234)
    tensors = []
    for i, (h, w, c, res) in enumerate(CASES):
        img = make_image(rng, h, w, c)
        pil = Image.fromarray(img[..., 0] if c == 1 else img, MODES[c])
        out = reference_pipeline(pil, res)
        assert out.shape == (3, res, res), (i, out.shape)
        tensors += [(f"case{i}.input", img), (f"case{i}.resolution", np.array([res], np.int64)),
                    (f"case{i}.output", out.astype(np.uint8))]
    write_safetensors(sys.argv[1], tensors)
    print(f"wrote {len(CASES)} cases with Pillow {PIL.__version__} to {sys.argv[1]}")


if __name__ == "__main__":
    main()
