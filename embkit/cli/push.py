"""``embkit push PATH REPO_ID``: upload an embedding as safetensors with a model card."""

from __future__ import annotations

import click

from . import output
from .options import renamed, shared


@click.command("push")
@click.argument("path", type=click.Path(readable=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--sheet", type=click.Path(exists=True, dir_okay=False), help="A verify contact sheet PNG to show on the card.")
@click.option("--message", help="Commit message.")
@renamed("-m", "--message", "message")
@click.option("--revision", help="Branch to commit to (created from main when missing; default: main).")
@click.option("--create-pr", is_flag=True, help="Open a pull request (against --revision, or main) instead of committing.")
@click.option("--dry-run", is_flag=True, help="Convert and build the card, upload nothing (no token needed); --json shows the card.")
@click.option("--base-model", help="The card's base_model (default: the family's base model repo).")
@click.option("--license", "license_", metavar="ID", help="The card's license, a Hub license id (default: the base model's).")
@click.option("--token", help="Hugging Face write token (default: HF_TOKEN or the one saved by `hf auth login`).")
@shared("Print a JSON object: files, URLs, and the card's text.")
def cli(path: str, repo_id: str, private: bool, sheet: str | None, message: str | None, revision: str | None,
        create_pr: bool, dry_run: bool, base_model: str | None, license_: str | None, token: str | None, as_json: bool) -> None:
    """Upload PATH (converted to .safetensors when it is another format) and a README.md model card
    (trigger per host, family, vectors, hashes, how to load it, contact sheet) to the Hub repo
    REPO_ID in one commit, creating the repo when needed."""
    from .. import hub

    result = hub.push(path, repo_id, token=token, private=private, sheet=sheet, commit_message=message, revision=revision,
                      create_pr=create_pr, dry_run=dry_run, base_model=base_model, license=license_)
    if as_json:
        output.print_json(result.to_dict())
        return
    if output.MODE.quiet:
        return
    files = ", ".join(f.path_in_repo for f in result.files)
    if result.dry_run:
        output.info(f"dry run: would push {output.escape(files)} to {output.escape(repo_id)}"
                    + (f" ({'a pull request against ' if create_pr else 'branch '}{output.escape(revision or 'main')})" if revision or create_pr else ""))
    elif result.pr_url:
        output.info(f"pushed {output.escape(files)} → pull request {output.escape(result.pr_url)}")
    else:
        output.info(f"pushed {output.escape(path)} → {output.escape(result.url or repo_id)}"
                    + (f" (branch {output.escape(revision)})" if revision else ""))
