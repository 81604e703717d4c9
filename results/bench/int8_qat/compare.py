"""Paired control → QAT comparison of full-int8 agreement (the same 5,000 validation images, two models).

bench/paired_agreement.py compares files of one run; here the runs differ by design, so the pairing
is by image index alone. Run from the repository root: python results/bench/int8_qat/compare.py
"""
import json

import numpy as np

N, cells, out = 5000, [], {}
for w in ("0.5", "0.75", "1.0"):
    a, b = (json.load(open(f"results/bench/int8_qat/{r}_w{w}.json")) for r in ("control", "fake_quantize"))
    ra, rb = ([x for x in d["results"] if x["route"] == "converter"][0] for d in (a, b))
    for lam in ra["agreement"]:
        ok_a, ok_b = np.ones(N), np.ones(N)
        ok_a[ra["disagreeing_images"][lam]] = 0
        ok_b[rb["disagreeing_images"][lam]] = 0
        cells.append(ok_b - ok_a)
        out[f"width {w}, lambda {lam}"] = dict(control=ok_a.mean(), fake_quantize=ok_b.mean(),
                                              difference_pp=round(100 * (ok_b - ok_a).mean(), 2))
d = np.concatenate(cells)
out["pooled"] = dict(difference_pp=round(100 * d.mean(), 3), paired_se_pp=round(100 * d.std(ddof=1) / np.sqrt(len(d)), 3))
per_image = np.stack(cells).sum(0)
out["pooled"]["image_clustered_se_pp"] = round(100 * per_image.std(ddof=1) / np.sqrt(N) / len(cells), 3)
print(json.dumps(out, indent=1))
json.dump(out, open("results/bench/int8_qat/comparison.json", "w"), indent=1)
