"""The zoo's report (docs/zoo.md, written by experiments/zoo.py): the table of the members'
rows, the Ng & Jordan curve, the figures from the members' saved arrays.

A row is a dict: member, model, scores (cells {estimator, kind, value, stderr}: a mean over
the test images in nats per image and its standard error), num_params, train_seconds,
wall_seconds, hardware, accuracy (None with accuracy_note where the model cannot classify),
command, seed, config, figures (names of the member's saved arrays: samples, by_label,
inpaint, each <workdir>/<member>/<name>.npy of images [N, H, W] in [0, 1]).
"""

import json
import pathlib
from collections.abc import Mapping

import ml_collections
import numpy as np

from genjax_lab.core import plots

# What a likelihood cell is: exact, a lower bound, a stochastic estimate, or a number on
# another scale (a Parzen window, LDA's ELBO over tokens) that must not be compared.
EXACT, BOUND, ESTIMATE, NOT_COMPARABLE = "exact", "bound", "estimate", "not comparable"


def _escaped(text: str) -> str:
    """A table cell's text: its bars (p(x | y)) would end the cell."""
    return text.replace("|", "\\|")


def _cell(cell: Mapping) -> str:
    stderr = "" if cell["stderr"] is None else f" ± {cell['stderr']:.2f}"
    flag = " **not comparable**" if cell["kind"] == NOT_COMPARABLE else ""
    return f"{cell['value']:.2f}{stderr} ({cell['estimator']}){flag}"


def _curve_x(size: str, record: Mapping) -> float:
    return float(size) if size != "0" else record["all_per_class"]


def _curve_name(size: str, record: Mapping) -> str:
    if size == "0":
        return f"all ({record['all_per_class']:.0f} per class)"
    return f"{size} per class"


def crossings(record: Mapping) -> list[str]:
    """Where each generative family's mean error curve meets logistic regression's."""
    errors, lines = record["errors"], []
    if "logistic" not in errors:
        return lines
    sizes = list(errors["logistic"])
    names = [f"{_curve_x(s, record):g}" for s in sizes]
    baseline = [np.mean(errors["logistic"][s]) for s in sizes]
    for family in errors:
        if family in ("logistic", "mlp"):
            continue
        ours = [np.mean(errors[family][s]) for s in sizes]
        lower = [o < b for o, b in zip(ours, baseline)]
        if all(lower) or not any(lower):
            side = "below" if lower[0] else "at or above"
            lines.append(f"{family}: error {side} logistic regression's at every size")
            continue
        flips = [f"{names[i]} and {names[i + 1]}" for i in range(len(lower) - 1)]
        flips = [f for i, f in enumerate(flips) if lower[i] != lower[i + 1]]
        lines.append(
            f"{family}: {'lower' if lower[0] else 'higher'} error than logistic regression "
            f"at {names[0]} per class; the curves cross between {' and between '.join(flips)} "
            "per class"
        )
    return lines


def write_figures(rows: list[dict], workdir: pathlib.Path, figures: pathlib.Path) -> dict:
    """The PNGs of the report, from the members' saved arrays: {figure: file name}."""
    figures.mkdir(parents=True, exist_ok=True)
    written = {}

    def blocks(array_name: str) -> tuple[list[np.ndarray], list[str]]:
        found = [
            (row["member"], np.load(workdir / row["member"] / f"{array_name}.npy"))
            for row in rows
            if array_name in row.get("figures", ())
        ]
        return [a for _, a in found], [name for name, _ in found]

    images, labels = blocks("samples")
    if images:
        plots.save_grid(
            figures / "samples.png",
            images,
            columns=len(images[0]),
            scale=3,
            ink=True,
            labels=labels,
            title="samples, one row per model",
        )
        written["samples"] = "samples.png"
    images, labels = blocks("by_label")
    if images:
        # each block: 3 samples of each digit, laid out digit by digit across the row
        plots.save_grid(
            figures / "samples_by_label.png",
            images,
            columns=len(images[0]),
            scale=3,
            ink=True,
            labels=labels,
            title="x given y: three of each digit 0-9, left to right",
        )
        written["by_label"] = "samples_by_label.png"
    images, labels = blocks("inpaint")
    if images:
        num = len(images[0])
        first = np.load(workdir / labels[0] / "inpaint.npy")
        truth = np.load(workdir / "truth.npy")[:num]
        top = truth.copy()
        top[:, truth.shape[1] // 2 :] = 0.5  # grey: the hidden half
        plots.save_grid(
            figures / "inpainting.png",
            [top, truth, *images],
            columns=len(first),
            scale=4,
            ink=True,
            labels=["observed", "truth", *labels],
            title="bottom half filled in: P(pixel on | top half)",
        )
        written["inpaint"] = "inpainting.png"
    return written


def write_curve_figure(record: Mapping, path: pathlib.Path) -> None:
    series = []
    for family, by_size in record["errors"].items():
        sizes = list(by_size)
        series.append(
            plots.Series(
                family,
                np.asarray([_curve_x(s, record) for s in sizes]),
                np.asarray([np.mean(by_size[s]) for s in sizes]),
                np.asarray([np.std(by_size[s]) for s in sizes]),
            )
        )
    xs = sorted({float(v) for s in series for v in s.x})
    panel = plots.Panel(
        "test error vs training examples per class (mean, bars: sd over seeds)",
        series,
        "examples per class",
        "test error",
        log_x=True,
        x_ticks=xs,
    )
    plots.plot_panels(path, [panel], size=(520, 320))


def render_report(
    config: ml_collections.ConfigDict,
    data: Mapping,
    rows: list[dict],
    curve: Mapping | None,
    figures: Mapping[str, str],
    figures_dir: str,
    wall_seconds: float,
    no_inpainting: Mapping[str, str],
) -> str:
    """docs/zoo.md: the table, the curve, the figures, and what each number is. data:
    description, test_examples, fingerprint of the test set; no_inpainting: why each model
    that does not inpaint does not."""
    s = config.schedule
    lines = [
        "# The zoo: every family on the same binarized digits",
        "",
        f"Generated by `./launch.sh zoo --schedule={s}"
        + (" --data_dir=DIR" if config.data.name == "mnist" else "")
        + f"` (schedule **{s}**; config `experiments/configs/zoo.py:{s}`, seed {config.seed}) "
        f"on {rows[0]['hardware'] if rows else '?'}; the members' wall times sum to "
        f"{wall_seconds / 60:.1f} min (compilations read from JAX's persistent cache where "
        "an earlier launch left them).",
        "",
        *(
            [
                "This page is from the **tiny** schedule: the 8x8 digits and CI-sized models "
                "trained for seconds, so the numbers show the harness and the estimators at "
                "work, not each family at its best. `./launch.sh zoo --schedule=quick "
                "--data_dir=DIR` regenerates it on binarized MNIST.",
                "",
            ]
            if s == "tiny"
            else []
        ),
        f"Data: {data['description']}. Every likelihood is the mean over the same "
        f"{data['test_examples']} test images (fingerprint `{data['fingerprint']}`) in **nats per "
        "image** (higher is better), ± its standard error over the images unless the cell "
        "says otherwise. Bayes-rule accuracy: argmax_y log p(x | y) + log p(y) on the same "
        "images; the two discriminative baselines model p(y | x) only.",
        "",
        "| member | model | test log-likelihood, nats per image (estimator) | parameters | "
        "train s | wall s | Bayes-rule accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = "<br>".join(_cell(c) for c in row["scores"]) or row.get("likelihood_note", "")
        accuracy = (
            f"{row['accuracy']:.3f}"
            if row["accuracy"] is not None
            else f"— ({row.get('accuracy_note', '')})"
        )
        if row["accuracy"] is not None and row.get("accuracy_note"):
            accuracy += f" ({row['accuracy_note']})"
        texts = (
            row["member"],
            row["model"],
            cells,
            f"{row['num_params']:,}",
            f"{row['train_seconds']:.1f}",
            f"{row['wall_seconds']:.1f}",
            accuracy,
        )
        lines.append("| " + " | ".join(map(_escaped, texts)) + " |")
    lines += [
        "",
        "Parameters: the stored array entries of the fitted model (a GAN: its generator). "
        "Train s: the fit alone; wall s: fit, scoring and figures, this launch (a resumed "
        "neural run counts only its last launch). Hardware of every row: "
        + "; ".join(sorted({row["hardware"] for row in rows}))
        + ".",
        "",
        "What the estimators are:",
        "",
        "- **exact**: naive Bayes and the Bernoulli mixture sum their classes and components "
        "out in closed form (log p(x) = logsumexp over them); the HMM by the forward "
        "algorithm over its symbols, which are the pixels (each symbol a run of "
        f"{config.hmm.bits} pixels in raster order, so the code is a bijection); the RBM "
        "where its log Z can be enumerated.",
        "- **bounds** sit below log p(x): the ELBO <= IWAE-k <= log p(x) (VAE; a conditional "
        "VAE's ELBO of log p(x, y) is also below log p(x)); the DBM's mean field.",
        "- **estimates**: importance sampling with q(z | x) as proposal (VAE) and AIS (RBM; "
        "AIS underestimates log Z on average, so it tends to overstate log p(x)).",
        "- **not comparable**: a GAN has no likelihood, its Parzen window is a kernel density "
        "of its samples (with binary pixels it can even be positive); LDA's ELBO bounds the "
        "probability of the on pixels as a sequence of tokens given how many there are, and "
        "leaves the off pixels and their number unmodelled: it is not a density over images.",
        "",
    ]
    if curve is not None:
        lines += [
            "## Ng & Jordan across families",
            "",
            "Test error against training examples per class (the largest size is the whole "
            f"training split, {curve['all_per_class']:.0f} per class on average), mean over "
            f"{config.curve.num_seeds} seeds (each draws its own subset), "
            f"in {curve['wall_seconds']:.0f} s:",
            "",
            "![Ng & Jordan](" + f"{figures_dir}/ng_jordan.png)",
            "",
            "| family | "
            + " | ".join(_curve_name(s, curve) for s in next(iter(curve["errors"].values())))
            + " |",
            "| --- |" + " --- |" * len(next(iter(curve["errors"].values()))),
        ]
        for family, by_size in curve["errors"].items():
            lines.append(
                f"| {family} | "
                + " | ".join(f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in by_size.values())
                + " |"
            )
        lines += ["", *[f"- {line}" for line in crossings(curve)], ""]
    lines += ["## Pictures", ""]
    names = {
        "samples": "Samples, one row per model (ink = P(pixel on), or the sampled pixels):",
        "by_label": "Samples given the label, for the models with a p(x | y):",
        "inpaint": "The bottom half of test digits filled in, P(pixel on | top half): exact for "
        "naive Bayes and the mixture (the posterior over classes and components given the top "
        "half, the bottom marginalised), exact for the HMM (the smoothed state at the last "
        "observed row pushed forward), and a clamped block-Gibbs average for the RBM.",
    }
    for key, file_name in figures.items():
        lines += [names[key], "", f"![{key}]({figures_dir}/{file_name})", ""]
    missing = [f"- {m}: {why}" for m, why in no_inpainting.items() if m in config.members]
    lines += ["Models that do not inpaint here, and why:", "", *missing, ""]
    lines += [
        "## Reproducing a row",
        "",
        "Each row's command, config and seed are in `runs/zoo/<schedule>/<member>/row.json` "
        "beside its checkpoints; relaunching the command skips finished members and resumes "
        "the others.",
        "",
    ]
    for row in rows:
        lines.append(
            f"- {row['member']}: `{row['command']}`, seed {row['seed']}, config "
            f"`{json.dumps(row['config'], sort_keys=True)}`"
        )
    return "\n".join(lines) + "\n"
