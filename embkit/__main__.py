"""``python -m embkit`` works like ``embkit``."""

from .cli.main import main

main()
