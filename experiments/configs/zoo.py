"""The zoo (`./launch.sh zoo`): every family on the same binarized digits, one table.

Schedules (`--schedule=NAME`, the variant of this file):
  tiny   scikit-learn's 8x8 digits (1,797 images, 16 grey levels), pixel on where value >= 8
         (of 16), a fixed split of 360 test images (seed 0); small models, a few hundred
         steps: the whole zoo in about a minute on 2 CPU cores (CI).
  quick  binarized MNIST from the four IDX files (`--data_dir`), pixel on where value >= 128
         (of 255); the first 10,000 training images and the first 1,000 test images of
         the canonical split (every model scored on the same 1,000); a 2-core CPU.
  full   the same MNIST binarization, all 60,000 training and 10,000 test images.

Every member's keys sit under its own name (`config.naive_bayes`, `config.vae`, ...);
`config.members` lists the members run, `config.curve` the Ng & Jordan sweep.
"""

import ml_collections

SCHEDULES = ("tiny", "quick", "full")


def get_config(schedule: str = "tiny") -> ml_collections.ConfigDict:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r} of zoo: {', '.join(SCHEDULES)}")
    tiny = schedule == "tiny"
    quick = schedule == "quick"
    config = ml_collections.ConfigDict()
    config.schedule = schedule
    config.seed = 0
    config.data = ml_collections.ConfigDict(
        {
            "name": "digits" if tiny else "mnist",
            "threshold": 0.5,  # of the pixel range: digits >= 8 / 16, MNIST >= 128 / 255
            # test images (digits: split off first), then training images; 0: all
            "max_test": 360 if tiny else (1000 if quick else 0),
            "max_examples": 10_000 if quick else 0,
        }
    )
    config.members = (
        "naive_bayes",
        "mixture",
        "hmm",
        "lda",
        "rbm",
        "dbm",
        "vae",
        "iwae",
        "cvae",
        "gan",
        "cgan",
        "logistic",
        "mlp",
    )
    config.naive_bayes = ml_collections.ConfigDict({"alpha": 1.0})
    config.mixture = ml_collections.ConfigDict(
        {"num_components": 3 if tiny else 10, "num_iters": 30 if tiny else 50, "alpha": 1.0}
    )
    # Each image a sequence of binary row pieces of `bits` pixels, a symbol each (2^bits of
    # them), read in raster order: 8 bits is one 8x8 digits row; 7 bits a quarter MNIST row.
    config.hmm = ml_collections.ConfigDict(
        {
            "bits": 8 if tiny else 7,
            "num_states": 4 if tiny else 10,
            "num_iters": 20 if tiny else 30,
            "pseudocount": 0.1,  # added to each emission count (MAP EM): no symbol gets p = 0
        }
    )
    config.lda = ml_collections.ConfigDict(
        {"num_topics": 10 if tiny else 20, "num_iters": 20 if tiny else 50}
    )
    config.rbm = ml_collections.ConfigDict(
        {
            "num_hidden": 16 if tiny else 200,  # 16: log Z also enumerated exactly
            "num_epochs": 20.0 if tiny else 10.0,
            "batch_size": 40 if tiny else 100,
            "k": 1 if tiny else 5,
            "ais_runs": 64 if tiny else 100,
            "ais_temperatures": 1000 if tiny else 10_000,
            "inpaint_sweeps": 100,
        }
    )
    config.dbm = ml_collections.ConfigDict(
        {
            "num_hidden": 16 if tiny else 200,
            "num_hidden2": 8 if tiny else 100,
            "num_epochs": 20.0 if tiny else 10.0,
            "pretrain_epochs": 5.0 if tiny else 3.0,
            "batch_size": 40 if tiny else 100,
            "ais_runs": 64 if tiny else 100,
            "ais_temperatures": 1000 if tiny else 10_000,
        }
    )
    vae = {
        "hidden": 64 if tiny else 200,
        "latent_dim": 4 if tiny else 16,
        "num_steps": 300 if tiny else 3000,
        "batch_size": 64 if tiny else 100,
        "iwae_samples": 10 if tiny else 50,
        "nll_samples": 100 if tiny else 1000,
        "classify_samples": 20 if tiny else 100,
        "train_samples": 1,  # samples of the training bound: 1 the ELBO, k > 1 IWAE-k
    }
    config.vae = ml_collections.ConfigDict(vae)
    config.iwae = ml_collections.ConfigDict({**vae, "train_samples": 5})
    config.cvae = ml_collections.ConfigDict(vae)
    gan = {
        "hidden": 64 if tiny else 256,
        "noise_dim": 16 if tiny else 64,
        "num_steps": 300 if tiny else 3000,
        "batch_size": 64 if tiny else 100,
        "parzen_samples": 1000 if tiny else 10_000,
        "parzen_validation": 300 if tiny else 1000,
    }
    config.gan = ml_collections.ConfigDict(gan)
    config.cgan = ml_collections.ConfigDict(gan)
    config.logistic = ml_collections.ConfigDict({"c": 1.0, "num_steps": 100})
    config.mlp = ml_collections.ConfigDict(
        {"hidden": 64 if tiny else 200, "num_steps": 300 if tiny else 2000, "batch_size": 64}
    )
    # The Ng & Jordan sweep: training examples per class (and, with `whole`, the whole
    # training split), each size drawn num_seeds times for error bars.
    config.curve = ml_collections.ConfigDict(
        {
            "sizes": (5, 10, 50) if tiny else (5, 10, 50, 100, 500),
            "whole": True,
            "num_seeds": 2 if tiny else 3,
            "families": ("naive_bayes", "mixture", "logistic") + (() if tiny else ("mlp",)),
            "mlp_steps": 300 if tiny else 500,  # each MLP of the sweep (config.mlp otherwise)
        }
    )
    config.figures = ml_collections.ConfigDict({"num_samples": 30, "num_inpaint": 8})
    return config
