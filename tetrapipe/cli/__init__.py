"""The `tetrapipe` command line: argument parsing only; the work is in the layers below."""
