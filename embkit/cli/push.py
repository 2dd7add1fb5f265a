"""``embkit push PATH REPO_ID``: upload an embedding as safetensors with a model card."""

from __future__ import annotations

import click

from . import output


@click.command("push")
@click.argument("path", type=click.Path(readable=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--sheet", type=click.Path(exists=True, dir_okay=False), help="A verify contact sheet PNG to show on the card.")
@click.option("-m", "--message", help="Commit message.")
@click.option("--token", help="Hugging Face write token (default: HF_TOKEN or the one saved by `hf auth login`).")
def cli(path: str, repo_id: str, private: bool, sheet: str | None, message: str | None, token: str | None) -> None:
    """Upload PATH (converted to .safetensors when it is another format) and a README.md model card
    (trigger word, family, slots, vectors, hashes, contact sheet) to the Hub repo REPO_ID, creating it
    when needed."""
    from .. import hub

    url = hub.push(path, repo_id, token=token, private=private, sheet=sheet, commit_message=message)
    output.info(f"pushed {output.escape(path)} → {output.escape(url)}")
