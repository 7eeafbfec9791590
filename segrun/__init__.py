"""segrun: reproducible semantic-segmentation experiments from TOML specs."""

__version__ = "0.1.0"
