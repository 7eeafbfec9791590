"""segmentation_models_pytorch's architectures as segrun models, one registry entry each.

`[model] name` is SMP's own architecture name (a key of smp.MODEL_ARCHITECTURES_MAPPING: unet,
segformer, upernet, ...) and `backbone` the encoder's: one of SMP's encoders (resnet101, mit_b2,
...) or any timm model with `tu-` before its name (tu-convnext_tiny). Encoder weights are never
downloaded: SMP builds the encoder with random weights and `model.pretrained` loads a local file.
The other keys of `[model]` are the architecture's own keyword options (decoder_channels, ...).

An image whose height or width is not a multiple of 32 (the encoder's output stride, or an even
grid of DPT's 16-pixel patches), or smaller than the architecture takes (PAN: 256), is padded on the
bottom and right with zeros (the normalised mean) and the logits are cropped back, so every
architecture takes any size, as segrun's other models do.
"""
import inspect

import torch
import torch.nn.functional as F

from segrun.models.base import SegmentationModel

# The keys of smp.MODEL_ARCHITECTURES_MAPPING in SMP 0.6 (a test holds them to it). Named here so
# that importing segrun's registry does not import SMP, which a machine running only segrun's ops
# and benchmarks may not have.
ARCHITECTURES = ("unet", "unetplusplus", "manet", "linknet", "fpn", "pspnet", "deeplabv3", "deeplabv3plus", "pan",
                 "upernet", "segformer", "dpt")
TIMM_PREFIX = "tu-"
# the smallest side an architecture takes, smaller inputs padded up to it: PAN's feature pyramid
# attention pools its 1/16 features three times more, to at least 2 pixels from 256 up (at 1 pixel,
# torch.export's program would hold a guard on the size, and could not take every image size)
MINIMUM_SIZE = {"pan": 256}
# SMP's keyword arguments that segrun sets itself (the classes, no download, logits out, no image
# classification head), which a spec therefore does not name
_SET_BY_SEGRUN = ("self", "encoder_name", "encoder_weights", "classes", "in_channels", "activation", "aux_params",
                  "kwargs")


def encoder_names() -> list[str]:
    """SMP's own encoders (the `tu-` ones are any timm model, see is_encoder)."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def is_encoder(name: str) -> bool:
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.is_model(name.removeprefix(TIMM_PREFIX))
    return name in encoder_names()


def weights_to_fetch(encoder: str) -> str:
    """Where an SMP encoder's published weights are, for a spec whose model.pretrained file is not
    there (segrun downloads nothing)."""
    import segmentation_models_pytorch as smp

    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    if encoder.startswith(TIMM_PREFIX):
        return f"timm's weights of {encoder.removeprefix(TIMM_PREFIX)} (Hugging Face hub, timm/...)"
    if not settings:
        return f"the weights of encoder {encoder}"
    return " or ".join(f"{where['repo_id']} on the Hugging Face hub" for where in settings.values() if "repo_id" in where)


# (architecture, encoder, classes, options) -> the parameters its forward leaves unused, found
# once per process: a run builds its model again for testing, a chain for every stage
_UNUSED_PARAMETERS: dict[tuple, frozenset[str]] = {}


class SMPModel(SegmentationModel):
    """One SMP architecture (the subclass's `architecture`) with one output, "main"."""

    architecture: str

    def __init__(self, num_classes: int, backbone: str = "resnet50", align_corners: bool = False, **options):
        import segmentation_models_pytorch as smp

        super().__init__()
        self.align_corners = align_corners  # how inference rescales images for this model
        extra = {"dynamic_img_size": True} if self.architecture == "dpt" else {}  # a ViT at any patch grid
        on_meta = torch.empty(0).is_meta  # built for shapes only (segrun does, to count and match names)
        with torch.device("cpu"):  # some encoders read values while they are built (MiT's drop-path rates)
            self.network = smp.create_model(self.architecture, encoder_name=backbone, encoder_weights=None,
                                            classes=num_classes, **extra, **options)
        if on_meta:
            self.network.to("meta")
        # the multiple an input's sides are padded to: SMP's output stride, at least 32 (DPT's decoder
        # also needs an even patch grid), where SMP asks for one
        self.stride = max(self.network.encoder.output_stride, 32) if self.network.requires_divisible_input_shape else 1
        self.minimum_size = MINIMUM_SIZE.get(self.architecture, 1)
        self._freeze_unused((self.architecture, backbone, num_classes, repr(sorted(options.items()))))

    @classmethod
    def output_names(cls, **options) -> tuple[str, ...]:
        return ("main",)

    @classmethod
    def option_parameters(cls) -> list[inspect.Parameter]:
        """The architecture's own keyword options, as its SMP class declares them."""
        import segmentation_models_pytorch as smp

        parameters = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[cls.architecture].__init__).parameters.values()
        return [p for p in parameters if p.name not in _SET_BY_SEGRUN and p.kind is not p.VAR_KEYWORD]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        height, width = images.shape[-2:]
        # padded always (by 0 rows where the size fits): no branch on the size, for torch.export
        padded_height = max(height + -height % self.stride, self.minimum_size)
        padded_width = max(width + -width % self.stride, self.minimum_size)
        images = F.pad(images, (0, padded_width - width, 0, padded_height - height))
        logits = self.network(images)
        # cropped back by gathering rows and columns: a slice would be a view of the padded logits,
        # and torch.export would guard on whether it is the whole of them (no padding) or not
        rows, columns = (torch.arange(size, device=logits.device) for size in (height, width))
        return [logits.index_select(2, rows).index_select(3, columns)]

    def _freeze_unused(self, key: tuple) -> None:
        """Parameters the forward never uses (an encoder's stages below encoder_depth, a timm ViT's
        final norm and classifier) get requires_grad False: DDP, as the study's recipe trains, stops
        on parameters that receive no gradient. Found once per process and model `key` (not for a
        model built on the meta device, for shapes only)."""
        if any(parameter.is_meta for parameter in self.parameters()):
            return
        if key not in _UNUSED_PARAMETERS:
            _UNUSED_PARAMETERS[key] = self._unused_parameters()
        for name, parameter in self.named_parameters():
            if name in _UNUSED_PARAMETERS[key]:
                parameter.requires_grad_(False)

    def _unused_parameters(self) -> frozenset[str]:
        """Names of the parameters one training step on a small zero image gives no gradient; the
        model's weights, BatchNorm statistics and the random generators are as they were before."""
        training, buffers = self.training, {name: buffer.clone() for name, buffer in self.named_buffers()}
        self.train()
        with torch.random.fork_rng(devices=[]):  # the step draws nothing from the run's generators
            sum(output.sum() for output in self(torch.zeros(2, 3, 64, 64))).backward()
        unused = frozenset(name for name, parameter in self.named_parameters() if parameter.grad is None)
        for parameter in self.parameters():
            parameter.grad = None
        with torch.no_grad():  # BatchNorm's statistics as they were before the step
            for name, buffer in self.named_buffers():
                buffer.copy_(buffers[name])
        self.train(training)
        return unused

    @property
    def backbone(self) -> torch.nn.Module:  # as segrun's HRNet models name theirs (model.backbone_init)
        return self.network.encoder


MODELS = {name: type(f"SMP_{name}", (SMPModel,), {"architecture": name}) for name in ARCHITECTURES}
