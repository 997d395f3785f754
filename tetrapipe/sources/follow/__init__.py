"""The follow source: a file followed like `tail -F` across rotation, truncation and restarts, with an
atomic checkpoint.
"""
