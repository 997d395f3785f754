"""Transforms: verbs, pure, compiled once at load."""
