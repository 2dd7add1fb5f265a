"""The preview stage: a :class:`PreviewStep` loads the renderer once and renders batches of rows.

The same class runs in the local process (one instance) and in a Ray Data actor pool (one per
actor, each on its own GPU when ``num_gpus`` is set): it takes manifest rows and returns them with
``previews`` filled. It reads each embedding from its converted object, named as it will be
published (``converted[].filename``, so every host's trigger is the one the published file gets,
not the object's hash name), renders all of a batch's embeddings through one
:class:`embkit.diffusers.previews.PreviewRenderer` call (which applies them together and renders
several prompts per pipeline call), writes each PNG content-addressed to
``DIR/previews/ab/<sha256 of the PNG>.png``, and commits the updated rows as a shard.

A row already holding previews made with the same model and settings (its ``preview_key``) is
passed through; a row with nothing converted gets an empty list.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from typing import Any

from .manifest import normal_row

#: Folder of preview images under DIR.
PREVIEWS = "previews"


def preview_key(model: str | None, settings: Any) -> str:
    """A short fingerprint of what makes a preview (model and settings, not the device)."""
    text = json.dumps({"model": model, "settings": asdict(settings)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def wants_preview(row: dict, key: str, out: str | None = None) -> bool:
    """Whether the row still needs previews made with ``key`` (with ``out``, DIR: also when one of
    its images is gone)."""
    if not (row.get("preview_key") == key and row.get("previews") is not None):
        return True
    return out is not None and not all(os.path.exists(os.path.join(out, *p["path"].split("/"))) for p in row["previews"] if p["path"])


#: Rows per preview batch (one ``PreviewStep`` call, one Ray actor task): the renderer batches
#: the prompts of all their embeddings itself (``PreviewSettings.batch_size`` per pipeline call).
PREVIEW_ROWS = 64


class PreviewStep:
    """Renders previews for batches of manifest rows (see the module docstring)."""

    def __init__(self, out: str, model: str | None = None, device: str = "auto", settings: Any = None):
        from ..diffusers.previews import PreviewRenderer, PreviewSettings

        self.out = out
        self.settings = settings if settings is not None else PreviewSettings()
        self.key = preview_key(model, self.settings)
        # the model is loaded here, once for the life of this step (of its actor, on Ray)
        self.renderer = PreviewRenderer(model, device=device, settings=self.settings)

    def __call__(self, rows: list[dict]) -> list[dict]:
        from ..atomic_batch import BatchWriter
        from .shards import commit_shard

        rows = list(rows)
        todo: list[int] = []
        for i, row in enumerate(rows):
            if not wants_preview(row, self.key, self.out):
                continue
            if not row["converted"]:
                rows[i] = normal_row({**row, "preview_key": self.key, "previews": []})
            else:
                todo.append(i)
        if not todo:
            return rows
        embeddings, owners, entries = [], [], {i: [] for i in todo}
        for i in todo:
            for conv in rows[i]["converted"]:
                emb, why = self._embedding(conv)
                if emb is None:
                    entries[i].append(_entry(conv, conv["name"], None, skipped=why))
                else:
                    embeddings.append(emb)
                    owners.append((i, conv))
        previews = self.renderer.render(embeddings) if embeddings else []
        with BatchWriter(folders_by_syncfs=True) as writer:
            for (i, conv), p in zip(owners, previews):
                negative = bool(p.negative)
                if p.png is None:
                    entries[i].append(_entry(conv, p.trigger, negative, skipped=p.skipped or "not rendered"))
                    continue
                sha = hashlib.sha256(p.png).hexdigest()
                rel = f"{PREVIEWS}/{sha[:2]}/{sha}.png"
                target = os.path.join(self.out, *rel.split("/"))
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    writer.submit([(target, p.png)])
                entries[i].append(_entry(conv, p.trigger, negative, path=rel, sha256=sha))
            writer.finish()  # an existing image is the same bytes (its name is their hash)
        for i in todo:
            order = {(c["member"], c["name"]): n for n, c in enumerate(rows[i]["converted"])}
            done = sorted(entries[i], key=lambda e: order.get((e["member"], e["name"]), 0))
            rows[i] = normal_row({**rows[i], "preview_key": self.key, "previews": done})
        commit_shard(self.out, "preview", [rows[i] for i in todo])
        return rows

    def _embedding(self, conv: dict):
        """The converted embedding, read from its object's bytes under the name it is published
        as (the object is named by its hash; hosts trigger the published file by its name)."""
        from ..errors import EmbkitError
        from ..io import read

        try:
            with open(os.path.join(self.out, *conv["path"].split("/")), "rb") as fh:
                data = fh.read()
            return read(data, name=conv["filename"]), None
        except OSError as exc:
            return None, f"converted file unreadable: {exc.strerror or exc}"
        except EmbkitError as exc:
            return None, f"converted file unreadable: {exc.detail}"


def _entry(conv: dict, trigger: str, negative: bool | None, *, path: str | None = None, sha256: str | None = None, skipped: str | None = None) -> dict:
    return {"member": conv["member"], "name": conv["name"], "trigger": trigger, "negative": negative, "path": path, "sha256": sha256, "skipped": skipped}


__all__ = ["PreviewStep", "preview_key", "wants_preview", "PREVIEWS", "PREVIEW_ROWS"]
