"""Published checkpoint layouts, written by the tests, load back into segrun models."""
import hashlib
from pathlib import PurePosixPath

import pytest
import torch

from segrun import models
from segrun.errors import UserError
from segrun.models.weights import load_init, load_pretrained
from segrun.run_folder import init_checkpoint
from segrun.spec import loads


def small(name="hrnet_ocr", num_classes=3, backbone="hrnet_w18_small", seed=0):
    torch.manual_seed(seed)
    return models.create(name, num_classes, backbone=backbone)


def same_tensors(a, b, prefix=""):
    state_b = b.state_dict()
    return all(torch.equal(value, state_b[key]) for key, value in a.state_dict().items() if key.startswith(prefix))


def test_official_hrnet_imagenet_layout_loads_the_backbone(tmp_path, capsys):
    source = small(seed=1)
    state = {key.removeprefix("backbone."): value for key, value in source.state_dict().items() if key.startswith("backbone.")}
    state["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 16, 1, 1)  # the classification head
    state["classifier.weight"] = torch.zeros(1000, 2048)
    torch.save(state, tmp_path / "hrnetv2_imagenet_pretrained.pth")

    target = small(seed=2)
    summary = load_pretrained(target, tmp_path / "hrnetv2_imagenet_pretrained.pth")
    assert same_tensors(source, target, "backbone.")
    assert not same_tensors(source, target, "ocr.")
    assert "unexpected: classifier.weight, incre_modules.0.0.conv1.weight" in summary
    assert "\n" not in summary and summary.startswith("pretrained: ")


def test_nvidia_mscale_layout_with_prefixes_and_last_layer(tmp_path):
    source = small("hrnet_ocr_ms", num_classes=19, seed=1)
    state = {}
    for key, value in source.state_dict().items():
        key = key.replace("ocr.aux_head.", "last_layer.")
        state[f"module.{key}"] = value
    torch.save({"state_dict": state, "epoch": 100}, tmp_path / "mapillary_ocrnet.HRNet_Mscale_fast-rattlesnake.pth")

    target = small("hrnet_ocr_ms", num_classes=19, seed=2)
    summary = load_pretrained(target, tmp_path / "mapillary_ocrnet.HRNet_Mscale_fast-rattlesnake.pth")
    assert same_tensors(source, target)
    assert "missing: none; unexpected: none" in summary


def test_backbone_of_another_width_is_an_error(tmp_path):
    torch.save(small(backbone="hrnet_w18_small").state_dict(), tmp_path / "w18small.pth")
    with pytest.raises(UserError, match=r"w18small\.pth: .* has shape .* another backbone than model\.backbone"):
        load_pretrained(small(backbone="hrnet_w18_small_v2"), tmp_path / "w18small.pth")


def test_missing_or_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint file"):
        load_pretrained(small(), tmp_path / "absent.pth")
    (tmp_path / "garbage.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        load_pretrained(small(), tmp_path / "garbage.pth")
    # e.g. a Lightning checkpoint whose hyper-parameters are pickled objects: named, not unpickled
    torch.save({"state_dict": {}, "hyper_parameters": {"root": PurePosixPath("/data")}}, tmp_path / "objects.ckpt")
    with pytest.raises(UserError, match=r"objects\.ckpt: holds pickled Python objects besides tensors.*weights\.pth"):
        load_pretrained(small(), tmp_path / "objects.ckpt")


def test_init_from_a_checkpoint_with_another_class_count(tmp_path, minimal_spec):
    source = small("hrnet", num_classes=7, seed=1)
    state = {**{f"model.{k}": v for k, v in source.state_dict().items()}, "losses.0.class_weights": torch.ones(7)}
    torch.save({"state_dict": state}, tmp_path / "seven.ckpt")
    target = small("hrnet", num_classes=3, seed=2)
    start = init_checkpoint(loads(f"init = '{tmp_path / 'seven.ckpt'}'\n{minimal_spec}"))
    assert start.path == tmp_path / "seven.ckpt"
    assert start.sha256 == hashlib.sha256(start.path.read_bytes()).hexdigest()
    summary = load_init(target, start.path)
    assert same_tensors(source, target, "backbone.")
    assert torch.equal(target.head[0].weight, source.head[0].weight)
    assert "shape differs: head.3.bias, head.3.weight; not model weights, ignored: losses.0.class_weights" in summary
    with pytest.raises(UserError, match="holds no checkpoints"):
        init_checkpoint(loads(f"init = '{tmp_path}'\n{minimal_spec}"))


def test_hrnet_ocr_starts_from_an_hrnetv2_checkpoint_with_its_head_as_the_auxiliary_head(tmp_path):
    """As HRNet-Semantic-Segmentation's seg_hrnet_ocr does (last_layer -> aux_head): HRNetV2's head,
    conv-BN-ReLU-conv, has the auxiliary head's shapes."""
    source = small("hrnet", seed=1)
    state = {key.removeprefix("backbone.").replace("head.", "last_layer."): value for key, value in source.state_dict().items()}
    torch.save(state, tmp_path / "seg_hrnet.pth")
    target = small("hrnet_ocr", seed=2)
    summary = load_pretrained(target, tmp_path / "seg_hrnet.pth")
    assert "unexpected: none" in summary and same_tensors(source, target, "backbone.")
    aux, head = target.ocr.aux_head, source.head
    assert torch.equal(aux[0].weight, head[0].weight) and torch.equal(aux[1][0].running_var, head[1].running_var)
    assert torch.equal(aux[2].bias, head[3].bias)
