"""`segrun bench data`: how many training images per second the spec's data pipeline delivers
(decode, the spec's train transforms, collate), on full-size synthetic scenes written in the
dataset's own layout, with 0 (in-process), 1 and N workers."""
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from benchmarks import timing
from segrun import build
from segrun.data import DATASETS
from segrun.data.transforms import build_pipeline


def images_per_second(dataset, batch_size: int, workers: int, samples: int) -> float:
    """Throughput after the first batch (which pays for starting the workers); at least two
    batches are timed."""
    samples = max(samples, 3 * batch_size)
    sampler = RandomSampler(dataset, replacement=True, num_samples=samples, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                        prefetch_factor=2 if workers > 0 else None)
    batches = iter(loader)
    next(batches)
    started, counted = time.perf_counter(), 0
    for images, _ in batches:
        counted += images.shape[0]
    return counted / (time.perf_counter() - started)


def run(spec_path: Path, workers=(0, 1, 2), images: int = 16, samples: int = 96, size=(1024, 2048),
        progress=print) -> dict:
    loaded = build.load_spec(spec_path)
    dataset_class = DATASETS[loaded.data.dataset]
    result = {**timing.header(torch.device("cpu")), "spec": str(spec_path), "dataset": loaded.data.dataset,
              "image_size": list(size), "distinct_images": images, "batch_size": loaded.data.batch_size,
              "pipeline": [step.name for step in loaded.data.train_pipeline], "data": []}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "data"
        dataset_class.synthesize(root, images, 1, size[0], size[1], 0, progress=False)
        dataset_class.prepare(root, progress=False)
        dataset = dataset_class(root, "train", build_pipeline(loaded.data.train_pipeline))
        for count in workers:
            rate = images_per_second(dataset, loaded.data.batch_size, count, samples)
            row = {"workers": count, "images_per_s": rate, "images_per_s_per_worker": rate / max(count, 1)}
            result["data"].append(row)
            progress(f"  {count} workers: {rate:6.2f} images/s ({row['images_per_s_per_worker']:.2f} per worker)")
    return result


def markdown(result: dict) -> str:
    lines = [f"# segrun bench data: {result['device']}", "",
             (f"torch {result['torch']}, segrun {result['segrun_commit']}, {result['date']}; {result['dataset']} "
              f"train pipeline of {result['spec']} ({', '.join(result['pipeline'])}) on "
              f"{result['distinct_images']} synthetic {result['image_size'][1]}x{result['image_size'][0]} PNG scenes, "
              f"batch {result['batch_size']}. 0 workers: in the training process."), "",
             "| workers | images/s | images/s per worker |", "| ---: | ---: | ---: |"]
    lines += [f"| {row['workers']} | {row['images_per_s']:.2f} | {row['images_per_s_per_worker']:.2f} |"
              for row in result["data"]]
    return "\n".join(lines) + "\n"
