"""Same stage-2 DSM step (AdamW) and annealed Langevin sampler as the Rust
LCD crate, in JAX (jax[cpu]); same shapes. Prints one JSON line.
Usage: python lcd_jax.py D H BATCH CHAINS REPS"""
import json, sys, time
import numpy as np
import jax, jax.numpy as jnp

d, h, batch, chains, reps = (list(map(int, sys.argv[1:6])) + [1000, 1024, 8192, 1000, 5][len(sys.argv[1:6]):])
L = 30
sig = jnp.exp(jnp.linspace(jnp.log(10.0), jnp.log(0.01), L))

def init(key):
    ks = jax.random.split(key, 8)
    lin = lambda k, i, o: (jax.random.normal(k, (i, o)) / np.sqrt(i), jnp.zeros((o,)))
    return dict(l0=lin(ks[0], d, h), l1=lin(ks[1], h, h), out=lin(ks[2], h, d), t0=lin(ks[3], h, h),
                t1=lin(ks[4], h, h), p0=lin(ks[5], h, h), p1=lin(ks[6], h, h), emb=jax.random.normal(ks[7], (100, h)) * 0.01)

half = h // 2
freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half) / half)
tab = jnp.concatenate([jnp.sin(jnp.arange(L)[:, None] * freqs), jnp.cos(jnp.arange(L)[:, None] * freqs)], 1)
dense = lambda p, x: x @ p[0] + p[1]

def drift(p, x, lv, s, e):
    temb = dense(p["t1"], jnp.tanh(dense(p["t0"], tab)))[lv]
    xh = x / jnp.sqrt(1 + s ** 2)
    h0 = jnp.tanh(dense(p["l0"], xh) + temb + dense(p["p0"], e))
    h1 = jnp.tanh(dense(p["l1"], h0) + dense(p["p1"], e))
    return (xh - s * dense(p["out"], h1) - x) / s ** 2

def loss(p, x, key):
    k1, k2 = jax.random.split(key)
    lv = jax.random.randint(k1, (x.shape[0],), 0, L)
    s = sig[lv][:, None]
    eps = jax.random.normal(k2, x.shape)
    e = jnp.zeros((1, 100)) @ p["emb"]
    f = drift(p, x + s * eps, lv, s, e)
    return 0.5 * jnp.mean(jnp.sum((s * f + eps) ** 2, 1))

def adamw(p, g, m, v, t, lr=1e-3, wd=0.3):
    m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
    v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
    p = jax.tree.map(lambda p, m, v: p - lr * ((m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t)) + 1e-8) + wd * p), p, m, v)
    return p, m, v

@jax.jit
def step(p, m, v, t, x, key):
    g = jax.grad(loss)(p, x, key)
    return adamw(p, g, m, v, t)

@jax.jit
def level(p, x, i, key):
    s = sig[i]; eps = 1e-6 * (s / 0.01) ** 2
    e = jnp.zeros((1, h))
    def body(k, x):
        return x + eps * drift(p, x, jnp.full((x.shape[0],), i), s, e) + jnp.sqrt(2 * eps) * jax.random.normal(jax.random.fold_in(key, k), x.shape)
    return jax.lax.fori_loop(0, reps, body, x)

key = jax.random.PRNGKey(0)
p = init(key); m = jax.tree.map(jnp.zeros_like, p); v = jax.tree.map(jnp.zeros_like, p)
x = jax.random.normal(key, (batch, d))
p, m, v = step(p, m, v, 1, x, key); jax.block_until_ready(p)
t0 = time.perf_counter()
for t in range(reps):
    p, m, v = step(p, m, v, t + 2, x, jax.random.fold_in(key, t))
jax.block_until_ready(p)
step_s = (time.perf_counter() - t0) / reps
xc = jax.random.normal(key, (chains, d))
jax.block_until_ready(level(p, xc, 0, key))
t0 = time.perf_counter()
for i in range(L):
    xc = level(p, xc, i, jax.random.fold_in(key, i))
jax.block_until_ready(xc)
cs = chains * reps * L / (time.perf_counter() - t0)
flops = 3 * 2 * batch * (2 * d * h + h * h)
print(json.dumps(dict(impl="jax", d=d, hidden=h, batch=batch, step_s=step_s, samples_per_s=batch / step_s, gflops=flops / step_s / 1e9, chain_steps_per_s=cs)))
