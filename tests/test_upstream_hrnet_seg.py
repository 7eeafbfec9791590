"""HRNet-Semantic-Segmentation's files give in segrun what HRNet-Semantic-Segmentation's own code gives.

The references were computed with its code, not segrun's (tests/reference/hrnet_seg, described in
tests/reference/README.md): seg_hrnet.py of branch master and seg_hrnet_ocr.py of branch HRNet-OCR,
built through their configs at HRNet-W18-small-v1 widths with 19 classes, on weights made by the
seeded rule in weights.json, run on one image. Here the same weights are written as the released
files are (tools/train.py's FullModel: `model.` before every key, the loss beside them), loaded by
segrun's loader into the model of the published spec, and run on the same image; the outputs are
compared with upstream's: the model's 1/4-resolution logits, the logits at the input size (upstream's
evaluation resizes the 1/4 logits bilinearly, master with align_corners false, HRNet-OCR with its
config's true), and the classes.

Master's BatchNorm is InPlaceABN, which scales by |gamma| + 1e-5 where torch's BatchNorm scales by
gamma: segrun's loader takes a master file's gammas that way (segrun.models.weights), so the two agree
to float32 rounding, negative gammas included.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import seeded_weights
from segrun import build
from segrun.models.weights import load_trained

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "reference" / "hrnet_seg"
DESCRIBED = json.loads((REFERENCE / "weights.json").read_text())
SPECS = {"hrnet": REPO / "specs" / "published" / "hrnet_seg_cityscapes_hrnet.toml",
         "ocr": REPO / "specs" / "published" / "hrnet_seg_cityscapes_ocr.toml"}
RELEASED = {"hrnet": "hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth", "ocr": "hrnet_ocr_cs_8162_torch11.pth"}
BACKBONE = "hrnet_w18_small"  # the widths upstream was built with (weights.json: widths)

# The references are float32, so storage adds nothing: what is left is float32 rounding in another
# order of operations (measured: 0 for HRNet-OCR, 1.3e-5 for master in torch's BatchNorm terms, on
# logits within +-6.1).
TOLERANCE = 1e-4


def upstream_weights(part: str) -> dict[str, torch.Tensor]:
    """The weights upstream's model had, made again from weights.json's rule, in upstream's names."""
    rule, described = DESCRIBED["weights"], DESCRIBED[part]
    weights = seeded_weights(described["tensors"], rule["seed"], rule["conv_gain"], zero_mean_filters=True)
    floats = [tensor for tensor in weights.values() if tensor.is_floating_point()]
    assert sum(float(t.double().sum()) for t in floats) == pytest.approx(described["checksum_sum_of_float_tensors"])
    assert sum(float(t.double().abs().sum()) for t in floats) == pytest.approx(
        described["checksum_sum_of_abs_float_tensors"])
    return weights


def batchnorm_gammas(weights: dict) -> list[str]:
    return [key for key in weights if key.endswith(".weight") and key.removesuffix(".weight") + ".running_var" in weights]


def released_file(folder: Path, part: str, weights: dict) -> Path:
    """tools/train.py's layout: FullModel(model, loss).state_dict()."""
    path = folder / RELEASED[part]
    torch.save({**{f"model.{key}": value for key, value in weights.items()}, "loss.criterion.weight": torch.ones(19)},
               path)
    return path


def image() -> torch.Tensor:
    return torch.from_numpy(np.load(REFERENCE / "image.npy"))[None]


def segrun_outputs(part: str, path: Path) -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(what the loader said, the logits at 1/4 and at the input size in upstream's order ([logits] for
    HRNetV2, [aux, main] for OCR), the class scores of the spec's evaluation), segrun's model loading
    the file as `segrun eval FILE --spec SPECS[part]` does."""
    spec = build.load_spec(SPECS[part], [f"model.backbone={BACKBONE}"], pipelines=False)
    model = build.model(spec).eval()
    said = load_trained(model, path)
    quarter = []
    if part == "hrnet":
        model.head.register_forward_hook(lambda module, inputs, output: quarter.append([output]))
    else:  # OCRHead returns (logits, aux, OCR features)
        model.ocr.register_forward_hook(lambda module, inputs, output: quarter.append([output[1], output[0]]))
    with torch.no_grad():
        outputs = model(image())
        scores = build.predictor(spec.test)(model, image())[0]
    assert quarter, "segrun's model no longer calls the module the 1/4 logits are read from (model.head / model.ocr)"
    full = outputs if part == "hrnet" else [outputs[1], outputs[0]]
    return said, torch.cat(quarter[0]), torch.cat(full), scores


def upstream_outputs(part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's logits as its model returned them (1/4 of the input), and resized to the input as
    its evaluation (BaseDataset.inference) resizes them; [logits] or [aux, main]."""
    quarter = torch.from_numpy(np.load(REFERENCE / f"{part}_logits.npy"))
    quarter = quarter[None] if part == "hrnet" else quarter
    full = F.interpolate(quarter, size=image().shape[-2:], mode="bilinear",
                         align_corners=DESCRIBED[part]["inference_resize"]["align_corners"])
    return quarter, full


def assert_computes_what_upstream_computes(part: str, path: Path, tolerance: float) -> str:
    said, quarter, full, scores = segrun_outputs(part, path)
    expected_quarter, expected_full = upstream_outputs(part)
    assert quarter.shape == expected_quarter.shape and full.shape == expected_full.shape
    quarter_difference = float((quarter - expected_quarter).abs().max())
    full_difference = float((full - expected_full).abs().max())
    assert quarter_difference <= tolerance, f"logits at 1/4 differ by up to {quarter_difference:.3g}"
    assert full_difference <= tolerance, f"logits at the input size differ by up to {full_difference:.3g}"
    assert torch.equal(scores, full[-1]), "the spec's evaluation scores are not the main output's logits"

    upstream_classes = torch.from_numpy(np.load(REFERENCE / f"{part}_argmax.npy"))
    top2 = expected_full[-1].topk(2, dim=0).values
    decided = top2[0] - top2[1] > 2 * tolerance  # pixels whose class no allowed difference can change
    assert decided.float().mean() > 0.99
    assert torch.equal(expected_full[-1].argmax(0).byte()[decided], upstream_classes[decided])  # the file's own
    assert torch.equal(scores.argmax(0).byte()[decided], upstream_classes[decided])
    return said


def test_an_hrnet_ocr_file_computes_what_seg_hrnet_ocr_computes(tmp_path):
    path = released_file(tmp_path, "ocr", upstream_weights("ocr"))
    said = assert_computes_what_upstream_computes("ocr", path, TOLERANCE)
    assert "missing: none; unexpected: none; shape differs: none; not model weights, ignored: loss.criterion.weight" in said


def test_a_master_file_computes_what_seg_hrnet_computes(tmp_path):
    path = released_file(tmp_path, "hrnet", upstream_weights("hrnet"))
    said = assert_computes_what_upstream_computes("hrnet", path, TOLERANCE)
    assert "missing: none; unexpected: none; shape differs: none" in said
    assert "num_batches_tracked filled with 0" in said  # InPlaceABN keeps no counter


def test_a_master_file_with_negative_gammas_computes_what_seg_hrnet_computes(tmp_path):
    """Upstream's logits do not change when gammas change sign (checked bitwise when the reference was
    made), so the reference holds for this file too."""
    weights = upstream_weights("hrnet")
    for key in batchnorm_gammas(weights):
        weights[key][::2] *= -1
    said = assert_computes_what_upstream_computes("hrnet", released_file(tmp_path, "hrnet", weights), TOLERANCE)
    assert "BatchNorm weights of " in said and "taken as |weight| + 1e-05" in said
