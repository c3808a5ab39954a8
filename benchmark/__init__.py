"""seg-backdoor-bench: backdoor attacks and defenses on semantic segmentation models."""

__version__ = "0.1.0"
