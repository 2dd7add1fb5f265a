"""``embkit pull REPO_ID``: download embeddings from the Hugging Face Hub, read and validate them."""

from __future__ import annotations


import click

from ..hubclient import REPO_TYPES
from . import output
from .options import shared


@click.command("pull")
@click.argument("repo_id")
@click.option("--revision", help="Branch, tag or commit (default: main).")
@click.option("--repo-type", type=click.Choice(REPO_TYPES), default="model", show_default=True,
              help="Kind of Hub repo: embedding collections are also published as datasets.")
@click.option("--file", "filename", help="Only this file of the repo (path in the repo).")
@click.option("--include", "include", multiple=True, metavar="GLOB",
              help="Only embeddings whose path in the repo matches this glob (repeatable; `*` crosses folders).")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB", help="Leave out embeddings whose path matches this glob (repeatable).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), help="Copy (or convert) the files into this folder.")
@click.option("--library", "library", is_flag=True, help="Add the pulled embeddings to the embkit library.")
@click.option("--db", type=click.Path(dir_okay=False), help="Library database to add to (default: the user library).")
@click.option("--convert", is_flag=True, help="Write each embedding as .safetensors into the output folder instead of copying.")
@click.option("--overwrite", is_flag=True, help="Replace files in the output folder that differ from the pulled ones.")
@click.option("--token", envvar=None, help="Hugging Face token (default: HF_TOKEN or the one saved by `hf auth login`).")
@shared("Print a JSON list, one object per pulled file.")
def cli(repo_id: str, revision: str | None, repo_type: str, filename: str | None, include: tuple[str, ...],
        exclude: tuple[str, ...], out_dir: str | None, library: bool, db: str | None, convert: bool, overwrite: bool,
        token: str | None, as_json: bool) -> None:
    """Download the embeddings of a Hub repo through huggingface_hub's cache (works offline with
    HF_HUB_OFFLINE=1 once cached): sd-concepts-library folders, single files, or every embedding file
    of a model or dataset repo (--include/--exclude pick by path). Each is read and validated against
    its family; files of the repo that are no embedding (pictures, text) are left out. An output
    folder inside the Hugging Face cache (or holding it) is refused. Exit status: the rule of every
    folder walk (docs/cli.md): 0 when every file was read and passes, 7 for a validation error, a
    file that cannot be read its error's code (1 when codes differ, 5 when one is unsafe)."""
    from .. import hub

    if convert and out_dir is None:
        raise click.UsageError("--convert needs -o DIR")
    results = hub.pull(repo_id, revision=revision, filename=filename, repo_type=repo_type,
                       include=list(include) or None, exclude=list(exclude), out_dir=out_dir,
                       library=(db or True) if library else None, convert=convert, token=token,
                       overwrite=overwrite, progress=not as_json and output.show_progress())
    if as_json:
        output.print_json([r.to_dict() for r in results])
    else:
        for r in results:
            _print(r)
    from ..folder import walk_exit_code

    codes = [r.error.exit_code for r in results if r.error is not None]
    codes += [7 for r in results if any(f.get("severity") == "error" for f in r.findings)]
    code = walk_exit_code(codes, len(results))
    if code:
        raise SystemExit(code)


def _print(r) -> None:
    esc = output.escape
    if r.error is not None and not r.embeddings:  # could not be read
        output.error_line(f"{r.repo_id}/{r.filename}", r.error.to_dict())
        return
    for emb in r.embeddings:
        slots = ", ".join(f"{s} {a.shape[0]}×{a.shape[1]}" for s, a in emb.vectors.items())
        output.info(f"[bold]{esc(emb.name)}[/]  [cyan]{esc(r.format)}[/]  [green]{esc(emb.family)}[/]  {esc(slots)}")
    if r.error is None:
        output.info(f"  {esc(r.repo_id)}/{esc(r.filename)} @ {esc(r.commit[:10])} → {esc(r.path)}")
    else:  # read, but not written into -o: say which file, then why
        output.info(f"  {esc(r.repo_id)}/{esc(r.filename)} @ {esc(r.commit[:10])} not written")
        output.error_line(f"{r.repo_id}/{r.filename}", r.error.to_dict())
    for path in r.converted:
        output.info(f"  converted → {esc(path)}")
    notes = [f for f in r.findings if f.get("severity") == "info"]
    if notes:
        output.info(f"  [dim]{len(notes)} note(s): {esc(', '.join(sorted({str(f.get('code')) for f in notes})))} (--json shows them)[/]")
    for f in r.findings:
        sev = f.get("severity", "?")
        if sev == "info":
            continue
        colour = {"error": "red", "warning": "yellow"}.get(sev, "dim")
        output.info(f"  [{colour}]{esc(str(sev))}[/] {esc(str(f.get('code', '')))}: {esc(str(f.get('message', '')))}")
    for note in r.notes:
        output.warn(note)
