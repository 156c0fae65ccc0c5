"""mkdocs hooks: pages whose content is generated from the code at build time.

`<!-- cli-reference -->` in a page becomes the `--help` of every `ienet` command, read from
the argparse parser itself, so the CLI reference cannot drift from the CLI.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"


def cli_reference() -> str:
    from ienet_tf.cli.main import build_parser

    parser = build_parser()
    parts = ["## `ienet`", "", "```text", _help(parser), "```", ""]
    for action in parser._actions:  # argparse offers no public iterator over subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                parts += [f"## `ienet {name}`", "", "```text", _help(command), "```", ""]
    return "\n".join(parts)


def _help(parser: argparse.ArgumentParser) -> str:
    # argparse wraps to $COLUMNS: fix it, so the page does not depend on the building terminal.
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return parser.format_help().rstrip()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def on_page_markdown(markdown: str, **kwargs) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
