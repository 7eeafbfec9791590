"""`segrun doctor`: what this machine offers segrun."""
import argparse

from segrun.commands import Command


def _doctor(args: argparse.Namespace) -> None:
    from segrun.doctor import report

    print(report())


DOCTOR = Command(
    help="show torch, CUDA, devices, op backends and datasets found",
    description="Show torch, CUDA, devices, which backend each op uses and why, and datasets found.",
    handler=_doctor)
