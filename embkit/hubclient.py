"""The Hugging Face Hub client embkit uses everywhere: the optional import, the translation of
huggingface_hub's errors into :class:`~embkit.errors.HubError`, quiet progress, snapshot downloads,
and model repos as local folders (for validation and rendering targets).

Everything goes through ``huggingface_hub`` (imported inside the functions, so ``import embkit``
stays cheap and the package stays optional): its cache under ``HF_HOME``, its token handling
(``HF_TOKEN`` or ``hf auth login``), its offline mode (``HF_HUB_OFFLINE=1``) and its resumable
downloads. No torch here, and nothing from the rest of embkit but its errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from .errors import EmbkitError, HubEntryNotFoundError, HubError, MissingDependencyError

#: What ``model_folder`` fetches of a diffusers repo, by ``include``.
MODEL_PATTERNS = {
    "config": ["model_index.json", "*/config.json", "tokenizer*/*", "scheduler/*"],
    "text_encoders": ["model_index.json", "*/config.json", "tokenizer*/*", "scheduler/*", "text_encoder*/*.safetensors"],
    # Sub-folder files only: a repo's root often holds multi-GB single-file checkpoints.
    "all": ["model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors"],
}

def _hf():
    try:
        import huggingface_hub
    except ImportError:
        raise MissingDependencyError("the Hub features need huggingface_hub: pip install huggingface_hub") from None
    return huggingface_hub


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str | None, filename: str | None = None) -> Iterator[None]:
    """Translate huggingface_hub and transport errors into HubError naming repo, revision and file."""
    hf = _hf()
    from huggingface_hub import errors as hfe

    rev = revision or "main"
    what = f"{repo_id}@{rev}" + (f" file {filename}" if filename else "")
    try:
        yield
    except EmbkitError:
        raise
    except getattr(hfe, "HFValidationError", ()) as exc:
        raise HubError(f"{repo_id!r} is not a valid Hub repo id ({_first_line(exc)})") from None
    except hfe.GatedRepoError as exc:
        status = _status(exc)
        raise HubError(f"{what}: the repo is gated (HTTP {status}); accept its conditions on the Hub, then log in "
                       "with `hf auth login` or set HF_TOKEN") from None
    except hfe.RevisionNotFoundError:
        raise HubError(f"{repo_id}: no revision {rev!r} (branch, tag or commit)") from None
    except hfe.RepositoryNotFoundError as exc:
        raise HubError(f"{repo_id}: repository not found (HTTP {_status(exc)}); check the name, or log in if it is private") from None
    # LocalEntryNotFoundError (and IncompleteSnapshotError) subclass EntryNotFoundError: test them first.
    except (hfe.LocalEntryNotFoundError, hfe.OfflineModeIsEnabled) as exc:
        # not in the cache: a FileNotFoundError, as huggingface_hub's own LocalEntryNotFoundError
        if _offline(hf):
            raise HubEntryNotFoundError(f"{what}: offline (HF_HUB_OFFLINE=1) and not in the cache {hf.constants.HF_HUB_CACHE}; "
                                        "run once with network access") from None
        raise HubEntryNotFoundError(f"{what}: cannot reach the Hub at {hf.constants.ENDPOINT} and not in the cache ({_first_line(exc)})") from None
    except (getattr(hfe, "RemoteEntryNotFoundError", hfe.EntryNotFoundError), hfe.EntryNotFoundError):
        raise HubEntryNotFoundError(f"{what}: no such file in the repo") from None
    except hfe.HfHubHTTPError as exc:
        status = _status(exc)
        hint = "; log in with `hf auth login` or set HF_TOKEN (a write token for push)" if status in (401, 403) else ""
        raise HubError(f"{what}: the Hub answered HTTP {status}: {_first_line(exc)}{hint}") from None
    except Exception as exc:
        # no network, DNS, a dropped connection (httpx or requests): a push met them as tracebacks
        if _is_transport_error(exc):
            raise HubError(f"{what}: cannot reach the Hub at {hf.constants.ENDPOINT} ({_first_line(exc)})") from None
        raise


def _status(exc: BaseException) -> int | str:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", "?")


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def _offline(hf) -> bool:
    constants = hf.constants
    return constants.is_offline_mode() if hasattr(constants, "is_offline_mode") else bool(constants.HF_HUB_OFFLINE)


def _is_transport_error(exc: BaseException) -> bool:
    """A dropped connection, a timeout, or the client's size check after a short body (httpx or
    requests, depending on the huggingface_hub version) -- not the Hub's own answers or offline mode."""
    from huggingface_hub import errors as hfe

    if isinstance(exc, (hfe.HfHubHTTPError, hfe.LocalEntryNotFoundError, hfe.OfflineModeIsEnabled)):
        return False
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"RemoteProtocolError", "ReadError", "TimeoutException", "ConnectError", "NetworkError", "TransportError",
                "ChunkedEncodingError", "ConnectionError", "ReadTimeout", "ProtocolError"}:
        return True
    return isinstance(exc, OSError) and "Consistency check failed" in str(exc)


#: The kinds of Hub repo ``pull`` reads: models, and datasets (where some embedding collections live).
REPO_TYPES = ("model", "dataset")


def _snapshot(repo_id: str, revision: str | None, patterns: list[str], token: str | None, progress: bool,
              ignore: list[str] | None = None, repo_type: str = "model") -> str:
    """snapshot_download of the matching files; an interrupted transfer becomes a HubError naming it."""
    hf = _hf()
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    kwargs = dict(repo_id=repo_id, revision=revision, allow_patterns=patterns, ignore_patterns=ignore, token=token,
                  repo_type=repo_type)
    with quiet(progress), _hub_errors(repo_id, revision):
        try:
            return hf.snapshot_download(**kwargs)
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            missing = _not_cached(hf, kwargs)
            names = ", ".join(missing) if missing else "a file"
            raise HubError(f"{repo_id}@{revision or 'main'}: download of {names} was interrupted "
                           f"({_first_line(exc)}); nothing partial was kept, run again to retry") from None


def list_files(repo_id: str, revision: str | None, token: str | None, repo_type: str = "model") -> list[str] | None:
    """Every file name of a repo at a revision, or None when the Hub cannot be asked (offline, an
    error: the download then reports it as usual)."""
    hf = _hf()
    try:
        with quiet(False):
            return list(hf.HfApi().list_repo_files(repo_id=repo_id, revision=revision, token=token, repo_type=repo_type))
    except Exception:  # noqa: BLE001  the listing is a precaution; the download says what is wrong
        return None


def _not_cached(hf, kwargs: dict) -> list[str]:
    """The files a dry run says are still missing from the cache (best effort, for the message)."""
    try:
        infos = hf.snapshot_download(**kwargs, dry_run=True)
        return [i.filename for i in infos if not i.is_cached]
    except Exception:  # the message is a courtesy: never hide the original error behind this one
        return []


@contextlib.contextmanager
def quiet(progress: bool = False) -> Iterator[None]:
    """Keep huggingface_hub quiet for the length of one embkit call, then restore what it was.

    The library never prints (DESIGN rule 6), yet huggingface_hub logs warnings on stderr while it
    works ("No files matched …", "Trying to resume download…" per retry) and draws tqdm bars: embkit
    reports the outcome itself as an error or a result. Its log level is raised to ERROR unless the
    user asked for a level with ``HF_HUB_VERBOSITY``; bars are drawn only when ``progress``. Both are
    put back afterwards, so a Python caller's own settings survive the call.
    """
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from huggingface_hub.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    lower = "HF_HUB_VERBOSITY" not in os.environ and level < logging.ERROR
    bars_off = are_progress_bars_disabled()
    if lower:
        hf_logging.set_verbosity(logging.ERROR)
    if not progress:
        disable_progress_bars()
    try:
        yield
    finally:
        if lower:
            hf_logging.set_verbosity(level)
        if not progress and not bars_off:
            enable_progress_bars()


# -- model repos ---------------------------------------------------------------------------------------
def model_folder(repo_id: str, revision: str | None = None, token: str | None = None, *, include: str = "config",
                 progress: bool = False) -> str:
    """A local folder for a diffusers model repo, through huggingface_hub's cache.

    ``include``: ``"config"`` (model_index, configs, tokenizers, scheduler: enough to validate against),
    ``"text_encoders"`` (also the text encoders' safetensors weights), or ``"all"`` (every sub-folder's
    json, txt and safetensors files: enough to build a pipeline).
    """
    if include not in MODEL_PATTERNS:
        raise ValueError(f"include must be one of {', '.join(MODEL_PATTERNS)}")
    # what no validation or render reads: the safety checker's and image encoders' folders
    folder = _snapshot(repo_id, revision, MODEL_PATTERNS[include], token, progress, ignore=[f"{c}/*" for c in RENDER_SKIP])
    if not (os.path.isfile(os.path.join(folder, "model_index.json")) or os.path.isfile(os.path.join(folder, "text_encoder", "config.json"))):
        raise HubError(f"{repo_id}@{revision or 'main'}: not a diffusers model repo (no model_index.json or text_encoder/config.json)")
    return folder


# -- single files ------------------------------------------------------------------------------------
def hub_file(repo_id: str, filenames: str | list[str], *, subfolder: str | None = None, revision: str | None = None,
             token: str | bool | None = None, cache_dir: str | os.PathLike | None = None, force_download: bool = False,
             local_files_only: bool = False, progress: bool = False) -> str:
    """The local path of one file of a Hub repo, through huggingface_hub's cache (``hf_hub_download``).

    ``filenames`` may list candidates, tried in order: a candidate the repo (or, offline or with
    ``local_files_only``, the cache) does not have is skipped, as diffusers' loaders fall back from
    ``learned_embeds.safetensors`` to ``learned_embeds.bin``. Any other failure, or none found,
    raises :class:`~embkit.errors.HubError` naming the repo, revision and files.
    """
    hf = _hf()
    from huggingface_hub import errors as hfe

    names = [filenames] if isinstance(filenames, str) else list(filenames)
    where = f"{subfolder}/" if subfolder else ""
    for name in names:
        last = name == names[-1]
        # the last try's error names every file tried: "learned_embeds.safetensors or learned_embeds.bin"
        shown = " or ".join(where + n for n in names) if last else where + name
        with quiet(progress), _hub_errors(repo_id, revision, shown):
            try:
                return hf.hf_hub_download(repo_id, name, subfolder=subfolder or None, revision=revision, token=token,
                                          cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only)
            except hfe.EntryNotFoundError:  # so are the remote one and LocalEntryNotFoundError (offline, not cached)
                if last:
                    raise
    raise HubError(f"{repo_id}: no file name to fetch")


# -- the local cache, offline ---------------------------------------------------------------------------
def cached_file(repo_id: str, filename: str) -> str | None:
    """The path of ``filename`` of ``repo_id`` in huggingface_hub's cache (its latest cached
    revision), or ``None`` when it is not cached or huggingface_hub is not installed. Never touches
    the network: what A1111, Forge and diffusers users already have on disk."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) else None


def cache_location() -> str | None:
    """huggingface_hub's cache folder (``HF_HUB_CACHE``, else ``$HF_HOME/hub``), or ``None`` without
    huggingface_hub; for messages that say where embkit looked."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return str(constants.HF_HUB_CACHE)


# -- what a render needs of a diffusers repo ---------------------------------------------------------------
#: Components a render never loads: their weights are not fetched.
RENDER_SKIP = ("safety_checker", "feature_extractor", "image_encoder")


def _is_weight(name: str) -> bool:
    return name.endswith(".safetensors") or (".safetensors.index." in name and name.endswith(".json"))


def _variant_of(filename: str) -> str | None:
    """``fp16`` for ``model.fp16.safetensors``, ``model.fp16-00001-of-00002.safetensors`` and
    ``model.safetensors.index.fp16.json``; ``None`` for the plain files (diffusers' naming)."""
    if ".safetensors.index." in filename:
        middle = filename.split(".safetensors.index.", 1)[1][: -len(".json")]
        return middle or None
    stem = filename[: -len(".safetensors")]
    parts = stem.split(".")
    return parts[-1].split("-")[0] if len(parts) > 1 else None


def select_render_files(files: list[str], variant: str | None) -> tuple[list[str], bool]:
    """Which of a diffusers repo's ``files`` a render loads, and whether any of them is ``variant``:
    ``model_index.json``, every config and tokenizer file, and per component folder one set of
    safetensors weights: the ``variant`` ones (``*.fp16.safetensors``, shards and index included) when
    that folder has them, else the plain ones, as diffusers' ``from_pretrained(variant=…)`` picks them
    (``pipeline_loading_utils.variant_compatible_siblings``). Root files (single-file checkpoints),
    other variants (``non_ema``), ``.bin`` files and :data:`RENDER_SKIP` components are left out."""
    chosen = [f for f in files if f == "model_index.json" or ("/" in f and f.endswith((".json", ".txt", ".model")) and not _is_weight(f))]
    chosen = [f for f in chosen if f.split("/")[0] not in RENDER_SKIP]
    by_folder: dict[str, list[str]] = {}
    for f in files:
        if "/" in f and f.count("/") == 1 and _is_weight(f) and f.split("/")[0] not in RENDER_SKIP:
            by_folder.setdefault(f.split("/")[0], []).append(f)
    used_variant = False
    for folder, weights in sorted(by_folder.items()):
        wanted = [w for w in weights if variant is not None and _variant_of(w.split("/")[1]) == variant]
        if wanted:
            used_variant = True
        else:
            wanted = [w for w in weights if _variant_of(w.split("/")[1]) is None]
        chosen.extend(wanted)
    return sorted(set(chosen)), used_variant


def render_folder(repo_id: str, revision: str | None = None, token: str | None = None, *, variant: str | None = None,
                  progress: bool = False) -> tuple[str, bool]:
    """A local folder with what rendering with a diffusers model repo needs (:func:`select_render_files`),
    through huggingface_hub's cache; and whether ``variant`` files were taken. Offline, the cached
    snapshot is used as it is."""
    hf = _hf()
    try:
        with quiet(progress), _hub_errors(repo_id, revision):
            info = hf.HfApi().model_info(repo_id, revision=revision, token=token)
        files = [s.rfilename for s in info.siblings or []]
        revision = info.sha or revision
    except HubError:
        if not _offline(hf):
            raise
        folder = _snapshot(repo_id, revision, ["model_index.json"], token, progress)  # the cached snapshot, offline
        files = [os.path.relpath(os.path.join(r, n), folder).replace(os.sep, "/") for r, _, ns in os.walk(folder) for n in ns]
    if "model_index.json" not in files:
        raise HubError(f"{repo_id}@{revision or 'main'}: not a diffusers pipeline repo (no model_index.json)")
    chosen, used_variant = select_render_files(files, variant)
    return _snapshot(repo_id, revision, chosen, token, progress), used_variant
