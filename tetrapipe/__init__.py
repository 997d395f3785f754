"""tetrapipe: a stream worker for Cilium Tetragon's events — one import package, layered bottom to top
(imports run downwards only; tests/test_layers.py checks it):

    logs, event -> rules -> transforms -> formats -> clients -> sources, sinks -> pipeline
    -> config -> service -> cli
"""

__version__ = "0.1.0"
