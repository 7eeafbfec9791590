"""How a command ends: a user error prints one line and exits with status 2; a stop on a
scheduler's signal prints one line and exits with the status segrun.runner gives it; Ctrl-C prints
one line and exits with status 130."""
import sys

from segrun.errors import Stopped, UserError


def run_as_command(function, *args, **kwargs) -> int:
    """Call function(*args, **kwargs) as the command line does: a user error, a stop on a signal and
    Ctrl-C each end as one line on stderr; returns the exit status (0 when it returned)."""
    try:
        function(*args, **kwargs)
    except UserError as error:
        print(f"segrun: error: {error}", file=sys.stderr)
        return 2
    except Stopped as stopped:  # a scheduler's signal; training has written its checkpoint by now
        if str(stopped):
            print(f"segrun: {stopped}", file=sys.stderr)
        return stopped.exit_status
    except KeyboardInterrupt as interruption:  # Ctrl-C; training has written its checkpoint by now
        print(f"segrun: interrupted{f': {interruption}' if str(interruption) else ''}", file=sys.stderr)
        return 130
    return 0


def import_problem() -> str | None:
    """One line for a torch, torchvision or timm that does not import (a torchvision built for
    another torch ends in "operator torchvision::nms does not exist"), or None."""
    import importlib
    from importlib import metadata

    for module in ("torch", "torchvision", "timm"):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 (any failure to import is this one line)
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
            versions = {name: _version(metadata, name) for name in ("torch", "torchvision", "timm")}
            line = f"importing {module} failed ({first}); installed: " + ", ".join(
                f"{name} {version}" for name, version in versions.items())
            torch_version, vision_version = versions["torch"].split("."), versions["torchvision"]
            if module != "timm" and torch_version[0] == "2" and len(torch_version) > 1 and torch_version[1].isdigit():
                pair = f"0.{int(torch_version[1]) + 15}"
                if not vision_version.startswith(f"{pair}."):
                    line += (f"; torch {versions['torch']} goes with torchvision {pair}: pip install "
                             f"'torchvision=={pair}.*'")
            return line + "; then run segrun doctor"
    return None


def _version(metadata, name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
