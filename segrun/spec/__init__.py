"""The experiment spec: `load(path, overrides)` -> frozen `Spec`, or a one-line `SpecError`.

This layer knows TOML and types only: it imports neither torch nor the rest of segrun. The checks
that need the registries (names, one loss per model output, loss options, pipelines) live in
segrun.build, whose `load_spec` is what commands call."""
from segrun.spec.loader import KeyProblem, SpecError, dumps, load, loads, spec_hash
from segrun.spec.schema import (
    DataSpec,
    EvalSpec,
    LossSpec,
    ModelSpec,
    OptimizerSpec,
    PredictionSpec,
    ScheduleSpec,
    Spec,
    SyntheticData,
    TestSpec,
    TrainerSpec,
    TransformStep,
)

__all__ = [
    "DataSpec", "EvalSpec", "KeyProblem", "LossSpec", "ModelSpec", "OptimizerSpec", "PredictionSpec", "ScheduleSpec", "Spec", "SpecError",
    "SyntheticData", "TestSpec", "TrainerSpec", "TransformStep", "dumps", "load", "loads", "spec_hash",
]
