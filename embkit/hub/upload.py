"""``embkit push``: upload an embedding as safetensors with a model card (``README.md``, built by
:mod:`.card`), in one commit: to the main branch, another branch (``revision``), or as a pull
request (``create_pr``); ``dry_run`` builds everything and uploads nothing.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from ..errors import HubError, read_error
from ..hashes import sha256
from ..hubclient import _hf, _hub_errors, quiet
from ..io import open_file, read_all
from .card import FAMILY_TAGS, model_card
from .download import _safe_stem, _write_safetensors

#: Where a contact sheet given to ``push`` lies in the repo.
SHEET_NAME = "contact_sheet.png"


@dataclass
class PushedFile:
    """One file of a push: its path in the repo, size and SHA-256."""

    path_in_repo: str
    size: int
    sha256: str


@dataclass
class PushResult:
    """What ``push`` did (or, with ``dry_run``, would do).

    ``url`` is the repo's URL (``None`` in a dry run), ``commit_url`` the commit's, ``pr_url`` the
    pull request's when one was opened; ``card`` is the text of the ``README.md`` uploaded.
    """

    repo_id: str
    revision: str | None
    create_pr: bool
    dry_run: bool
    files: list[PushedFile] = field(default_factory=list)
    card: str = ""
    url: str | None = None
    commit_url: str | None = None
    pr_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``embkit push --json`` prints."""
        return {
            "repo_id": self.repo_id, "revision": self.revision, "create_pr": self.create_pr, "dry_run": self.dry_run,
            "url": self.url, "commit_url": self.commit_url, "pr_url": self.pr_url,
            "files": [{"path_in_repo": f.path_in_repo, "size": f.size, "sha256": f.sha256} for f in self.files],
            "card": self.card,
        }


def push(path: str | os.PathLike[str], repo_id: str, *, token: str | None = None, private: bool = False,
         sheet: str | os.PathLike[str] | None = None, commit_message: str | None = None, revision: str | None = None,
         create_pr: bool = False, dry_run: bool = False, base_model: str | None = None,
         license: str | None = None) -> PushResult:
    """Upload an embedding as ``.safetensors`` (converted first when it is another format) with a
    model card ``README.md`` (see :mod:`embkit.hub.card`) and the verify contact sheet when
    ``sheet`` is given, in one commit. Creates the repo when needed.

    ``revision`` is the branch to commit to (created from main when missing; default main).
    ``create_pr`` opens a pull request against it instead of committing there. ``dry_run`` reads,
    converts and builds the card, and returns what would be uploaded without contacting the Hub.
    ``base_model`` and ``license`` override the card's defaults (the family's base model and its
    license).
    """
    hf = _hf()
    path = os.fspath(path)
    loaded = open_file(path)
    embs = read_all(path)
    with tempfile.TemporaryDirectory(prefix="embkit-push-") as tmp:
        if loaded.container == "safetensors" and loaded.pair is None:  # a diffusers SDXL pair goes up as one file
            upload, name = path, os.path.basename(path)
        else:
            if len(embs) != 1:
                raise HubError(f"holds {len(embs)} embeddings; convert them to separate safetensors files and push each", path=path)
            named = loaded.container == "folder" or loaded.pair is not None  # learned_embeds*: the token says more
            stem = _safe_stem(embs[0].name if named else os.path.splitext(os.path.basename(path))[0])
            name = stem + ".safetensors"
            upload = _write_safetensors(embs[0], os.path.join(tmp, name), False)
            embs = read_all(upload)
        with open(upload, "rb") as fh:
            data = fh.read()
        sheet_bytes = None
        if sheet is not None:
            try:
                with open(sheet, "rb") as fh:
                    sheet_bytes = fh.read()
            except OSError as exc:  # a missing sheet is a MissingFileError, as any missing input
                raise read_error(exc, os.fspath(sheet)) from None
        card = model_card(embs, name, data, source=path if upload != path else None, sheet=SHEET_NAME if sheet is not None else None,
                          repo_id=repo_id, base_model=base_model, license=license)
        contents = {name: data, "README.md": card.encode("utf-8")}
        if sheet_bytes is not None:
            contents[SHEET_NAME] = sheet_bytes
    result = PushResult(repo_id=repo_id, revision=revision, create_pr=create_pr, dry_run=dry_run, card=card,
                        files=[PushedFile(p, len(b), sha256(b)) for p, b in contents.items()])
    if dry_run:
        return result
    ops = [hf.CommitOperationAdd(path_in_repo=p, path_or_fileobj=b) for p, b in contents.items()]
    api = hf.HfApi(token=token)
    with quiet(), _hub_errors(repo_id, revision, name):
        result.url = str(api.create_repo(repo_id, private=private, exist_ok=True))
        if revision is not None and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.create_commit(repo_id, operations=ops, commit_message=commit_message or f"Upload {name} with embkit",
                                 revision=revision, create_pr=create_pr)
    result.commit_url = getattr(info, "commit_url", None)
    result.pr_url = getattr(info, "pr_url", None)
    return result


__all__ = ["push", "PushResult", "PushedFile", "SHEET_NAME", "FAMILY_TAGS"]
