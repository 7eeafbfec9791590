"""The experiment spec: `load(path, overrides)` -> frozen `Spec`, or a one-line `SpecError`."""
from segrun.spec.loader import SpecError, dumps, load, loads, spec_hash
from segrun.spec.schema import (
    DataSpec,
    EvalSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    Spec,
    SyntheticData,
    TrainerSpec,
    TransformStep,
)

__all__ = [
    "DataSpec", "EvalSpec", "LossSpec", "ModelSpec", "OptimizerSpec", "ScheduleSpec", "Spec", "SpecError",
    "SyntheticData", "TrainerSpec", "TransformStep", "dumps", "load", "loads", "spec_hash",
]
