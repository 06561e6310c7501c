"""REFERENCE ONLY — PyTorch timing of the step that ``cpu_resnet_step.py`` times in JAX.

Not part of ``glf_jax`` and never imported by it; needs ``torch`` in a separate environment:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0
    /tmp/torchvenv/bin/python benchmarks/reference_torch_step.py --steps 5 --json out.json

Same network and loss as the JAX benchmark: ResNet-18 v1.5 with the CIFAR stem (3×3/1 conv, no
max-pool; BasicBlocks, 1×1 projection shortcuts with BN), global average pool, SimCLR projector
512 → 2048 (BN, ReLU) → 128, NT-Xent (cosine, τ = 0.5) over the two views of ``--batch`` images
pushed through the network as one batch of ``2 × batch`` 32×32×3 images, SGD(lr 0.1,
momentum 0.9). Plain eager PyTorch in channels-first (NCHW) layout, whose CPU convolutions run on
oneDNN (mkldnn); ``--channels-last`` and ``--compile`` (torch.compile) are options.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

# The sibling JAX benchmark's helper (its module level imports only the standard library).
from cpu_resnet_step import cpu_steal_seconds


class BasicBlock(nn.Module):

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet18Cifar(nn.Module):

  def __init__(self, width=64):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                              nn.ReLU())
    layers, cin = [], width
    for i in range(4):
      cout = width * 2**i
      for j in range(2):
        layers.append(BasicBlock(cin, cout, 2 if i > 0 and j == 0 else 1))
        cin = cout
    self.layers = nn.Sequential(*layers)
    self.feature_dim = cin

  def forward(self, x):
    return self.layers(self.stem(x)).mean(dim=(2, 3))


class SimCLR(nn.Module):

  def __init__(self):
    super().__init__()
    self.backbone = ResNet18Cifar()
    self.projector = nn.Sequential(nn.Linear(512, 2048, bias=False), nn.BatchNorm1d(2048),
                                   nn.ReLU(), nn.Linear(2048, 128))

  def forward(self, x):
    return self.projector(self.backbone(x))


def nt_xent(z1, z2, temperature=0.5):
  z = F.normalize(torch.cat([z1, z2]), dim=1)
  m = z.shape[0]
  n = m // 2
  logits = z @ z.T / temperature
  logits = logits.masked_fill(torch.eye(m, dtype=torch.bool), float('-inf'))
  pos = torch.cat([torch.arange(n, m), torch.arange(0, n)])
  return F.cross_entropy(logits, pos)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--warmup', type=int, default=2)
  p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: default)')
  p.add_argument('--channels-last', action='store_true')
  p.add_argument('--compile', action='store_true', help='torch.compile the model')
  p.add_argument('--json', default=None)
  args = p.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = SimCLR()
  model.train()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  n = args.batch
  views = torch.randn(2 * n, 3, 32, 32)
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
    views = views.contiguous(memory_format=torch.channels_last)
  fwd = torch.compile(model) if args.compile else model

  def step():
    opt.zero_grad(set_to_none=True)
    z = fwd(views)
    loss = nt_xent(z[:n], z[n:])
    loss.backward()
    opt.step()
    return loss.item()

  t0 = time.perf_counter()
  step()
  steal0, loop0 = cpu_steal_seconds(), time.perf_counter()
  first_s = time.perf_counter() - t0
  times = []
  for i in range(args.warmup - 1 + args.steps):
    t = time.perf_counter()
    step()
    if i >= args.warmup - 1:
      times.append(time.perf_counter() - t)
  steal1, loop1 = cpu_steal_seconds(), time.perf_counter()
  steal_frac = (None if steal0 is None else
                round((steal1 - steal0) / ((loop1 - loop0) * (os.cpu_count() or 1)), 3))
  ms = statistics.median(times) * 1e3
  result = {
      'framework': f'torch {torch.__version__}',
      'threads': torch.get_num_threads(),
      'mkldnn': torch.backends.mkldnn.is_available(),
      'channels_last': args.channels_last,
      'compile': args.compile,
      'batch': n,
      'first_step_s': round(first_s, 2),
      'ms_per_step': round(ms, 1),
      'ms_per_step_all': [round(t * 1e3, 1) for t in times],
      'images_per_s': round(n / (ms / 1e3), 2),
      'view_images_per_s': round(2 * n / (ms / 1e3), 2),
      'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'loadavg_1min_at_end': round(os.getloadavg()[0], 2),
      'cpu_steal_fraction': steal_frac,
  }
  print(json.dumps(result))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
