"""What training a spec needs, checked without training (`segrun validate`)."""
from collections.abc import Iterator
from pathlib import Path

from segrun import build
from segrun.data import DATASETS, resolve_root
from segrun.errors import UserError


def validate(path, overrides=()) -> Iterator[str]:
    """Report lines, one as each check passes: the spec loads (extends, overrides, pipelines), the
    files it names exist, and its dataset is prepared or will be synthesised. Raises UserError at the
    first check that fails, after the lines of the checks before it."""
    loaded = build.load_spec(path, overrides)
    yield (f"{path}: spec ok ({loaded.model.name}/{loaded.model.backbone}, "
           f"losses {', '.join(loss.name for loss in loaded.loss)})")
    for key, file in (("model.pretrained", loaded.model.pretrained), ("init", loaded.init)):
        if file and not Path(file).exists():
            raise UserError(f"{path}: {key}: no such file {file}")
    root = resolve_root(loaded.data.root)
    if loaded.data.synthetic is not None and not root.exists():
        yield f"{root}: not there yet; the run will synthesise it ([data.synthetic])"
        return
    dataset = DATASETS[loaded.data.dataset]
    counts = {split: len(dataset(root, split)) for split in ("train", "val")}
    yield f"{root}: {loaded.data.dataset} with {counts['train']} train and {counts['val']} val images, labels prepared"
