import numpy as np
M = ['cpu_percent','memory_percent','disk_percent','load_average']
def load(n): return np.load(f'/tmp/w/risk_{n}.npz')
def pav(x, y, w=None):
    o = np.argsort(x, kind='stable'); x, y = x[o], y[o].astype(float)
    w = np.ones_like(y) if w is None else w[o]
    # blocks
    vals, wts, xs_lo, xs_hi = [], [], [], []
    for xi, yi, wi in zip(x, y, w):
        vals.append(yi); wts.append(wi); xs_lo.append(xi); xs_hi.append(xi)
        while len(vals) > 1 and vals[-2] >= vals[-1]:
            v = (vals[-2]*wts[-2] + vals[-1]*wts[-1]) / (wts[-2]+wts[-1])
            wt = wts[-2]+wts[-1]; lo = xs_lo[-2]; hi = xs_hi[-1]
            for L in (vals, wts, xs_lo, xs_hi): L.pop()
            vals[-1] = v; wts[-1] = wt; xs_lo[-1] = lo; xs_hi[-1] = hi
    return np.array(xs_lo), np.array(xs_hi), np.array(vals), np.array(wts)
def apply(m, p):
    lo, hi, v, _ = m
    # step function: value of the block containing p; between blocks interpolate
    xs = np.concatenate([[0.0], (lo+hi)/2, [1.0]]); ys = np.concatenate([[v[0]], v, [v[-1]]])
    return np.interp(p, xs, ys)
def brier(p, e): return np.mean((p-e)**2)
import sys
fit_on = sys.argv[1].split(',')
test_on = sys.argv[2].split(',')
for m in M:
    x = np.concatenate([load(n)[m+'_p8'] for n in fit_on]); y = np.concatenate([load(n)[m+'_e8'] for n in fit_on])
    model = pav(x, y)
    print(m, 'fit on', fit_on, len(x), int(y.sum()), 'blocks', len(model[2]), 'levels', np.round(model[2],3)[:12])
    for n in test_on:
        d = load(n); p, e = d[m+'_p8'], d[m+'_e8'].astype(float)
        q = apply(model, p)
        print(f'   {n:5s} n={len(p):5d} ev={int(e.sum()):4d} brier raw {brier(p,e):.4f} cal {brier(q,e):.4f} base {brier(np.full_like(e,e.mean()),e):.4f}  mean pred raw {p.mean():.3f} cal {q.mean():.3f} obs {e.mean():.3f}')
def auc(p, e):
    from scipy.stats import rankdata
    r = rankdata(p); n1 = e.sum(); n0 = len(e)-n1
    return (r[e>0].sum() - n1*(n1+1)/2) / (n1*n0) if n1 and n0 else float('nan')
print('AUC (ranking skill, 0.5 = none)')
for n in test_on:
    d = load(n)
    print(n, ' '.join(f"{m[:4]} {auc(d[m+'_p8'], d[m+'_e8'].astype(float)):.3f}" for m in M))
