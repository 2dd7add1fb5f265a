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
    folder = _snapshot(repo_id, revision, MODEL_PATTERNS[include], token, progress)
    if not (os.path.isfile(os.path.join(folder, "model_index.json")) or os.path.isfile(os.path.join(folder, "text_encoder", "config.json"))):
        raise HubError(f"{repo_id}@{revision or 'main'}: not a diffusers model repo (no model_index.json or text_encoder/config.json)")
    return folder
