"""The library: an SQLite registry of a user's embedding files.

    >>> from embkit import Library
    >>> with Library() as lib:                      # $EMBKIT_LIBRARY or the user data folder
    ...     lib.scan(["~/stable-diffusion-webui/embeddings"])
    ...     lib.search(family="sdxl", name="*neg*")

Modules: :mod:`.schema` (database file, versioned schema, migrations), :mod:`.extract` (one file →
rows), :mod:`.scan` (walk, incremental compare, parallel read, batched writes), :mod:`.queries`
(search, lookup, duplicates), :mod:`.conflicts` (trigger-name conflicts), :mod:`.previews` (the
pictures beside files), :mod:`.gallery` and :mod:`.gallery_page` (the static site), :mod:`.core`
(the class).
"""

from .core import CheckResult, Library, LoadReport
from .previews import PreviewRecord
from .queries import Entry, FileError, Group, SlotRecord
from .scan import ScanReport

__all__ = ["Library", "Entry", "SlotRecord", "FileError", "Group", "ScanReport", "CheckResult", "LoadReport", "PreviewRecord"]
