"""segrun export: the ONNX model run by onnxruntime and the torch.export program predict what
segrun.load predicts, at sizes other than the one exported with."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import segrun
from segrun import build
from segrun.cli import main
from segrun.data.image_io import read_rgb

MS_OCR = ["model.name=hrnet_ocr_ms", 'loss=[{name="ce"}, {name="ce"}, {name="ce"}, {name="ce"}]']


def agreement(labels: np.ndarray, expected: np.ndarray) -> float:
    assert labels.shape == expected.shape
    return float((labels == expected).mean())


def test_the_onnx_model_agrees_with_segrun_load(tiny_spec, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    path = tiny_spec(train_images=8, val_images=2, epochs=1)
    assert main([str(path), "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert main(["export", str(folder), "--out", str(tmp_path / "model.onnx")]) == 0

    predictor = segrun.load(folder)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert [output.shape for output in session.get_outputs()] == [["batch", "height", "width"],
                                                                   ["batch", 19, "height", "width"]]
    image = read_rgb(next((tmp_path / "data" / "leftImg8bit" / "val").rglob("*.png")))
    odd = np.ascontiguousarray(np.concatenate([image, image[:37]])[:, :99])  # 101x99: not the exported size
    smallest = np.ascontiguousarray(image[:33, :45])  # the smallest height the docs promise
    for picture in (image, odd, smallest):
        labels, scores = session.run(None, {"images": picture.transpose(2, 0, 1)[None].astype(np.float32)})
        assert scores.shape == (1, 19, *picture.shape[:2])
        np.testing.assert_allclose(scores[0], predictor.probabilities(picture), rtol=0, atol=1e-5)
        assert agreement(labels[0], predictor.predict(picture)) == 1.0


def test_ms_ocr_exports_its_scale_fusion_to_onnx_and_agrees_with_segrun_load(tiny_spec, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    path = tiny_spec()
    torch.manual_seed(0)
    torch.save(build.model(build.load_spec(path, MS_OCR)).state_dict(), tmp_path / "weights.pth")
    assert main(["export", str(tmp_path / "weights.pth"), *MS_OCR, "--spec", str(path), "--out",
                 str(tmp_path / "model.onnx")]) == 0

    predictor = segrun.load(tmp_path / "weights.pth", spec=path, overrides=MS_OCR)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for height, width in ((64, 128), (101, 99), (66, 67)):  # the exported size, another, the smallest promised
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        labels, scores = session.run(None, {"images": image.transpose(2, 0, 1)[None].astype(np.float32)})
        expected = predictor.probabilities(image)
        np.testing.assert_allclose(scores[0], expected, rtol=0, atol=1e-5)
        # every pixel whose two best classes are apart by more than the scores' float error agrees
        top2 = np.sort(expected, axis=0)[-2:]
        clear = (top2[1] - top2[0]) > 1e-5
        assert clear.mean() > 0.99 and (labels[0] == expected.argmax(0))[clear].all()


def test_ms_ocr_exports_its_scale_fusion_as_a_torch_export_program(tiny_spec, tmp_path):
    path = tiny_spec()
    torch.manual_seed(0)
    torch.save(build.model(build.load_spec(path, MS_OCR)).state_dict(), tmp_path / "weights.pth")
    out = tmp_path / "model.pt2"
    assert main(["export", str(tmp_path / "weights.pth"), *MS_OCR, "--spec", str(path), "--out", str(out),
                 "--format", "pt2"]) == 0

    predictor = segrun.load(tmp_path / "weights.pth", spec=path, overrides=MS_OCR)
    loaded = torch.export.load(out)
    assert "segrun" not in str(loaded.graph)  # PyTorch's ops only: it runs where segrun's library is not
    program = loaded.module()
    image = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    with torch.no_grad():
        labels, scores = program(torch.from_numpy(image).permute(2, 0, 1)[None].float())
    expected = predictor.probabilities(image)
    np.testing.assert_allclose(scores[0].numpy(), expected, rtol=0, atol=1e-5)
    assert agreement(labels[0].numpy(), expected.argmax(0)) == 1.0


def test_overrides_without_a_spec_are_refused(tmp_path, capsys):
    assert main(["export", str(tmp_path), "model.name=hrnet", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "overrides apply to --spec SPEC" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, derandomize=True)
@given(height=st.integers(1, 40), width=st.integers(1, 40),
       bins=st.tuples(st.integers(1, 8), st.one_of(st.none(), st.integers(1, 8))))
def test_bin_average_pooling_is_adaptive_average_pooling_at_any_size(height, width, bins):
    """What export puts in the place of nn.AdaptiveAvgPool2d: the same bins, the same averages."""
    from segrun.export import BinAveragePool2d

    features = torch.randn(2, 3, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(height))
    expected = torch.nn.AdaptiveAvgPool2d(bins)(features)
    torch.testing.assert_close(BinAveragePool2d(bins)(features), expected, rtol=0, atol=1e-12)
