"""The spec's machine-dependent choices ("auto") turned into what this machine runs. A run is
hashed, written and compared by its resolved spec, so two runs with the same folder name ran the
same recipe."""
import attrs
import torch

from segrun.errors import UserError
from segrun.spec import Spec
from segrun.spec.schema import TrainerSpec


def training_device(trainer: TrainerSpec) -> str:
    if trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def resolved_memory_format(trainer: TrainerSpec) -> str:
    """memory_format with "auto" replaced: channels_last on CUDA, contiguous on the CPU."""
    if trainer.memory_format != "auto":
        return trainer.memory_format
    return "channels_last" if training_device(trainer) == "cuda" else "contiguous"


def resolve_trainer(trainer: TrainerSpec, where: str = "trainer") -> TrainerSpec:
    """precision and memory_format with "auto" replaced: bf16-mixed (16-mixed on GPUs without
    bf16) and channels_last on CUDA; 32 and contiguous on the CPU. fp16 on the CPU is refused."""
    device = training_device(trainer)
    precision = trainer.precision
    if precision == "auto":
        if device == "cuda":
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        else:
            precision = "32"
    elif precision == "16-mixed" and device == "cpu":
        raise UserError(f'{where}.precision = "16-mixed" on the CPU: fp16 autocast there is emulated, an HRNet-W48 '
                        'step took 95 s instead of 1.2 s in float32 on this project\'s CPU machine; use "bf16-mixed" '
                        '(0.7 s) or "32", or "auto"')
    return attrs.evolve(trainer, precision=precision, memory_format=resolved_memory_format(trainer))


def check_devices(trainer: TrainerSpec, where: str) -> None:
    """One line, led by `where` (the spec), for a spec that asks for GPUs this machine does not have
    (before anything is built: Lightning would say it in a traceback after the run folder is made)."""
    if trainer.accelerator not in ("gpu", "cuda"):
        return
    have = torch.cuda.device_count()
    want = trainer.devices if isinstance(trainer.devices, int) and trainer.devices > 0 else 1
    if have < want:
        raise UserError(f'{where}: trainer.accelerator = "{trainer.accelerator}" with {want} device(s), but this '
                        f"machine has {have} CUDA GPU(s); train where they are (segrun submit sends it to SLURM), try it small here "
                        'with --smoke, or set trainer.accelerator="cpu" trainer.devices=1 trainer.strategy="auto"')


def resolve(spec: Spec) -> Spec:
    return attrs.evolve(spec, trainer=resolve_trainer(spec.trainer))


def describe(spec: Spec, resolved: Spec) -> str:
    """One line saying what "auto" became, as printed when a run starts."""
    parts = []
    for key in ("precision", "memory_format"):
        asked, chosen = getattr(spec.trainer, key), getattr(resolved.trainer, key)
        parts.append(f"{key} {chosen}" + (f" (from {asked})" if asked != chosen else ""))
    parts.append(f"compile {'on' if resolved.trainer.compile else 'off'}")
    return f"trainer on {training_device(resolved.trainer)}: " + ", ".join(parts)


def eval_precision(trainer: TrainerSpec) -> str:
    """The precision to evaluate a run in here: its training precision, but float32 where that
    was fp16 and this machine evaluates on the CPU (fp16 autocast there is emulated and slow)."""
    if trainer.precision == "16-mixed" and training_device(trainer) == "cpu":
        return "32"
    return resolve_trainer(trainer).precision
