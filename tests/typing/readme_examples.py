"""The Python examples of README.md and docs/python.md, as a type checker sees them.

Never run (nothing here exists on disk): ``tests/test_typing.py`` runs mypy (``--strict``) on this
file and checks that every ``reveal_type`` below is a real type, with no ``Any`` in it, and that
mypy reports no error. Not revealed: the values that come from diffusers itself (a pipeline, its
images: diffusers ships no types), and the ``embkit inspect --json`` object of ``describe_file``
(``dict[str, Any]`` by design: docs/inspect-json.md is its schema, and callers index into it).
"""

from __future__ import annotations

from typing import Any

import embkit
import embkit.diffusers as ed
from embkit import hub
from embkit.diffusers import render
from embkit.diffusers.tiny import tiny_pipeline
from embkit.edit.port import port
from embkit.report import describe_file

# -- the public names themselves: functions and classes, not Any -----------------------------------
reveal_type(embkit.read)
reveal_type(embkit.read_all)
reveal_type(embkit.probe)
reveal_type(embkit.write)
reveal_type(embkit.merge)
reveal_type(embkit.validate)
reveal_type(embkit.Library)
reveal_type(embkit.ModelSpec)
reveal_type(embkit.Embedding)
reveal_type(embkit.EmbkitError)
reveal_type(embkit.MissingFileError)
reveal_type(embkit.ingest)

# -- README: Python ---------------------------------------------------------------------------------
emb = embkit.read("EasyNegative.pt")
reveal_type(emb)
reveal_type((emb.name, emb.slots, emb.vectors["clip_l"].shape))
reveal_type(embkit.validate(emb, "sdxl").ok)
losses = embkit.write(emb, "EasyNegative.safetensors")
reveal_type(losses)

pipe: Any = None  # any StableDiffusion(XL)Pipeline
applied = ed.apply(pipe, ["EasyNegative.pt", "bad-hands-5.pt"])
reveal_type(applied)
with ed.expanded_prompts(pipe):
    image = pipe("a portrait", negative_prompt="EasyNegative, bad-hands-5").images[0]
reveal_type(ed.unload(pipe))

# -- README and docs/python.md: bytes, pairs, sidecars, the drop-in ----------------------------------
data = b""
upload = embkit.read(data, name="upload.safetensors")
reveal_type(embkit.read(data, name="upload.safetensors"))
reveal_type(embkit.read(["learned_embeds.safetensors", "learned_embeds_2.safetensors"]))
reveal_type(emb.sidecars)
reveal_type((emb.sidecars.trained_words, emb.sidecars.base_model))
reveal_type((emb.sidecars.trained_words, emb.sidecars.base_model, emb.sidecars.civitai_info, emb.sidecars.preview))
ed.patch(pipe).load_textual_inversion("sd-concepts-library/cat-toy")
sd = embkit.to_state_dict(emb, "diffusers", framework="torch")
a1111 = embkit.to_state_dict(emb, "a1111", framework="torch")
arrays = embkit.to_state_dict(emb, "multi")
reveal_type(arrays)
node_input: dict[str, object] = {}
embs = embkit.from_state_dict(node_input)
reveal_type(embs)

# -- docs/python.md: hosts and nearest tokens --------------------------------------------------------
from embkit import hosts
from embkit.model.nearest import TokenIndex

report = embkit.validate(emb, "sd1", hosts=["a1111", "comfyui"])
reveal_type(report.view("a1111").passes(strict=True))
reveal_type(report.verdicts["comfyui"].trigger)
v = hosts.verdict("learned_embeds.bin", "a1111", "sdxl")
reveal_type((v.loads, v.status, v.trigger, v.reasons))
reveal_type(hosts.triggers(emb))
reveal_type(hosts.where("x.pt"))
reveal_type((hosts.HOSTS, hosts.get_host("comfyui").matching))
with TokenIndex.from_target("./sdxl-base") as index:
    reveal_type(index.slot_fields(emb, "clip_l", 10)["nearest"])

# -- docs/python.md: read, probe, inspect -----------------------------------------------------------
reveal_type(emb.name)
reveal_type((emb.slots, emb.output_slots))
reveal_type(emb.vectors["clip_l"])
reveal_type(emb.dtypes["clip_l"])
reveal_type((emb.family, emb.families))
reveal_type(emb.metadata)
reveal_type(emb.source)
reveal_type(embkit.read_all("lora.safetensors"))
reveal_type(embkit.read("lora.safetensors", member="hero"))
reveal_type(embkit.read("x.bin", format="diffusers"))
info = embkit.probe("big.safetensors")
reveal_type((info.format, info.container, info.hashes["autov2"], info.embeddings[0].slots))
describe_file("bad-hands-5.pt")["slots"]["clip_l"]["norms"]  # the inspect JSON object: dict[str, Any] by design
reveal_type(emb.replace(name="x"))

# -- write and convert ------------------------------------------------------------------------------
sdxl_emb = embkit.read("sdxl-demo.safetensors")
losses = embkit.write(emb, "out.pt", format="a1111", overwrite=True)
losses = embkit.write(sdxl_emb, "learned_embeds.safetensors", format="diffusers", sdxl_two_files=True)
embkit.write(emb, "card.png", format="a1111-image", picture="preview.png")
embkit.write(emb, "x.pt", strict=True)
reveal_type([l.code for l in losses])

# -- validate ---------------------------------------------------------------------------------------
report = embkit.validate(emb, "sdxl")
reveal_type((report.ok, [(f.code, f.severity, f.message) for f in report.findings]))
spec = embkit.ModelSpec.from_folder("models/sdxl-base")
reveal_type(spec)
other_emb = embkit.read("other.pt")
reveal_type(embkit.validate(emb, spec, loaded=[other_emb]))

# -- merge and edit ---------------------------------------------------------------------------------
a, b = embkit.read("a.pt"), embkit.read("b.pt")
from embkit import ops
blend = embkit.merge([a, b], mode="mean")
blend = embkit.merge([a, b], mode="sum", weights=[0.7, 0.3], pad=True)
short = ops.select(emb, "0:4")
quiet = ops.scale(sdxl_emb, 0.5, slot="clip_g")
reveal_type((blend, short, quiet))
xl = port(emb, "sdxl", via="models/sdxl-base")
reveal_type(xl)
reveal_type(xl.metadata["provenance"])

# -- diffusers --------------------------------------------------------------------------------------
pipe = tiny_pipeline("sdxl")
applied = ed.apply(pipe, [xl, "fixtures/sdxl-demo.safetensors"])
with ed.expanded_prompts(pipe):
    image = pipe("a castle, sdxl-demo", negative_prompt=xl.name).images[0]
reveal_type(ed.unload(pipe, applied))
result = render.compare(pipe, [emb], prompt="a photo", seeds=(0, 1))
reveal_type((result.changed, result.conditioning_distance))

# -- library and Hub --------------------------------------------------------------------------------
lib = embkit.Library()
reveal_type(lib)
reveal_type(lib.scan(["~/sd/embeddings"]))
reveal_type((lib.search(family="sdxl", name="neg*"), lib.dupes(), lib.conflicts()))
reveal_type(lib.check("sdxl"))
reveal_type(lib.load_into(pipe))
reveal_type(lib.render_previews("sd15.safetensors"))
reveal_type(lib.search()[0].preview)
reveal_type(lib.gallery("gallery/"))
files = hub.pull("sd-concepts-library/cat-toy", out_dir="embeddings")
reveal_type(files)
files = hub.pull("someone/negatives", repo_type="dataset", include=["v2/*"], exclude=["v2/old/*"])
reveal_type([(f.filename, f.repo_type, f.embeddings, f.error) for f in files])
pushed = hub.push("my-style.safetensors", "me/my-style", sheet="sheet.png", create_pr=True)
reveal_type((pushed.pr_url, pushed.files))
reveal_type(hub.push("my-style.safetensors", "me/my-style", sheet="sheet.png"))

# -- ingest -----------------------------------------------------------------------------------------
summary = embkit.ingest(["uploads/"], "ingested/")
summary = embkit.ingest(["uploads/"], "ingested/", ray="auto")
summary = embkit.ingest(["todays.txt"], "ingested/", previews=True, model="sd1", library="hub.sqlite")
reveal_type((summary.counts, summary.reused, summary.manifest["jsonl"]))
reveal_type((summary.exit_code, summary.ignored))

# -- errors -----------------------------------------------------------------------------------------
try:
    emb = embkit.read("missing.pt")
except FileNotFoundError as exc:  # embkit.MissingFileError is one
    reveal_type(exc.errno)
    print(exc.filename)
except embkit.EmbkitError as exc:
    reveal_type(exc.to_dict())
try:
    embkit.read("missing.pt")
except embkit.MissingFileError as missing:
    reveal_type((missing.errno, missing.code, missing.path))
