"""Writes .pt files with torch.save for idiff to read, and their expected contents as
safetensors. Usage: write_pt_fixtures.py OUTDIR

  mixed.pt      OrderedDict: every dtype, a 0-d and an empty tensor, a transposed view,
                two views sharing a storage, an nn.Parameter
  module.pt     a real module's state_dict() (carries the _metadata attribute)
  proto4.pt     mixed.pt's dict saved with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL)
  opt.pt        an AdamW optimizer's state_dict() after one step
  legacy.pt     mixed.pt's dict in the old non-zip format (_use_new_zipfile_serialization=False)
  legacy_huge.pt  a legacy-format file whose storage claims 2**40 floats
  evil.pt       a zip .pt whose pickle calls os.system
and expected_mixed/module/opt.safetensors."""
import collections
import io
import os
import pickle
import struct
import sys

import torch

from tensorfiles import write_safetensors


class HugeStorage(pickle.Pickler):
    """Pickles a tensor whose legacy persistent id declares 2**40 floats."""

    def persistent_id(self, obj):
        if isinstance(obj, torch.UntypedStorage):
            return ("storage", torch.FloatStorage, "0", "cpu", 2**40, None)
        return None


def write_huge_legacy(path):
    """A legacy-format file whose one storage claims 4 TiB: a reader must refuse it before
    allocating."""
    def dump(obj, pickler=pickle.Pickler):
        buf = io.BytesIO()
        pickler(buf, protocol=2).dump(obj)
        return buf.getvalue()
    t = torch.zeros(2)
    rebuild = (torch._utils._rebuild_tensor_v2, (t.untyped_storage(), 0, (2,), (1,), False,
                                                  collections.OrderedDict()))

    class Rebuilt:
        def __reduce__(self):
            return rebuild
    with open(path, "wb") as f:
        f.write(dump(0x1950a86a20f9469cfc6c) + dump(1001) + dump({"little_endian": True}))
        f.write(dump(collections.OrderedDict(x=Rebuilt()), HugeStorage) + dump(["0"]))
        f.write(struct.pack("<q", 2) + bytes(8))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo idiff must never run this",))


def main(out):
    g = torch.Generator().manual_seed(0)
    mixed = collections.OrderedDict()
    base = torch.randn(4, 3, generator=g)
    mixed["f32"] = base.clone()
    mixed["f64"] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    mixed["f16"] = torch.randn(5, generator=g).half()
    mixed["bf16"] = torch.randn(2, 2, 2, generator=g).bfloat16()
    mixed["i64"] = torch.tensor([-(2**40), -1, 0, 2**40])
    mixed["i32"] = torch.tensor([-7, 0, 7], dtype=torch.int32)
    mixed["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    mixed["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    mixed["u8"] = torch.arange(0, 256, 17, dtype=torch.uint8)
    mixed["bool"] = torch.tensor([True, False, True])
    mixed["scalar"] = torch.tensor(3.5)
    mixed["empty"] = torch.zeros(0, 3)
    mixed["view_t"] = base.t()  # [3, 4], strides (1, 3), shares base's storage
    flat = torch.arange(12, dtype=torch.float32)
    mixed["shared_a"] = flat[:6].view(2, 3)
    mixed["shared_b"] = flat[4:10]  # offset 4, overlaps shared_a
    mixed["param"] = torch.nn.Parameter(torch.ones(2))
    torch.save(mixed, f"{out}/mixed.pt")
    torch.save(mixed, f"{out}/proto4.pt", pickle_protocol=4)
    write_safetensors(f"{out}/expected_mixed.safetensors", collections.OrderedDict(
        (k, v.detach().clone()) for k, v in mixed.items()))

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    sd = module.state_dict()
    assert hasattr(sd, "_metadata")
    torch.save(sd, f"{out}/module.pt")
    write_safetensors(f"{out}/expected_module.safetensors", sd)

    params = [torch.nn.Parameter(torch.randn(3, 2, generator=g)), torch.nn.Parameter(torch.randn(4, generator=g))]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sum((p ** 2).sum() for p in params).backward()
    opt.step()
    torch.save(opt.state_dict(), f"{out}/opt.pt")
    state = opt.state_dict()["state"]
    write_safetensors(f"{out}/expected_opt.safetensors", collections.OrderedDict(
        (f"{i}.{k}", state[i][k]) for i in state for k in ("step", "exp_avg", "exp_avg_sq")))

    torch.save(mixed, f"{out}/legacy.pt", _use_new_zipfile_serialization=False)
    write_huge_legacy(f"{out}/legacy_huge.pt")
    torch.save({"x": Evil()}, f"{out}/evil.pt")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1])
