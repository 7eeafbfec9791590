"""Build script. Metadata lives in pyproject.toml; this file exists so the C++/CUDA
extension in csrc/ can be added as an ext_module without changing how segrun installs."""
from setuptools import setup

setup()
