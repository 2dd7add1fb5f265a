"""The model card ``embkit push`` uploads, and ``push --dry-run --json --revision --create-pr``,
against the local fake Hub (tests/hub_server.py) with the real huggingface_hub client.

The card is read back the way the Hub and its users read it: ``huggingface_hub.ModelCard.load``
for the front matter, a CommonMark renderer (markdown-it, raw HTML allowed as the Hub allows it)
for the body, ``ast`` for the snippets, and the snippets run on embkit's tiny pipelines.
"""

from __future__ import annotations

import ast
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import WRITE_TOKEN, HubServer, run_client  # noqa: E402
from test_hub import run  # noqa: E402
from test_hub_push import FAST_CALL, card_code, png_bytes  # noqa: E402

import embkit  # noqa: E402
from embkit.hub.card import host_triggers, model_card  # noqa: E402

RNG = np.random.default_rng(21)

HOSTILE = [
    "<script>alert(1)</script>",
    "](javascript:alert(1))",
    "[click](javascript:alert(1))",
    "`rm -rf ~`",
    "a``b```c",
    "x\n\n<img src=x onerror=alert(1)>",
    "line\r\nbreak\u2028sep",
    "key: value\n---\nevil: true",
    "- [ ] &anchor *alias !!python/object:os.system",
    "'\"quotes\"'",
    "\u202eevil\u200b",
    "a|b|c",
    "# heading",
    "{{ jinja }} {% raw %}",
    "<!-- comment",
    "emoji 🙂 中文 é",
    "&lt;already&gt;",
]


def vecs(n: int = 2, width: int = 768) -> np.ndarray:
    return RNG.standard_normal((n, width)).astype(np.float32) * 0.02


@pytest.fixture(scope="module")
def hub():
    srv = HubServer().start()
    yield srv
    srv.stop()


class _Tags(HTMLParser):
    """Every element and attribute of rendered HTML, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.tags.append(("!--", {}))


def render(markdown: str) -> _Tags:
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    parser = _Tags()
    parser.feed(html)
    return parser


def card_for(name: str, metadata: dict | None = None, filename: str | None = None) -> tuple[str, bytes]:
    data = st_save({name: vecs(2)}, metadata={"step": "1"})
    emb = embkit.Embedding(name=name, vectors={"clip_l": vecs(2)}, metadata=metadata or {})
    return model_card([emb], filename or "up.safetensors", data, repo_id="tester/hostile", sheet="contact_sheet.png",
                      source=name + ".pt"), data


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_and_metadata_stay_text(name):
    """A trigger name, a file name or a metadata value holding HTML, markdown links, backticks,
    line breaks, bidi overrides or YAML syntax is shown as text: no element, attribute or link
    comes out of it, the front matter parses back to the exact name, and every snippet is valid
    Python that carries the exact name."""
    from huggingface_hub import ModelCard

    metadata = {"sd_checkpoint_name": name, name: "value", "step": 5}
    text, _ = card_for(name, metadata, filename=f"{name[:8]}.safetensors".replace("/", "_"))
    card = ModelCard(text)
    assert card.data.instance_prompt == name.lower()
    assert card.data.widget[0]["text"] == f"a photo, {name.lower()}"
    assert card.data.library_name == "diffusers" and "textual_inversion" in card.data.tags
    body = render(card.text)
    allowed = {"h1", "h2", "h3", "p", "code", "pre", "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "img"}
    assert {tag for tag, _ in body.tags} <= allowed, body.tags
    assert [a for tag, a in body.tags if tag == "img"] == [{"src": "contact_sheet.png", "alt": "embkit verify contact sheet"}]
    for tag, attrs in body.tags:
        assert not any(k.startswith("on") or "javascript" in (v or "") for k, v in attrs.items()), (tag, attrs)
    shown = "".join(body.text)
    from embkit.hub.card import visible

    assert visible(name) in shown, "the name is shown, as text"
    from markdown_it import MarkdownIt

    blocks = [t.content for t in MarkdownIt("commonmark").parse(card.text) if t.type == "fence" and t.info == "python"]
    assert len(blocks) == 2
    strings = set()
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
    assert name.lower() in strings and f"a photo, {name}" in strings


def test_host_triggers_follow_each_host():
    # from the hosts table: a file-stem-triggered upload, whatever name the embedding carries
    emb = embkit.Embedding(name="something-else", vectors={"clip_l": vecs(8)})
    assert host_triggers(emb, "sub/EasyNegative.safetensors", "easynegative") == {
        "a1111": "EasyNegative", "forge": "EasyNegative", "comfyui": "embedding:EasyNegative",
        "invokeai": "<EasyNegative>", "sdnext": "EasyNegative", "diffusers": "easynegative"}


def test_a_pushed_card_parses_with_modelcard_load_and_carries_every_field(hub, tmp_path):
    src = tmp_path / "Neon-Style.safetensors"
    src.write_bytes(st_save({"clip_l": vecs(3), "clip_g": vecs(3, 1280)}))
    sheet = tmp_path / "sheet.png"
    sheet.write_bytes(png_bytes())
    proc = run(hub, tmp_path, "push", str(src), "tester/neon", "--sheet", str(sheet), HF_TOKEN=WRITE_TOKEN)
    assert proc.returncode == 0, proc.stderr
    code = ("import json\nfrom huggingface_hub import ModelCard\n"
            "card = ModelCard.load('tester/neon')\n"
            "print(json.dumps({'data': card.data.to_dict(), 'text': card.text}))\n")
    out = json.loads(run_client(hub, code, tmp_path / "hf").stdout)
    data, text = out["data"], out["text"]
    assert data["base_model"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert data["license"] == "openrail++"
    assert (data["library_name"], data["pipeline_tag"]) == ("diffusers", "text-to-image")
    assert {"textual_inversion", "embedding", "stable-diffusion-xl"} <= set(data["tags"])
    assert "textual-inversion" not in data["tags"]
    assert data["instance_prompt"] == "neon-style"
    assert data["widget"] == [{"text": "a photo, neon-style", "output": {"url": "contact_sheet.png"}}]
    for needle in ("| AUTOMATIC1111 | `Neon-Style` |", "| ComfyUI | `embedding:Neon-Style` |", "| InvokeAI | `<Neon-Style>` |",
                   "| diffusers | `neon-style` |", "![embkit verify contact sheet](contact_sheet.png)",
                   "write `embedding:Neon-Style` in a CLIP Text Encode prompt"):
        assert needle in text, needle


@pytest.mark.slow
def test_the_diffusers_snippet_uses_every_vector_of_a_mixed_case_multi_vector_embedding(hub, tmp_path):
    """Regression: the card loaded an 8-vector 'EasyNegative' under its mixed-case name, and the
    prompt used one vector of eight (CLIP tokenizers lower-case the prompt, so diffusers' prompt
    expansion did not find the token). The card's snippet, run as written on a tiny SD1 pipeline
    against the pushed repo, puts all 8 vectors into the prompt, in order."""
    pytest.importorskip("diffusers")
    values = vecs(8)
    src = tmp_path / "EasyNegative.safetensors"
    src.write_bytes(st_save({"EasyNegative": values}))
    assert run(hub, tmp_path, "push", str(src), "tester/easy-neg", HF_TOKEN=WRITE_TOKEN).returncode == 0
    snippet = card_code(hub.files("tester/easy-neg")["README.md"].decode(), "### diffusers")
    (tmp_path / "snippet.py").write_text(snippet)
    code = FAST_CALL + (
        "import json, runpy\n"
        "from embkit.diffusers.tiny import tiny_pipeline\n"
        "pipe = fast(tiny_pipeline('sd1'))\n"
        "g = runpy.run_path('snippet.py', init_globals={'pipe': pipe})\n"
        "tok = pipe.tokenizer\n"
        "ids = tok(pipe.maybe_convert_prompt(g['prompt'], tok)).input_ids\n"
        "added = [tok.convert_tokens_to_ids(t) for t in ['easynegative'] + [f'easynegative_{i}' for i in range(1, 8)]]\n"
        "rows = pipe.text_encoder.get_input_embeddings().weight[added].detach().numpy().tolist()\n"
        "print(json.dumps({'ids': ids, 'added': added, 'rows': rows, 'image': g['image'].size}))\n"
    )
    out = json.loads(run_client(hub, code, tmp_path / "hf", cwd=tmp_path, timeout=300).stdout.strip().splitlines()[-1])
    found = [i for i in out["ids"] if i in out["added"]]
    assert found == out["added"], "all 8 tokens, in order, once each"
    assert np.allclose(out["rows"], values, atol=1e-6)
    assert out["image"] == [64, 64]


def test_push_dry_run_json_contacts_no_hub_and_needs_no_token(hub, tmp_path):
    src = tmp_path / "dry.safetensors"
    src.write_bytes(st_save({"emb_params": vecs(2)}))
    seen = len(hub.state.log)
    proc = run(hub, tmp_path, "push", str(src), "tester/dry", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(hub.state.log) == seen, "a dry run sends nothing"
    doc = json.loads(proc.stdout)
    assert (doc["dry_run"], doc["url"], doc["commit_url"]) == (True, None, None)
    assert [f["path_in_repo"] for f in doc["files"]] == ["dry.safetensors", "README.md"]
    assert doc["files"][0]["size"] == src.stat().st_size
    assert doc["card"].startswith("---\n") and "tester/dry" in doc["card"]
    assert "tester/dry" not in hub.state.repos


@pytest.mark.slow
def test_push_to_a_branch_and_as_a_pull_request(hub, tmp_path):
    src = tmp_path / "branchy.safetensors"
    src.write_bytes(st_save({"emb_params": vecs(1)}))
    first = run(hub, tmp_path, "push", str(src), "tester/branchy", "--json", HF_TOKEN=WRITE_TOKEN)
    assert first.returncode == 0, first.stderr
    src.write_bytes(st_save({"emb_params": vecs(2)}))
    dev = run(hub, tmp_path, "push", str(src), "tester/branchy", "--revision", "dev", "--json", HF_TOKEN=WRITE_TOKEN)
    assert dev.returncode == 0, dev.stderr
    assert hub.files("tester/branchy", "dev")["branchy.safetensors"] == src.read_bytes()
    assert hub.files("tester/branchy", "main")["branchy.safetensors"] != src.read_bytes(), "main is untouched"
    assert json.loads(dev.stdout)["revision"] == "dev"
    src.write_bytes(st_save({"emb_params": vecs(3)}))
    pr = run(hub, tmp_path, "push", str(src), "tester/branchy", "--create-pr", "--json", HF_TOKEN=WRITE_TOKEN)
    assert pr.returncode == 0, pr.stderr
    doc = json.loads(pr.stdout)
    assert doc["pr_url"] == f"{hub.endpoint}/tester/branchy/discussions/1"
    assert hub.files("tester/branchy", "refs/pr/1")["branchy.safetensors"] == src.read_bytes()
    assert hub.files("tester/branchy", "main")["branchy.safetensors"] != src.read_bytes()
    human = run(hub, tmp_path, "push", str(src), "tester/branchy", "--create-pr", HF_TOKEN=WRITE_TOKEN)
    assert human.returncode == 0 and "pull request" in human.stdout and "/discussions/2" in human.stdout
