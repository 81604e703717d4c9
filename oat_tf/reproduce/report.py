"""Report stub (replaced below)."""
import os
from oat_tf.provenance import provenance, write_json
from oat_tf.reproduce.runner import completed


def write(plan, budget, runs_dir, dataset, data_dir, out):
    done = completed(plan, budget, runs_dir, dataset, data_dir)
    write_json(os.path.join(out, "reproduce.json"), provenance(runs={k: {n: e["rows"] for n, e in v["evaluations"].items()} for k, v in done.items()}))
