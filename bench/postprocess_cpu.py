"""Post-processing cost after generation (issue 19 item 12), CPU time, interleaved:

- ``token_char_spans``: incremental decoding (now) vs decoding every growing prefix (before; the
  reference implementation kept in tests/property/test_token_offsets_property.py);
- ``pooled_catalogue``: now vs the loop before (an exception raised and caught per entropy spec
  under ``stats="energy"``), on synthetic traces from tests/unit/test_pooled_catalogue.py.

    .venv/bin/python bench/postprocess_cpu.py --out bench/results/postprocess_cpu.json
"""
import argparse, json, os, statistics, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/property")); sys.path.insert(0, str(ROOT / "tests/unit"))
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="bench/results/postprocess_cpu.json")
args = parser.parse_args()
import numpy as np
import transformers
from spill_guard.capture import token_char_spans
from spill_guard.models.embedded import smollm2_gguf
from spill_guard.models.loader import converted_gguf
from test_token_offsets_property import reference_token_char_spans, TEXTS
from test_pooled_catalogue import make_trace
from spill_guard.scoring import specs
from spill_guard.errors import InvalidInputError
from spill_guard.scoring.pooling import check_finite, resolve_range

def old_pooled_catalogue(trace):  # the loop before the change (same signature handling as now)
    try:
        start, end = resolve_range(trace, None, None)
    except InvalidInputError:
        return {}
    check_finite(trace, start, end)
    pooled, per_token = {}, {}
    for spec in specs._CATALOGUE:
        try:
            key = (spec.scorer, spec.beta)
            if key not in per_token:
                per_token[key] = spec.values(trace)
            pooled[spec.name] = spec._pool_range(trace, per_token[key], start, end)
        except InvalidInputError:
            continue
    return pooled

def cpu(fn, n):
    out = []
    for _ in range(n):
        t = time.process_time(); fn(); out.append(time.process_time() - t)
    return out

def summ(v):
    v = sorted(v); return {"median_ms": statistics.median(v) * 1e3, "min_ms": v[0] * 1e3, "max_ms": v[-1] * 1e3, "n": len(v)}

tok = transformers.AutoTokenizer.from_pretrained(converted_gguf(smollm2_gguf()))
base = tok.encode(" ".join(TEXTS), add_special_tokens=False) * 200
res = {"command": "python " + " ".join(sys.argv), "loadavg_start": os.getloadavg(), "token_char_spans": {}, "pooled_catalogue": {}}
for T in (48, 256, 1024):
    ids = base[:T] + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert token_char_spans(tok, ids) == reference_token_char_spans(tok, ids)
    reps = 15 if T < 1024 else 3
    new, old = [], []
    for r in range(reps):  # interleaved
        old += cpu(lambda: reference_token_char_spans(tok, ids), 1)
        new += cpu(lambda: token_char_spans(tok, ids), 1)
    res["token_char_spans"][T + 1] = {"prefix_decoding": summ(old), "incremental": summ(new)}
for label, kw in (("energy_stop_ended", dict(distribution_stats=False, final_step=False)),
                  ("energy_cut", dict(distribution_stats=False, final_step=True)),
                  ("full_cut", dict(distribution_stats=True, final_step=True))):
    trace = make_trace(48, **kw)
    assert specs.pooled_catalogue(trace) == old_pooled_catalogue(trace)
    new, old = [], []
    for r in range(200):
        old += cpu(lambda: old_pooled_catalogue(trace), 1)
        new += cpu(lambda: specs.pooled_catalogue(trace), 1)
    res["pooled_catalogue"][label] = {"before": summ(old), "after": summ(new)}
res["loadavg_end"] = os.getloadavg()
Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
print(json.dumps(res, indent=1))
