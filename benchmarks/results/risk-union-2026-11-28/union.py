import sys, numpy as np
from scipy.special import ndtr, log_ndtr
from scipy.stats import rankdata
M = ['cpu_percent','memory_percent','disk_percent','load_average']
def auc(p,e):
    n1=e.sum(); n0=len(e)-n1
    if not n1 or not n0: return float('nan')
    r=rankdata(p); return (r[e].sum()-n1*(n1+1)/2)/(n1*n0)
def preds(z, steps, k):
    z = z[:, :steps].astype(np.float64)
    if k is None:  # max
        return ndtr(-z.min(axis=1))
    # union with effective block length k: 1 - prod (1-P_t)^(1/k)
    lq = log_ndtr(z)  # log(1-P_t) = log Phi(z)
    return np.maximum(ndtr(-z.min(axis=1)), -np.expm1(lq.sum(axis=1) / k))
KS = [None, 48, 36, 24, 18, 12, 6]
for f in sys.argv[1:]:
    d = np.load(f)
    held = set(d['_heldout_names'])
    for steps, name in ((96, '8h'), (6, '30m')):
        print(f"== {f} {name}")
        for m in M:
            z, ex, sv = d[m+'_z'], d[m+'_ex'], d[m+'_server']
            if z.shape[0] == 0: continue
            e = ex[:, :steps].any(axis=1)
            for grp, sel in (('seen', ~np.isin(sv, list(held))), ('never', np.isin(sv, list(held)))):
                if not e[sel].any(): continue
                row = []
                base = np.mean((e[sel].mean()-e[sel])**2)
                for k in KS:
                    p = preds(z[sel], steps, k)
                    row.append(f"{'max' if k is None else k}:{np.mean((p-e[sel])**2)/base:.3f}/{p.mean():.3f}")
                print(f"  {m[:6]} {grp:5} n={sel.sum():5} ev={e[sel].mean():.3f}  " + " ".join(row))
