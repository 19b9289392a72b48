"""SMS spam filtering with multinomial naive Bayes, against logistic regression and
scikit-learn's MultinomialNB on the same word counts and the same split.

  ./launch.sh naive_bayes --config=experiments/configs/naive_bayes_spam.py \
      --config.data.spam_path=../shared/data/text/SMSSpamCollection

Variants (`--config=experiments/configs/naive_bayes_spam.py:VARIANT`):
  default  all 5,430 messages, 80/20 stratified split (seed 0), vocabulary of training words
           seen >= 2 times, add-one smoothing (counted on the training loop, 512 messages a
           step, 9 steps), logistic regression C=1 (200 L-BFGS steps).
           Measured here (1,086 test messages, 143 spam; ~17 s): naive Bayes accuracy 0.9834,
           precision 0.925, recall 0.951, AUC 0.9940 - identical to scikit-learn's
           MultinomialNB; logistic regression accuracy 0.9871, precision 0.985, recall 0.916,
           AUC 0.9941.
  tiny     a seeded 1,500-message subset, 50 L-BFGS steps (tests and smoke runs).
"""

import ml_collections


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "spam"
    config.seed = 0
    config.data = ml_collections.ConfigDict(
        {
            "spam_path": "",  # the SMS Spam Collection file (label<TAB>text per line)
            "max_docs": 0,  # 0: every message
            "test_fraction": 0.2,
            "min_count": 2,  # vocabulary: training words seen at least this often
            "max_vocab": 0,  # 0: no cap
        }
    )
    # Naive Bayes counts batch_size messages a step of the training loop (one epoch).
    config.nb = ml_collections.ConfigDict({"alpha": 1.0, "batch_size": 512})
    config.logistic = ml_collections.ConfigDict({"c": 1.0, "num_steps": 200})
    if variant == "tiny":
        config.data.max_docs = 1500
        config.logistic.num_steps = 50
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r} of naive_bayes_spam: default or tiny")
    return config
