"""`segrun export`: what segrun.load predicts, as an ONNX model or a torch.export program (.pt2)
for deployment. The graph takes float32 RGB images [N, 3, H, W] with values 0-255 (the spec's
normalisation is inside) of any height and width from 33 pixels up (66 where a 0.5x scale is
predicted, as hrnet_ocr_ms does: its coarsest features must be larger than one pixel, else the
program's shape checks refuse the image), and returns `labels` (int64
train ids [N, H, W]) and `scores` (float32 [N, classes, H, W]: mean probabilities, or summed
logits where the protocol sums them)."""
from pathlib import Path

import attrs
import torch
from torch import nn

from segrun.atomic_write import write_atomically
from segrun.errors import UserError
from segrun.ops.extension import pytorch_only
from segrun.predictor import PredictionModule, load

FORMATS = ("onnx", "pt2")


class LabelsAndScores(nn.Module):
    def __init__(self, prediction: PredictionModule):
        super().__init__()
        self.prediction = prediction

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.prediction(images)
        return scores.argmax(1), scores


class BinAveragePool2d(nn.Module):
    """nn.AdaptiveAvgPool2d as sums over an integral image, with the bins computed from the input's
    size in the graph. torch's ONNX translation of adaptive pooling fixes each bin to the size the
    model was traced at (a pyramid pooling module then computes wrong numbers, or fails, at any
    other size); this one holds for every size. Bin i of k over n pixels spans
    [floor(i n / k), ceil((i + 1) n / k)), as PyTorch's."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _pool(tensor: torch.Tensor, dim: int, bins: int) -> torch.Tensor:
        size = tensor.shape[dim]
        index = torch.arange(bins, device=tensor.device)
        starts, ends = index * size // bins, ((index + 1) * size + bins - 1) // bins
        integral = torch.cat([torch.zeros_like(tensor.narrow(dim, 0, 1)), tensor.cumsum(dim)], dim)
        sums = integral.index_select(dim, ends) - integral.index_select(dim, starts)
        shape = [1] * tensor.dim()
        shape[dim] = bins
        return sums / (ends - starts).to(tensor.dtype).view(shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        height, width = (features.shape[-2] if self.output_size[0] is None else self.output_size[0],
                         features.shape[-1] if self.output_size[1] is None else self.output_size[1])
        return self._pool(self._pool(features, -2, height), -1, width)


def with_exportable_pooling(module: nn.Module) -> nn.Module:
    """`module` with every nn.AdaptiveAvgPool2d to more than one value replaced by BinAveragePool2d
    (global pooling translates to ONNX as it is)."""
    for name, child in module.named_children():
        if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size not in (1, (1, 1)):
            setattr(module, name, BinAveragePool2d(child.output_size))
        else:
            with_exportable_pooling(child)
    return module


def exported_program(prediction: PredictionModule) -> torch.export.ExportedProgram:
    """The program of `prediction` (on the CPU) for any batch size, height and width, made of
    PyTorch's own ops only (segrun's compiled ops are traced as their PyTorch implementations;
    adaptive pooling as BinAveragePool2d). `prediction` is changed in place."""
    # batch 2: a batch of 1 would be fixed at 1; large enough that even a 0.5x scale's coarsest
    # feature map has more than one row and column, where export would otherwise specialise
    example = torch.randint(0, 256, (2, 3, 192, 256)).float()
    dynamic = torch.export.Dim.DYNAMIC  # the bounds are what the model's resizes allow, found by export
    with torch.no_grad(), pytorch_only():
        return torch.export.export(LabelsAndScores(with_exportable_pooling(prediction)).eval(), (example,),
                                   dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},))


def name_dimensions(path: Path) -> None:
    """Name the ONNX graph's free dimensions after what they are (batch, height, width) instead of
    the exporter's symbols (s34, s14, ...), everywhere in the graph, as onnxruntime then shows them."""
    import onnx

    model = onnx.load(str(path))
    images = model.graph.input[0].type.tensor_type.shape.dim
    names = {images[axis].dim_param: name for axis, name in ((0, "batch"), (2, "height"), (3, "width"))
             if images[axis].dim_param}
    for value in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for dimension in value.type.tensor_type.shape.dim:
            if dimension.dim_param in names:
                dimension.dim_param = names[dimension.dim_param]
    write_atomically(path, model.SerializeToString())


def export(source, out: Path, output_format: str = "onnx", spec=None, overrides=(), **options) -> Path:
    """Export what segrun.load(source, spec, overrides, **options) predicts to `out`. Sliding windows
    are left out (their number depends on the image size): the graph predicts whole images."""
    if output_format not in FORMATS:
        raise UserError(f"--format {output_format}: expected one of {', '.join(FORMATS)}")
    predictor = load(source, spec, overrides, device="cpu", **options)
    prediction = predictor.module
    if prediction.options.sliding is not None:
        print(f"sliding windows {prediction.options.sliding[0]}x{prediction.options.sliding[1]} left out: the exported "
              "model predicts whole images")
        prediction.options = attrs.evolve(prediction.options, sliding=None)
    program = exported_program(prediction)
    out.parent.mkdir(parents=True, exist_ok=True)
    if output_format == "pt2":
        torch.export.save(program, out)
    else:
        try:
            import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
        except ImportError:
            raise UserError("--format onnx needs onnx and onnxscript: pip install -e \".[export]\"") from None
        torch.onnx.export(program, f=out, input_names=["images"], output_names=["labels", "scores"],
                          external_data=False, verbose=False)
        name_dimensions(out)
    print(f"{out}: {predictor.spec.model.name} ({output_format}), images float32 [N, 3, H, W] 0-255 RGB in, "
          f"labels [N, H, W] and scores [N, {len(predictor.class_names)}, H, W] out")
    return out
