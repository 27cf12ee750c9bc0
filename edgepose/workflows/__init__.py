"""Workflows: compose the libraries into the jobs the CLI runs; dataclasses in and out."""
