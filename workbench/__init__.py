"""workbench: decode, evaluate, consistency-test and cost LLMs from Jupyter notebooks."""

__version__ = "0.1.0"
