"""embkit's version, on the ground floor: what the package reports (``embkit.__version__``,
``embkit --version``), what the build reads (``pyproject.toml``), and what contact sheets and
previews name as the embkit that made them, without importing the package from below."""

__version__ = "0.1.0"
