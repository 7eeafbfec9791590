"""`segrun report`: finished runs side by side, repeats of one setting (runs whose specs differ only
in `seed`) summarised by mean and standard deviation."""
import csv
import glob
import io
import json
import statistics
import sys
from pathlib import Path

import attrs

from segrun import build
from segrun.atomic_write import write_atomically, write_figure
from segrun.errors import UserError
from segrun.lineage import file_sha256
from segrun.published import chain_specs, evaluation_spec, load_checkpoint_manifest, load_manifest
from segrun.recipes import differences, flatten
from segrun.run_folder import RunFolder
from segrun.spec import Spec, spec_hash
from segrun.spec.loader import to_table


@attrs.frozen
class RunResult:
    folder: RunFolder
    spec: Spec
    metrics: dict
    parameters: int

    @property
    def edited(self) -> bool:
        """Whether spec.toml is not what trained: its hash is not metrics.json's spec_hash."""
        recorded = self.metrics.get("spec_hash")
        return recorded is not None and recorded != spec_hash(self.spec)

    @property
    def setting(self) -> str:
        """The spec's hash with the seed left out: repeats of one setting share it."""
        return spec_hash(attrs.evolve(self.spec, seed=0, name="report"))


def find_runs(patterns) -> list[RunFolder]:
    folders = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern))) or [str(pattern)]
        for match in map(Path, matches):
            candidates = [match] if (match / "spec.toml").is_file() else sorted(p.parent for p in match.glob("*/spec.toml"))
            folders += [RunFolder(c) for c in candidates if (c / "metrics.json").is_file()]
    if not folders:
        raise UserError(f"no finished run (a folder with spec.toml and metrics.json) in {', '.join(map(str, patterns))}")
    return folders


def _parameters(spec: Spec, cache: dict) -> int:
    key = (json.dumps(to_table(spec.model), sort_keys=True), spec.data.dataset)  # (model options: a mapping, not hashable)
    if key not in cache:
        cache[key] = build.parameter_count(spec)
    return cache[key]


def load_results(patterns) -> list[RunResult]:
    """The finished runs of `patterns`. A run whose spec.toml or metrics.json does not read is named
    in one line and left out; one whose spec.toml is not what trained (see RunResult.edited) is
    named in one line and kept, as its spec.toml says."""
    cache: dict = {}
    results = []
    for folder in find_runs(patterns):
        try:
            spec, metrics = build.read_run_spec(folder), folder.read_metrics()
        except UserError as error:
            print(f"segrun: warning: {error}; left out of the report", file=sys.stderr)
            continue
        result = RunResult(folder, spec, metrics, _parameters(spec, cache))
        if result.edited:
            print(f"segrun: warning: {folder.spec_file}: not the spec that trained (its hash {spec_hash(spec)}, "
                  f"metrics.json's {metrics['spec_hash']}); shown as it says now, and never as a reproduction",
                  file=sys.stderr)
        results.append(result)
    if not results:
        raise UserError(f"no run left to report in {', '.join(map(str, patterns))} (see the lines above)")
    return results


def _mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group_rows(results: list[RunResult]) -> list[dict]:
    """One row per setting: what it is, how many runs, mean and std of mIoU and timings."""
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.setting, []).append(result)
    rows = []
    for members in groups.values():
        spec = members[0].spec
        miou, miou_std = _mean_std(r.metrics.get("mIoU") for r in members)
        rows.append({
            "setting": members[0].setting, "spec": spec, "name": spec.name, "model": f"{spec.model.name}/{spec.model.backbone}",
            "loss": "+".join(loss.name for loss in spec.loss), "data": spec.data.dataset,
            "steps": members[0].metrics.get("trained_steps", "-"),  # trained (metrics.json from before: unknown)
            "params": members[0].parameters, "runs": len(members), "mIoU": miou, "mIoU_std": miou_std,
            "train_s": _mean_std(r.metrics.get("train_seconds") for r in members)[0],
            "infer_s_per_image": _mean_std(r.metrics.get("validation_seconds_per_image") for r in members)[0],
        })
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'name':<28} {'model':<26} {'loss':<10} {'data':<22} {'steps':>7} {'params':>12} {'runs':>4} " \
             f"{'mIoU':>16} {'train s':>9} {'s/image':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        miou = f"{row['mIoU']:>8.4f} ± {row['mIoU_std']:.4f}" if row["runs"] > 1 else f"{row['mIoU']:>8.4f} (n=1) "
        lines.append(f"{row['name']:<28} {row['model']:<26} {row['loss']:<10} {row['data']:<22} {row['steps']:>7} "
                     f"{row['params']:>12,} {row['runs']:>4} {miou} "
                     f"{row['train_s']:>9.1f} {row['infer_s_per_image']:>8.4f}")
    return "\n".join(lines)


def _test_score(result: RunResult, options: dict) -> float | None:
    """The run's mIoU under test options `options`: from metrics.json's test protocol, or from an
    evaluation file in its folder (`segrun eval RUN ... --out RUN/eval-x.json`) that used them."""
    test = result.metrics.get("test")
    if test and test.get("options") == options:
        return test["mIoU"]
    for file in sorted(result.folder.path.glob("*.json")):
        if file != result.folder.metrics_file:
            scores = json.loads(file.read_text())
            if scores.get("protocol") == "test" and scores.get("options") == options:
                return scores["mIoU"]
    return None


# What a reproduction may differ in from the row's spec: its seed (seeds are pooled), its name, the
# checkpoint it started from (checked as lineage instead, see _lineage) and its [test] protocol (the
# row's protocol is matched by the scores' options, see _test_score).
REPRODUCTION_IGNORES = ("name", "seed", "init", "test")


def _read_spec(folder: Path) -> Spec | None:
    try:
        return build.read_run_spec(RunFolder(folder))
    except (OSError, UserError):
        return None


def _lineage(result: RunResult, stages: list[Spec]) -> list[str]:
    """For a chain's last stage: what is wrong with the runs it started from, stage by stage back to
    the first (each must be that stage's recipe, and its checkpoint the file the next one hashed)."""
    problems, metrics = [], result.metrics
    for index in range(len(stages) - 2, -1, -1):
        init = metrics.get("init") or {}
        checkpoint = Path(init.get("path", ""))
        folder = checkpoint.parent.parent
        previous = _read_spec(folder) if checkpoint.is_file() else None
        if previous is None:
            return problems + [f"init (stage {index}'s run {folder} is not found)"]
        if file_sha256(checkpoint) != init.get("sha256"):
            problems.append(f"init (stage {index}'s checkpoint changed since)")
        problems += [f"stage {index} {key}" for key in differences(previous, stages[index], REPRODUCTION_IGNORES)]
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
        except (OSError, ValueError):
            return problems + [f"init (stage {index}'s run {folder} is not finished)"]
    return problems


def study_rows(manifest: Path, results: list[RunResult]) -> list[dict]:
    """Per published row: the published best and mean, and the runs that are the row's recipe (its
    spec, or its chain's stages one after the other, see REPRODUCTION_IGNORES) scored under the
    row's test protocol: their mean ± std in percent and its difference from the published mean.
    Other runs of the row's spec are listed with the keys they differ in, never averaged in."""
    rows = []
    for row in load_manifest(manifest):
        target = evaluation_spec(manifest, row)
        stages = chain_specs(manifest, row)
        options = to_table(target.test)
        scores, differing = [], []
        for result in results:
            if result.spec.name != target.name:
                continue
            keys = (["spec.toml (edited after training)"] if result.edited else []) + differences(
                result.spec, target, REPRODUCTION_IGNORES) + (_lineage(result, stages) if stages else [])
            score = _test_score(result, options)
            if keys:
                differing.append((result.folder.path, keys))
            elif score is not None:
                scores.append(score * 100)
        mean, std = _mean_std(scores)
        rows.append({"dataset": row.dataset, "label": row.label, "published_best": row.published_best,
                     "published_mean": row.published_mean, "runs": len(scores), "mean": mean, "std": std,
                     "difference": mean - row.published_mean, "spec": target.name, "differing": differing})
    return rows


def format_study_table(rows: list[dict]) -> str:
    header = (f"{'dataset':<17} {'study row':<52} {'best':>6} {'mean':>6} {'runs':>4} {'reproduced':>15} "
              f"{'difference':>10}")
    lines = [header, "-" * len(header)]
    for row in rows:
        reproduced = f"{row['mean']:6.2f} ± {row['std']:5.2f}" if row["runs"] > 1 else (
            f"{row['mean']:6.2f} (n=1)" if row["runs"] else "-")
        difference = f"{row['difference']:+10.2f}" if row["runs"] else ""
        lines.append(f"{row['dataset']:<17} {row['label']:<52} {row['published_best']:>6.2f} "
                     f"{row['published_mean']:>6.2f} {row['runs']:>4} {reproduced:>15} {difference:>10}")
        for folder, keys in row["differing"]:
            shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} keys)" if len(keys) > 6 else "")
            lines.append(f"    not counted, not this row's recipe: {folder} (differs: {shown})")
    done = sum(1 for row in rows if row["runs"])
    lines.append(f"{done} of {len(rows)} published rows have reproduced runs (mIoU in percent, published mean of "
                 "three runs against the reproduced mean ± std over seeds; only runs of the row's recipe count)")
    return "\n".join(lines)


def write_csv(results: list[RunResult], path: Path) -> None:
    """One row per run, per-class IoU included."""
    # in class order (metrics.json keeps it), the classes of every run's dataset
    class_names = list(dict.fromkeys(name for r in results for name in r.metrics.get("per_class_iou", {})))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["run", "name", "setting", "seed", "model", "loss", "data", "steps", "params", "mIoU",
                     "pixel_accuracy", "train_seconds", "validation_seconds_per_image", *class_names])
    for r in results:
        per_class = r.metrics.get("per_class_iou", {})
        writer.writerow([r.folder.path, r.spec.name, r.setting, r.spec.seed, r.spec.model.name,
                         "+".join(loss.name for loss in r.spec.loss), r.spec.data.dataset, r.metrics.get("trained_steps"),
                         r.parameters, r.metrics.get("mIoU"), r.metrics.get("pixel_accuracy"),
                         r.metrics.get("train_seconds"), r.metrics.get("validation_seconds_per_image"),
                         *(per_class.get(name) for name in class_names)])
    write_atomically(path, table.getvalue().encode())


def _training_curve(folder: RunFolder) -> list[tuple[int, float]]:
    points = []
    for log in sorted(folder.logs.glob("csv/version_*/metrics.csv")):
        with open(log) as file:
            points += [(int(row["step"]), float(row["train/loss"])) for row in csv.DictReader(file) if row.get("train/loss")]
    return sorted(points)


def setting_labels(rows: list[dict]) -> list[str]:
    """A label per setting: its name, and where several settings share the name, the keys in which
    each differs from the others (`quickstart optimizer.lr=0.002`)."""
    flat = [flatten(to_table(attrs.evolve(row["spec"], seed=0))) for row in rows]
    labels = []
    for row, mine in zip(rows, flat):
        namesakes = [other for other, r in zip(flat, rows) if r is not row and r["name"] == row["name"]]
        keys = sorted({key for other in namesakes for key in mine.keys() | other.keys() if mine.get(key) != other.get(key)})
        labels.append(" ".join([row["name"], *(f"{key}={mine.get(key, '-')}" for key in keys[:3])])
                      + (" ..." if len(keys) > 3 else ""))
    return labels


def write_plot(results: list[RunResult], rows: list[dict], path: Path) -> list[Path]:
    """mIoU per setting with error bars, and every run's training-loss curve; returns the run
    folders that have no loss curve to draw (no CSV log)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (scores, curves) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    positions = range(len(rows))
    scores.errorbar(positions, [r["mIoU"] for r in rows], yerr=[r["mIoU_std"] for r in rows], fmt="o", capsize=4)
    scores.set_xticks(list(positions), [f"{label}\n(n={r['runs']})" for label, r in zip(setting_labels(rows), rows)],
                      rotation=30, ha="right", fontsize=8)
    scores.set_ylabel("validation mIoU (mean ± std over seeds)")
    labels = dict(zip((r["setting"] for r in rows), setting_labels(rows)))
    without_curve = []
    for result in results:
        curve = _training_curve(result.folder)
        if curve:
            curves.plot(*zip(*curve), label=f"{labels[result.setting]} seed {result.spec.seed}", linewidth=1)
        else:
            without_curve.append(result.folder.path)
    curves.set_xlabel("step")
    curves.set_ylabel("training loss")
    if curves.lines:
        curves.legend(fontsize=7)
    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    pyplot.close(figure)
    return without_curve


def write_study_plot(rows: list[dict], path: Path) -> None:
    """Per published row with reproduced runs: the published mean (and best) beside the reproduced
    mean ± std, one line of the figure per row."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = [row for row in rows if row["runs"]] or rows
    figure, axes = pyplot.subplots(figsize=(9, 1.2 + 0.32 * len(shown)))
    positions = list(range(len(shown)))[::-1]
    axes.scatter([row["published_mean"] for row in shown], positions, marker="D", color="black",
                 label="published mean of 3 runs", zorder=3)
    axes.scatter([row["published_best"] for row in shown], positions, marker="|", s=120, color="grey",
                 label="published best run", zorder=3)
    reproduced = [(row, y) for row, y in zip(shown, positions) if row["runs"]]
    if reproduced:
        axes.errorbar([row["mean"] for row, _ in reproduced], [y for _, y in reproduced],
                      xerr=[row["std"] for row, _ in reproduced], fmt="o", color="tab:blue", capsize=3,
                      label="reproduced mean ± std (n runs)", zorder=4)
        for row, y in reproduced:
            axes.annotate(f"n={row['runs']}", (row["mean"], y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    axes.set_yticks(positions, [f"{row['dataset']}: {row['label']}" for row in shown], fontsize=7)
    axes.set_xlabel("mIoU (%)")
    axes.legend(fontsize=7, loc="lower right")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    write_figure(figure, path, dpi=100)
    pyplot.close(figure)


def published_rows(manifest: Path, patterns) -> list[dict]:
    """Per released checkpoint of a manifest of them (specs/published/checkpoints.toml): its upstream's
    published mIoU and segrun's evaluations of it among the files of `patterns` (what `segrun eval
    FILE --spec SPEC` writes), matched by the checkpoint's name and the spec; in percent."""
    evaluations = []
    for pattern in patterns:
        for match in sorted(glob.glob(str(pattern))) or [str(pattern)]:
            try:
                evaluations.append(json.loads(Path(match).read_text()))
            except (OSError, ValueError) as error:
                print(f"segrun: warning: {match}: not an evaluation file ({type(error).__name__}); left out",
                      file=sys.stderr)
    rows = []
    for row in load_checkpoint_manifest(manifest):
        spec = (Path(manifest).parent / row.spec).resolve()
        scores = [100 * found["mIoU"] for found in evaluations
                  if isinstance(found, dict) and {"checkpoint", "spec", "mIoU"} <= found.keys() and
                  Path(found["checkpoint"]).name == row.file and Path(found["spec"]).resolve() == spec]
        rows.append({"file": row.file, "spec": row.spec, "published": row.published, "source": row.source,
                     "evaluated": scores[-1] if scores else None})
    return rows


def format_published_table(rows: list[dict]) -> str:
    width = max(len(row["file"]) for row in rows)
    header = f"{'released checkpoint':<{width}} {'published':>9} {'segrun':>7} {'difference':>10}  spec"
    lines = [header, "-" * len(header)]
    for row in rows:
        evaluated = f"{row['evaluated']:7.2f}" if row["evaluated"] is not None else f"{'-':>7}"
        difference = f"{row['evaluated'] - row['published']:+10.2f}" if row["evaluated"] is not None else " " * 10
        lines.append(f"{row['file']:<{width}} {row['published']:9.2f} {evaluated} {difference}  {row['spec']}")
    return "\n".join(lines)
