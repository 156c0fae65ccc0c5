"""A griffe extension: read larq-style docstring sections as Google-style ones.

larq (and this package, modelled on it) writes `# Arguments` above an indented list of
`name: description` lines. mkdocstrings' Google parser reads the same list under `Args:`, so
the docstrings stay in larq's style and the API reference still gets its parameter tables.
"""

from __future__ import annotations

import re

import griffe

# A larq heading on its own line, at the docstring's indentation.
_SECTION = re.compile(r"^(\s*)# (Arguments|Returns|Raises|References|Example|Examples)\s*$", re.M)
_GOOGLE = {"Arguments": "Args"}


class LarqDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SECTION.sub(
                lambda m: f"{m.group(1)}{_GOOGLE.get(m.group(2), m.group(2))}:",
                obj.docstring.value,
            )
