"""Click commands: thin wrappers over the Python API, imported lazily by ``cli.py``."""
