"""Configuration: the config file's root, the sections built from the registries, and the precedence of
flags, environment and file.
"""
