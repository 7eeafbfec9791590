"""segrun: reproducible semantic-segmentation experiments from TOML specs."""

from segrun.version import __version__

__all__ = ["__version__", "load"]


def load(source, spec=None, overrides=(), device=None, **options):
    """A trained model ready to predict images (segrun.predictor.load; imported on first use, so
    `import segrun` stays light)."""
    from segrun.predictor import load as load_predictor

    return load_predictor(source, spec, overrides, device, **options)
