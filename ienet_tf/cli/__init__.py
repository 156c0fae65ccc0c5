"""The `ienet` command line: `ienet <command> --help`."""

from ienet_tf.cli.main import main

__all__ = ["main"]
