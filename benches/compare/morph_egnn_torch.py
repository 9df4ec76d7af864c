"""Morph EGNN training step in PyTorch (CPU): the same model as
morph/examples/egnn_step_bench.rs (morph/src/egnn.rs layer equations: pre-norm
EGNN layers on the real atom pairs, EDM-style normalised coordinate updates
with tanh range, layer-normed output; input embedding, type head, position
loss), on the batch that program dumped. Forward + backward + AdamW step.

    python morph_egnn_torch.py BATCH.json REPS THREADS

Prints one JSON line: median ms/step and molecules/s.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, hid, n_edge, coords_range, agg_norm):
        super().__init__()
        self.norm = nn.LayerNorm(hid, eps=1e-5)
        self.src = nn.Linear(hid, hid)
        self.dst = nn.Linear(hid, hid, bias=False)
        self.dist = nn.Linear(1, hid, bias=False)
        self.edge = nn.Linear(n_edge, hid, bias=False)
        self.msg = nn.Linear(hid, hid)
        self.att = nn.Linear(hid, 1)
        self.node1 = nn.Linear(2 * hid, hid)
        self.node2 = nn.Linear(hid, hid)
        self.coord1 = nn.Linear(hid, hid)
        self.coord2 = nn.Linear(hid, 1, bias=False)
        self.coords_range = coords_range
        self.agg_norm = agg_norm

    def forward(self, h, x, ep, mask, mk, src, dst):
        bn, hid = h.shape
        hn = self.norm(h) * mk
        xf = x.reshape(bn, 3)
        diff = xf.index_select(0, src) - xf.index_select(0, dst)
        d2 = (diff * diff).sum(1, keepdim=True)
        df = torch.log(d2 + 1.0)
        pre = (self.edge(ep) + self.dist(df)
               + self.src(hn).index_select(0, src) + self.dst(hn).index_select(0, dst))
        m = F.silu(self.msg(F.silu(pre)))
        gate = torch.sigmoid(self.att(m))
        agg = torch.zeros(bn, hid).index_add(0, src, m * gate) / self.agg_norm
        phi = torch.tanh(self.coord2(F.silu(self.coord1(m)))) * self.coords_range
        w = phi / (torch.sqrt(d2 + 1e-8) + 1.0)
        dx = torch.zeros(bn, 3).index_add(0, src, diff * w) / self.agg_norm
        dh = self.node2(F.silu(self.node1(torch.cat([hn, agg], 1))))
        h = (h + dh) * mk
        return h, centre((xf + dx).reshape(x.shape), mask)


def centre(x, mask):
    m = mask.unsqueeze(2)
    mu = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)
    return (x - mu) * m


class Net(nn.Module):
    def __init__(self, n_types, n_bonds, hid, layers, coords_range, agg_norm):
        super().__init__()
        self.embed = nn.Linear(n_types, hid)
        self.layers = nn.ModuleList(
            Layer(hid, n_bonds, coords_range / layers, agg_norm) for _ in range(layers))
        self.out_norm = nn.LayerNorm(hid, eps=1e-5)
        self.head = nn.Linear(hid, n_types)
        self.n_types, self.n_bonds = n_types, n_bonds

    def forward(self, x, types, e, mask, pair, src, dst):
        b, n, _ = x.shape
        hid = self.embed.out_features
        mk = mask.reshape(b * n, 1)
        oh_a = F.one_hot(types, self.n_types).float()
        ep = F.one_hot(e.reshape(-1).index_select(0, pair), self.n_bonds).float()
        h = (self.embed(oh_a) * mask.unsqueeze(2)).reshape(b * n, hid)
        x = centre(x, mask)
        for layer in self.layers:
            h, x = layer(h, x, ep, mask, mk, src, dst)
        h = (self.out_norm(h) * mk).reshape(b, n, hid)
        return h, x


def main():
    path, reps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    d = json.load(open(path))
    b, n = d["b"], d["n"]
    x = torch.tensor(d["x"], dtype=torch.float32).reshape(b, n, 3)
    x1 = torch.tensor(d["x1"], dtype=torch.float32).reshape(b, n, 3)
    types = torch.tensor(d["types"], dtype=torch.long).reshape(b, n)
    e = torch.tensor(d["e"], dtype=torch.long).reshape(b, n, n)
    mask = torch.tensor(d["mask"], dtype=torch.float32).reshape(b, n)
    src, dst, pair = [], [], []
    for k in range(b):
        real = [i for i in range(n) if d["mask"][k * n + i] > 0.5]
        for i in real:
            for j in real:
                if i != j:
                    src.append(k * n + i)
                    dst.append(k * n + j)
                    pair.append((k * n + i) * n + j)
    src, dst, pair = (torch.tensor(v, dtype=torch.long) for v in (src, dst, pair))
    net = Net(d["n_types"], d["n_bonds"], d["hidden"], d["layers"], d["coords_range"],
              d["agg_norm"])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)
    cnt = mask.sum()
    times = []
    loss = None
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        h, xo = net(x, types, e, mask, pair, src, dst)
        l_pos = (((xo - x1) ** 2).sum(2) * mask).sum() / cnt
        lp = F.log_softmax(net.head(h), 2)
        l_ty = -(lp.gather(2, types.unsqueeze(2)).squeeze(2) * mask).sum() / cnt
        loss = l_pos + l_ty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if rep > 0:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({
        "impl": "torch", "batch": b, "n_pad": n, "hidden": d["hidden"], "layers": d["layers"],
        "threads": threads, "ms_step": med * 1e3, "mol_per_s": b / med,
        "times_ms": [t * 1e3 for t in times], "loss": float(loss.detach()), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
