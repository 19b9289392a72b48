"""Durbin, Eddy, Krogh & Mitchison 1998, "Biological Sequence Analysis", section 3.2 (the
occasionally dishonest casino, Figure 3.5 / ../shared/REFERENCES.md): the published model
switches fair -> loaded with probability 0.05 and loaded -> fair with 0.10; the loaded die
shows a six with probability 1/2 (faces 1-5: 1/10 each), the fair one 1/6 each.

  ./launch.sh replicate hmm_casino --schedule=quick

The book states the model; it does not fit it. The check here is a parameter-recovery one:
rolls are sampled from the published model, the two-state HMM is learned back by MAP
Baum-Welch (Dirichlet(2) rows, random restarts, best final objective kept), state labels
are aligned to the truth (the permutation closest in emission probabilities), and the
recovered A[fair, loaded], A[loaded, fair] and P(6 | loaded) are compared with the published
values. Their sampling error sets the tolerances (about 3 standard errors of the estimate at
each schedule's number of rolls).

Schedules (wall time here, 2 shared CPU cores):
  tiny   2 x 500 rolls, 2 restarts, 20 EM iterations (~15 s, mostly start-up); with 1,000
         rolls the estimates are rough, so the tolerances are wide (pipeline check).
  quick  10 x 2,000 rolls, 8 restarts, 200 iterations (~25 s); reached 0.0488, 0.0966 and
         0.4916 here.
  full   100 x 10,000 rolls, 8 restarts, 300 iterations.
"""

import ml_collections

from genjax_lab.core import replication as rep

REPLICATION = rep.Replication(
    experiment="hmm",
    paper="Durbin et al. 1998, Biological Sequence Analysis, sec. 3.2 (dishonest casino model)",
    estimator="MAP Baum-Welch on rolls sampled from the published model; recovered parameters "
    "after aligning state labels",
    rows=(
        rep.Row(
            label="A[fair -> loaded]",
            metric="a_fair_to_loaded",
            published=0.05,
            tolerance={"tiny": 0.04, "quick": 0.012, "full": 0.004},
        ),
        rep.Row(
            label="A[loaded -> fair]",
            metric="a_loaded_to_fair",
            published=0.10,
            tolerance={"tiny": 0.07, "quick": 0.025, "full": 0.008},
        ),
        rep.Row(
            label="P(six | loaded)",
            metric="p6_loaded",
            published=0.5,
            tolerance={"tiny": 0.1, "quick": 0.03, "full": 0.01},
        ),
    ),
)


def get_config(arg: str = "quick") -> ml_collections.ConfigDict:
    _, schedule = rep.parse_arg(arg)
    config = rep.experiment_config(
        "experiments/configs/hmm_casino.py", "tiny" if schedule == "tiny" else "default"
    )
    if schedule == "full":
        config.data.num_sequences = 100
        config.data.length = 10_000
        config.num_steps = 300
    return config
