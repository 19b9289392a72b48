"""A finished workdir used from the command line: sample, classify, score.

  ./launch.sh sample   --workdir=W [--label=Y] [--num=N] [--out=FILE] [--seed=S]
  ./launch.sh classify --workdir=W --input=F
  ./launch.sh score    --workdir=W --input=F

The model is `genjax_lab.saving.load(W)`; what its inputs look like is the `input` record
the run saved beside it (`meta["input"]`), so each family reads what its users have:
  image     PNG files (a file, a folder of them) or a .npy array [N, H, W] / [N, H, W, C] of
            pixels in [0, 1] or 0..255; `layout` "flat" gives the model [N, H*W*C], and
            `binarize` "threshold" sets pixels >= 0.5 to 1 (models of binary images).
  text      a text file, one message per line, counted over the saved vocabulary.
  sequence  a .npy array [T, D] (one sequence) or [B, T, D].
  symbols   a .npy array of integer symbols in [0, num_symbols), [T] (one sequence) or [B, T].
  audio     a .wav recording, a folder of them, or a text file listing them (one path a
            line, relative to the list's folder), read by genjax_lab.data.audio and turned
            into MFCC sequences with the front-end settings the run saved (`mfcc`).
Samples: a PNG grid for images, words for text, one line of symbols per sequence, a .npy
file for sequences and for audio (MFCC frames [N, T, D]: features, not sound; there is no
vocoder); what else a family's `sample` needs (a document's or a sequence's length) is
`sample_kwargs` there.
Bad input ends in one line naming the flag or file, and exit status 2.
"""

import argparse
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from genjax_lab import saving

_IMAGE_SUFFIXES = (".png",)
# The first a model has, in this order: exact, then an estimate (importance sampling, AIS:
# tighter than a model's cheap bound), then a bound.
_ESTIMATORS = (
    ("log_prob", "exact"),
    ("log_prob_estimate", "estimate"),
    ("log_prob_bound", "lower bound"),
)


class UsageError(ValueError):
    """Bad input from the command line: one line, exit status 2."""


def _input_spec(model: saving.Model) -> Mapping[str, Any]:
    spec = model.meta.get("input")
    if not spec:
        raise UsageError(
            f"--workdir: the {model.family_name} model saved no input description "
            "(meta['input']), so its inputs cannot be read from files"
        )
    return spec


def _finite(path: pathlib.Path, values: np.ndarray) -> np.ndarray:
    """`values` when it holds at least one number and all of them are finite."""
    if values.size == 0:
        raise UsageError(f"--input={path}: empty, shape {values.shape}")
    if not np.isfinite(values).all():
        raise UsageError(
            f"--input={path}: {np.size(values) - np.isfinite(values).sum()} values are not "
            "finite (NaN or infinity)"
        )
    return values


def _read_images(path: pathlib.Path, spec: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    if path.suffix == ".npy":
        pixels = _finite(path, np.load(path).astype(np.float32))
        if pixels.min(initial=0.0) < 0.0 or pixels.max(initial=0.0) > 255.0:
            raise UsageError(
                f"--input={path}: pixels must lie in [0, 1] or 0..255, got "
                f"[{pixels.min()}, {pixels.max()}]"
            )
        if pixels.max(initial=0.0) > 1.0:
            pixels = pixels / 255.0
        names = [f"{path.name}[{i}]" for i in range(len(pixels))]
    else:
        files = (
            sorted(p for p in path.iterdir() if p.suffix in _IMAGE_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        if not files:
            raise UsageError(f"--input={path}: no PNG files in this folder")
        # 8-bit grey levels whatever the values: a dark PNG is not a [0, 1] image.
        grey = [np.asarray(Image.open(f).convert("L"), np.float32) for f in files]
        pixels = np.stack(grey) / 255.0
        names = [f.name for f in files]
    shape = tuple(spec["shape"])
    if pixels.ndim == len(shape):  # [N, H, W] for an [H, W, 1] model
        pixels = pixels[..., None]
    if pixels.shape[1:] != shape:
        raise UsageError(
            f"--input={path}: images of shape {pixels.shape[1:]}, the model takes {shape}"
        )
    if spec.get("binarize") == "threshold":
        pixels = (pixels >= 0.5).astype(np.float32)
    if spec.get("layout") == "flat":
        pixels = pixels.reshape(len(pixels), -1)
    return pixels, names


def _read_text(path: pathlib.Path, spec: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    from genjax_lab.data import text

    messages = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    if not messages:
        raise UsageError(f"--input={path}: no messages (one per line)")
    vocabulary = text.Vocabulary(tuple(spec["vocabulary"]))
    bags = text.bag_of_words([text.tokenize(m) for m in messages], vocabulary)
    return text.to_dense(bags, len(vocabulary)), [m[:60] for m in messages]


def _read_sequences(path: pathlib.Path, spec: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    del spec
    sequences = _finite(path, np.load(path).astype(np.float32))
    if sequences.ndim == 2:
        sequences = sequences[None]
    if sequences.ndim != 3:
        raise UsageError(
            f"--input={path}: sequences must be [T, D] or [B, T, D], got {sequences.shape}"
        )
    return sequences, [f"{path.name}[{i}]" for i in range(len(sequences))]


def _read_symbols(path: pathlib.Path, spec: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    symbols = np.load(path)
    if symbols.ndim == 1:
        symbols = symbols[None]
    if symbols.ndim != 2 or not np.issubdtype(symbols.dtype, np.integer):
        raise UsageError(
            f"--input={path}: symbols must be integers [T] or [B, T], got {symbols.dtype} "
            f"{symbols.shape}"
        )
    if symbols.size == 0:
        raise UsageError(f"--input={path}: no symbols, shape {symbols.shape}")
    if symbols.min() < 0 or symbols.max() >= spec["num_symbols"]:
        raise UsageError(
            f"--input={path}: symbols must lie in [0, {spec['num_symbols']}), got "
            f"[{symbols.min()}, {symbols.max()}]"
        )
    return symbols.astype(np.int32), [f"{path.name}[{i}]" for i in range(len(symbols))]


def _wav_files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
        if not files:
            raise UsageError(f"--input={path}: no .wav files in this folder")
        return files
    if path.suffix.lower() == ".wav":
        return [path]
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"--input={path}: no .wav paths in this list (one a line)")
    files = [path.parent / line for line in lines]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"--input={path}: lists {missing[0]}, which does not exist")
    return files


def _read_audio(path: pathlib.Path, spec: Mapping[str, Any]) -> tuple[Any, list[str]]:
    from genjax_lab.data import audio
    from genjax_lab.models.hmm import Sequences

    files = _wav_files(path)
    waves = [audio.read_wav(f) for f in files]
    features, lengths = audio.mfcc(waves, audio.MfccConfig(**spec["mfcc"]))
    return Sequences(features, lengths), [f.name for f in files]


_READERS = {
    "image": _read_images,
    "text": _read_text,
    "sequence": _read_sequences,
    "symbols": _read_symbols,
    "audio": _read_audio,
}


def read_input(model: saving.Model, path: str) -> tuple[Any, list[str]]:
    """The model's inputs from `path` (an array, or the family's own batch such as an HMM's
    Sequences) and a name for each."""
    spec = _input_spec(model)
    file = pathlib.Path(path)
    if not file.exists():
        raise UsageError(f"--input={path}: no such file or folder")
    if spec["kind"] not in _READERS:
        raise UsageError(f"--workdir: unknown input kind {spec['kind']!r} in meta['input']")
    try:
        return _READERS[spec["kind"]](file, spec)
    except UsageError:
        raise
    except (OSError, ValueError) as error:  # not an image, not a .npy array, not text
        raise UsageError(
            f"--input={path}: cannot read it as {spec['kind']} input: {str(error).splitlines()[0]}"
        ) from error


def _label_names(model: saving.Model, num_classes: int) -> list[str]:
    names = model.meta.get("input", {}).get("labels")
    return list(names) if names else [str(c) for c in range(num_classes)]


def bayes_classifier(model: saving.Model):
    try:
        return model.classifier()
    except NotImplementedError as error:
        raise UsageError(f"--workdir: {error}: it cannot classify") from error
    except TypeError as error:  # a family that classifies, fitted without labels
        raise UsageError(
            f"--workdir: this {model.family_name} model was fitted without labels, so it "
            f"cannot classify ({error})"
        ) from error


def classify(model: saving.Model, x: np.ndarray, key: jax.Array) -> list[tuple[str, float]]:
    """(label, P(label | x)) for each input, through the model's Bayes-rule classifier."""
    classifier = bayes_classifier(model)
    proba = np.asarray(classifier.predict_proba(x, key if classifier.stochastic else None))
    names = _label_names(model, proba.shape[-1])
    return [(names[c], float(p[c])) for p, c in zip(proba, proba.argmax(-1))]


def score(model: saving.Model, x: np.ndarray, key: jax.Array) -> tuple[np.ndarray, str]:
    """log p(x) in nats for each input with the estimator's name: exact where the family
    has it, else its bound or estimate."""
    for verb, estimator in _ESTIMATORS:
        if getattr(model.family, verb, None) is None:
            continue
        try:
            values = model.log_prob(x) if verb == "log_prob" else getattr(model, verb)(key, x)
        except NotImplementedError:
            continue
        return np.asarray(values, np.float64), estimator
    raise UsageError(f"--workdir: the {model.family_name} model has no likelihood to score with")


def sample(model: saving.Model, num: int, label: int | None, key: jax.Array) -> Any:
    """`num` draws (given `label` where set), with the keywords the run saved for sampling
    (`meta["input"]["sample_kwargs"]`: a document's length, a sequence's)."""
    y = None if label is None else np.full((num,), label, np.int32)
    return model.sample(key, num, y=y, **model.meta.get("input", {}).get("sample_kwargs", {}))


def _write_samples(model: saving.Model, samples: Any, out: str | None) -> str:
    spec = model.meta.get("input", {})
    kind = spec.get("kind")
    if kind == "image":
        from genjax_lab.core import plots

        path = pathlib.Path(out or "samples.png")
        pixels = np.asarray(samples, np.float32).reshape((-1, *spec["shape"]))
        plots.save_grid(path, pixels)
        return f"wrote {len(pixels)} samples to {path}"
    if kind == "text":
        counts = np.asarray(samples)
        words = spec["vocabulary"]
        return "\n".join(
            " ".join(
                f"{words[i]}x{int(row[i])}" if row[i] > 1 else words[i] for i in np.flatnonzero(row)
            )
            for row in counts
        )
    if kind == "symbols":
        return "\n".join(" ".join(str(s) for s in row) for row in np.asarray(samples))
    path = pathlib.Path(out or "samples.npy")
    array = np.asarray(jax.tree_util.tree_leaves(samples)[0])
    np.save(path, array)
    if kind == "audio":
        return (
            f"wrote {len(array)} MFCC sequences {list(array.shape)} to {path} (features, not "
            "sound: there is no vocoder to turn them back into audio)"
        )
    return f"wrote samples to {path}"


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"launch.sh {command}")
    parser.add_argument("--workdir", required=True, help="a finished run's workdir")
    parser.add_argument("--seed", type=int, default=0)
    if command == "sample":
        parser.add_argument("--num", type=int, default=16)
        parser.add_argument("--label", type=int, default=None)
        parser.add_argument("--out", default=None, help="PNG grid or .npy file to write")
    else:
        parser.add_argument("--input", required=True)
    return parser


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ("sample", "classify", "score"):
        print("usage: launch.sh sample|classify|score --workdir=W ...", file=sys.stderr)
        return 2
    command, args = argv[0], _parser(argv[0]).parse_args(argv[1:])
    key = jax.random.key(args.seed)
    try:
        try:
            model = saving.load(args.workdir)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(f"--workdir={args.workdir}: {error}") from error
        if command == "sample":
            if args.num < 1:
                raise UsageError(f"--num={args.num}: must be at least 1")
            try:
                drawn = sample(model, args.num, args.label, key)
            except ValueError as error:  # a label the model has not, or a model with none
                raise UsageError(f"--label={args.label}: {error}") from error
            print(_write_samples(model, drawn, args.out))
            return 0
        if command == "classify":
            bayes_classifier(model)  # a model that cannot classify is named before any reading
        x, names = read_input(model, args.input)
        if command == "classify":
            for name, (label, probability) in zip(names, classify(model, x, key)):
                print(f"{name}\t{label}\t{probability:.4f}")
        else:
            values, estimator = score(model, x, key)
            print(f"# log p(x) in nats ({estimator})")
            for name, value in zip(names, values):
                print(f"{name}\t{value:.4f}")
        return 0
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
