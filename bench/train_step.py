"""PyTorch eager baseline of one FNC training step: torchvision ResNet + the same
projection head + the FNC loss (attraction, max, top-k 10, threshold 0.7) + SGD with
momentum, on random uint8 views. Prints JSON with the mean step time.

Usage: train_step.py [--arch resnet50] [--batch-size 2] [--support 8]
       [--image-size 224] [--support-size 224] [--warmup 1] [--timed 3] [--device cpu]
       [--precision auto|fp32|bf16] [--memory-format channels-last|contiguous]

Precision and layout mirror fnc-train's options: auto = bf16 autocast on CUDA, fp32
on the CPU; channels-last by default.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torchvision

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="resnet50")
ap.add_argument("--batch-size", type=int, default=2)
ap.add_argument("--support", type=int, default=8)
ap.add_argument("--image-size", type=int, default=224)
ap.add_argument("--support-size", type=int, default=224)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--timed", type=int, default=3)
ap.add_argument("--device", default="cpu")
ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
ap.add_argument("--memory-format", default="channels-last", choices=["channels-last", "contiguous"])
args = ap.parse_args()
dev = torch.device(args.device)
torch.manual_seed(0)

enc = getattr(torchvision.models, args.arch)()
d = enc.fc.in_features
enc.fc = nn.Identity()
head = nn.Sequential(
    nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(),
    nn.Linear(d, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(),
    nn.Linear(d, 128, bias=False), nn.BatchNorm1d(128))
model = nn.Sequential(enc, head).to(dev)
channels_last = args.memory_format == "channels-last"
if channels_last:
    model = model.to(memory_format=torch.channels_last)
bf16 = args.precision == "bf16" or (args.precision == "auto" and dev.type == "cuda")
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)


def norm(x):
    # The permuted NHWC batch already has channels-last strides.
    x = (x.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    return x if channels_last else x.contiguous()


def fnc_loss(z, V, tau=0.1, k=10, thr=0.7):
    z = nn.functional.normalize(z, dim=1)
    n = z.shape[0]
    B = n // V
    with torch.no_grad():
        cos = z @ z.T
        score = cos.view(V, B, n).amax(0)
        col = torch.arange(n, device=z.device) % B
        same = torch.arange(B, device=z.device)[:, None] == col[None, :]
        score = score.masked_fill(same, float("-inf"))
        top = torch.zeros_like(same).scatter_(1, score.topk(min(k, n - V), 1).indices, True)
        f = top & (score > thr) & ~same
    sim = z @ z.T / tau
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    fr = f[col]
    pos = (col[:, None] == col[None, :]) & ~eye
    logd = sim.masked_fill(eye, float("-inf")).logsumexp(1, keepdim=True)
    t = (pos | fr).float()
    return 2 * (-((sim - logd) * t).sum(1) / t.sum(1)).mean()


B, S = args.batch_size, args.support
main = torch.randint(0, 256, (2 * B, args.image_size, args.image_size, 3), dtype=torch.uint8, device=dev)
sup = torch.randint(0, 256, (S * B, args.support_size, args.support_size, 3), dtype=torch.uint8, device=dev) if S else None
def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


phases = {"forward_s": 0.0, "backward_s": 0.0, "optimizer_s": 0.0}
timed = 0.0
for step in range(args.warmup + args.timed):
    sync()
    t0 = time.perf_counter()
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        z = model(norm(main))
        if sup is not None:
            z = torch.cat([z, model(norm(sup))])
    loss = fnc_loss(z.float(), 2 + S)
    sync()
    t1 = time.perf_counter()
    loss.backward()
    sync()
    t2 = time.perf_counter()
    opt.step()
    opt.zero_grad()
    loss.item()
    t3 = time.perf_counter()
    if step >= args.warmup:
        timed += t3 - t0
        phases["forward_s"] += t1 - t0
        phases["backward_s"] += t2 - t1
        phases["optimizer_s"] += t3 - t2
out = {"precision": "bf16" if bf16 else "fp32", "memory_format": args.memory_format,
       "step_s": timed / args.timed, "images_per_s": B / (timed / args.timed), "device": str(dev),
       "arch": args.arch, "batch_size": B, "views": 2 + S, "torch_threads": torch.get_num_threads()}
out.update({k: v / args.timed for k, v in phases.items()})
print(json.dumps(out))
