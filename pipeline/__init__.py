"""tetrapipe's worker core: sources, decoding, the run loop, batching, commit and the CLI."""

__version__ = "0.1.0"
