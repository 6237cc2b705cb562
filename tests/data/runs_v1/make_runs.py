"""How the run directories beside this file were made: by ppgen at commit 4378817 (the
last commit before recipes, config format v1), run from this folder with
PPGEN_DATA pointing at the shared data. ``expected.json`` holds what that commit's
``runs.evaluate`` (k=20) and ``runs.evaluate_classifier`` reported for each run (``seconds``
and ``confusion`` dropped). Pictures and the checkpoints no pointer names were deleted.

This script only works with that commit's ``ppgen.runs`` (flat ``RunConfig``); it is kept
as the record of what the directories hold.
"""

import json

from ppgen import runs

common = dict(dataset="digits", latent=4, hidden=(16,), epochs=2, batch_size=50, seed=3)
jobs = [
    ("vae-pyro", dict(model="vae", backend="pyro", objective="iwae", k=2, **common)),
    (
        "vae-numpyro",
        dict(model="vae", backend="numpyro", kl_warmup=1, lr_schedule="cosine", **common),
    ),
    ("hvae-numpyro", dict(model="hvae", backend="numpyro", **common)),
    ("m2-pyro", dict(model="m2", backend="pyro", labels=50, **common)),
    (
        "m2-numpyro",
        dict(model="m2", backend="numpyro", labels=50, binarize="none", alpha=50.0, **common),
    ),
    ("m1-numpyro", dict(model="m1", backend="numpyro", labels=50, **common)),
    (
        "m1m2-numpyro",
        dict(model="m1m2", backend="numpyro", labels=50, m1_run="m1-numpyro", **common),
    ),
]
for name, kw in jobs:
    runs.train(runs.RunConfig(**kw), name, progress=False)

out = {}
for name, _ in jobs:
    run = runs.load_trained(name)
    if run.config.model in runs.SEMI_SUPERVISED:
        r = runs.evaluate_classifier(run)
        r.pop("confusion")
    else:
        r = runs.evaluate(run, k=20, progress=False)
    r.pop("seconds")
    out[name] = r
json.dump(out, open("expected.json", "w"), indent=1, sort_keys=True)
