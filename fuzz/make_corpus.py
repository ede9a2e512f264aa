"""Writes the fuzzer's seed corpus (fuzz/corpus): small files of every format idiff reads,
each a few KB so the fuzzer mutates them quickly. Re-run to regenerate:
    python fuzz/make_corpus.py fuzz/corpus
The files are committed; the test suite only reads them."""
import collections
import io
import json
import os
import struct
import sys
import zipfile

import numpy as np
import torch


def main(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 2, generator=g)
    flat = torch.arange(6, dtype=torch.float32)
    sd = collections.OrderedDict(
        w=base.half(), v=base.t(), a=flat[:4], b=flat[2:], bf=torch.ones(2, dtype=torch.bfloat16),
        i=torch.tensor([1, -2]), u=torch.tensor([1, 2], dtype=torch.uint8), s=torch.tensor(1.5))
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    torch.save(sd, f"{out}/state_dict.pt")
    torch.save(sd, f"{out}/protocol4.pt", pickle_protocol=4)
    torch.save({"p": torch.nn.Parameter(torch.ones(2))}, f"{out}/parameter.pt")

    params = [torch.nn.Parameter(torch.randn(2, generator=g))]
    opt = torch.optim.AdamW(params, lr=1e-4)
    params[0].sum().backward()
    opt.step()
    torch.save(opt.state_dict(), f"{out}/optimizer.pt")

    # The bare pickles of those files: mutations of these reach the pickle machine directly.
    for name in ("state_dict", "protocol4", "optimizer"):
        with zipfile.ZipFile(f"{out}/{name}.pt") as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            with open(f"{out}/{name}.pkl", "wb") as f:
                f.write(z.read(pkl))

    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
              "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(f"{out}/tensors.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(range(16)))

    np.savez(f"{out}/samples.npz", arr_0=np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3),
             arr_1=np.array([3], dtype=np.int64))
    np.save(f"{out}/array.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    # Expanding views (stride 0): a few hundred bytes declaring 2^28 and 2^40 elements over
    # a one-element storage; the readers must refuse them before allocating anything.
    torch.save({"w": torch.zeros(1).expand(2 ** 28)}, f"{out}/expand_2e28.pt")
    torch.save({"w": torch.zeros(1).expand(2 ** 20, 2 ** 20)}, f"{out}/expand_2e40.pt")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
