"""What training a spec needs, checked without training (`segrun validate`)."""
from collections.abc import Iterator
from pathlib import Path

import torch

from segrun import build, models
from segrun.chain import load_chain, smoke_stage_overrides, stage_spec
from segrun.data import dataset_of, resolve_root
from segrun.errors import UserError, why_not_there
from segrun.models.weights import describe_start
from segrun.published import is_chain
from segrun.resolve import check_devices
from segrun.run_folder import init_checkpoint
from segrun.smoke import smoke_spec
from segrun.spec import Spec
from segrun.terminal import bar


def validate(path, overrides=(), read_data: bool = False, progress: bool = True, smoke: bool = False) -> Iterator[str]:
    """Report lines, one as each check passes: the spec loads (extends, overrides, pipelines), this
    machine has the devices it asks for, the files it names exist and fit its model, and its dataset
    is prepared (in which layout, and which pairs of the download it leaves out) or will be
    synthesised. A chain has each stage checked so (a later stage's `init`, the checkpoint of the
    stage before, is not there yet). With `read_data`, every image and label of both splits is
    opened and checked (see LabelledImages.faults), with a progress bar, and each bad file gets a
    line. With `smoke`, the spec's smoke run is checked (segrun.smoke). Raises UserError at the first
    check that fails (for the data: after all of its lines), after the lines of the checks before it."""
    path = Path(path)
    if is_chain(path):
        chain = load_chain(path)
        for index, stage in enumerate(chain.stage):
            stage_overrides = smoke_stage_overrides(chain, path, index, overrides) if smoke else overrides
            yield from _validate(f"{path} stage {index} ({stage.name})", stage_spec(chain, path, index, None,
                                                                                 stage_overrides), read_data, progress)
        return
    yield from _validate(str(path), smoke_spec(path, overrides) if smoke else build.load_spec(path, overrides),
                         read_data, progress)


def _validate(path: str, loaded: Spec, read_data: bool, progress: bool) -> Iterator[str]:
    yield (f"{path}: spec ok ({loaded.model.name}/{loaded.model.backbone}, "
           f"losses {', '.join(loss.name for loss in loaded.loss)})")
    check_devices(loaded.trainer, path)
    for key, file in (("model.pretrained", loaded.model.pretrained), ("init", loaded.init)):
        if file and not Path(file).exists():
            fetch = ""
            if key == "model.pretrained" and issubclass(models.MODELS[loaded.model.name], models.smp.SMPModel):
                fetch = (f"; segrun downloads no weights: fetch {models.smp.weights_to_fetch(loaded.model.backbone)} "
                         "and set model.pretrained to the file")
            raise UserError(f"{path}: {key}: {file}: {why_not_there(file)}{fetch}")
    yield from _starting_weights(loaded)
    root = resolve_root(loaded.data.root)
    if loaded.data.synthetic is not None and not root.exists():
        yield f"{root}: not there yet; the run will synthesise it ([data.synthetic])"
        return
    dataset = dataset_of(loaded.data)
    train, val = dataset(root, "train"), dataset(root, "val")
    yield f"{root}: {loaded.data.dataset} with {len(train)} train and {len(val)} val images; {train.describe_files()}"
    for split in (train, val):
        if split.left_out:
            yield f"{root}: {split.split} leaves out {len(split.left_out)}: {', '.join(split.left_out)}"
    if read_data:
        yield from _read_every_file(root, (train, val), progress)


def _read_every_file(root: Path, splits, progress: bool) -> Iterator[str]:
    faults = 0
    for split in splits:
        for index in bar(range(len(split)), f"reading {split.split}", "pair", progress):
            for fault in split.faults(index):
                faults += 1
                yield fault
    if faults:
        raise UserError(f"{root}: {faults} bad files (listed above); replace or remove them, then validate again")
    yield f"{root}: every image and label of {' and '.join(s.split for s in splits)} read; sizes and label values ok"


def _starting_weights(loaded: Spec) -> Iterator[str]:
    """What model.pretrained and init would load, each file read and matched against the spec's
    model (built without memory), as training reads them."""
    if not (loaded.model.pretrained or loaded.init):
        return
    with torch.device("meta"):  # shapes only
        network = build.model(loaded)
    if loaded.model.pretrained:
        yield describe_start(network, Path(loaded.model.pretrained), "pretrained", loaded.model.pretrained_skip or ())
    init = init_checkpoint(loaded)
    if init is not None:
        yield describe_start(network, init.path, "init")
