"""embkit.write: the files other tools expect, atomic writes, strict mode, options, dtypes."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import embkit
from embkit import Embedding
from embkit.errors import LossError, TargetExistsError, WriteError

import makers


def sd1(name="tok", n=2, seed=0, **kw):
    return Embedding(name, {"clip_l": makers.vectors(n, 768, seed=seed, scale=0.3)}, **kw)


def sdxl(name="xl"):
    return Embedding(name, {"clip_l": makers.vectors(2, 768, seed=1), "clip_g": makers.vectors(2, 1280, seed=2)})


# -- torch pickles written without torch ----------------------------------------------------------


def test_a1111_pt_is_the_dict_a1111_writes(tmp_path):
    import torch

    emb = sd1("mytoken", metadata={"step": 42, "sd_checkpoint": "7ab762a7", "sd_checkpoint_name": "model"})
    out = tmp_path / "mytoken.pt"
    assert embkit.write(emb, out) == []
    data = torch.load(out, weights_only=True)
    assert list(data) == ["string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name"]
    assert data["string_to_token"] == {"*": 265}
    assert list(data["string_to_param"]) == ["*"]
    tensor = data["string_to_param"]["*"]
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (2, 768)
    assert np.array_equal(tensor.numpy(), emb.vectors["clip_l"])
    assert (data["name"], data["step"], data["sd_checkpoint"], data["sd_checkpoint_name"]) == ("mytoken", 42, "7ab762a7", "model")
    # mmap loading needs torch's 64-byte alignment of every storage
    mapped = torch.load(out, weights_only=True, mmap=True)
    assert torch.equal(mapped["string_to_param"]["*"], tensor)


def test_a1111_pt_without_metadata_writes_none(tmp_path):
    import torch

    embkit.write(sd1("t"), tmp_path / "t.pt")
    data = torch.load(tmp_path / "t.pt", weights_only=True)
    assert data["step"] is None and data["sd_checkpoint"] is None and data["sd_checkpoint_name"] is None


# A1111 before 1.10 (modules/safe.py@0593384): the strictest release
A1111_ZIP_NAMES = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
A1111_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "BFloat16Storage"),
}


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_a1111_restricted_unpickler_accepts(tmp_path, dtype):
    """The checks of A1111's modules/safe.py: member names and the globals the pickle names."""
    out = tmp_path / "x.pt"
    embkit.write(sd1("x"), out, dtype=dtype)
    seen = []

    class Restricted(pickle.Unpickler):
        def persistent_load(self, pid):
            assert pid[0] == "storage"
            return None

        def find_class(self, module, name):
            seen.append((module, name))
            if (module, name) not in A1111_GLOBALS:
                raise AssertionError(f"A1111 forbids {module}.{name}")
            return lambda *a, **k: None

    with zipfile.ZipFile(out) as z:
        bad = [n for n in z.namelist() if not A1111_ZIP_NAMES.match(n)]
        assert bad == []
        pkls = [n for n in z.namelist() if n.endswith("/data.pkl")]
        assert len(pkls) == 1
        with z.open(pkls[0]) as fh:
            Restricted(fh).load()
    assert ("torch._utils", "_rebuild_tensor_v2") in seen


def test_zip_layout_like_torch(tmp_path):
    out = tmp_path / "x.pt"
    embkit.write(sd1("x"), out)
    raw = out.read_bytes()
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert names[0] == "archive/data.pkl"
        # only the members every A1111 release's safe loader accepts (no byteorder or
        # .data/serialization_id, which A1111 before 1.10 refuses); torch reads them as little-endian
        assert names == ["archive/data.pkl", "archive/data/0", "archive/version"]
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little"), int.from_bytes(
                raw[info.header_offset + 28 : info.header_offset + 30], "little"
            )
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
        assert z.read("archive/data.pkl")[:2] == b"\x80\x02"  # protocol 2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_pickle_dtypes_load_in_torch(tmp_path, dtype):
    import torch

    emb = sd1("d")
    out = tmp_path / "d.pt"
    embkit.write(emb, out, "kohya", dtype=None if dtype == "float64" else dtype)
    if dtype == "float64":
        emb = Embedding("d", {"clip_l": emb.vectors["clip_l"].astype(np.float64)})
        embkit.write(emb, out, "kohya", overwrite=True)
    t = torch.load(out, weights_only=True)["emb_params"]
    assert t.dtype == getattr(torch, dtype)
    expected = torch.from_numpy(emb.vectors["clip_l"].astype(np.float32)).to(getattr(torch, dtype))
    assert torch.equal(t, expected)  # bf16/fp16 rounding is torch's own
    back = embkit.read(out)
    assert back.dtypes["clip_l"] == dtype
    assert np.array_equal(back.vectors["clip_l"], expected.float().numpy())


def test_writing_does_not_import_torch(tmp_path):
    code = (
        "import sys, numpy as np, embkit\n"
        "e = embkit.Embedding('t', {'clip_l': np.ones((2, 768), np.float32)})\n"
        f"for name, fmt in [('t.pt','a1111'), ('t.safetensors','kohya'), ('l.bin','diffusers'), ('c.png','a1111-image'), ('m.pt','multi')]:\n"
        f"    embkit.write(e, {str(tmp_path)!r} + '/' + name, fmt, dtype='bf16' if fmt == 'multi' else None)\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.iterdir())) == 5


# -- safetensors --------------------------------------------------------------------------------


def test_kohya_safetensors_metadata(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    emb = sd1("kname", metadata={"step": 5, "provenance": [{"operation": "merge"}], "modelspec.title": "Mine"})
    out = tmp_path / "kname.safetensors"
    # kohya asked for by name: the default for one slot is now the diffusers layout keyed by the
    # stem (kohya's emb_params would be diffusers' trigger word; see test_default_layout_every_host_same_word)
    assert embkit.write(emb, out, "kohya") == []
    with safe_open(str(out), "np") as fh:
        meta = fh.metadata()
    assert meta["format"] == "pt"
    assert meta["modelspec.architecture"] == "stable-diffusion-v1/textual-inversion"
    assert meta["modelspec.title"] == "Mine"  # the embedding's own modelspec wins
    assert json.loads(meta["embkit.metadata"]) == {"step": 5, "provenance": [{"operation": "merge"}]}
    assert np.array_equal(load_file(str(out))["emb_params"].numpy(), emb.vectors["clip_l"])
    back = embkit.read(out)
    assert back.metadata["step"] == 5 and back.metadata["provenance"] == [{"operation": "merge"}]


def test_bf16_safetensors_bit_exact(tmp_path):
    import torch
    from safetensors.torch import load_file

    emb = sdxl()
    out = tmp_path / "xl.safetensors"
    losses = embkit.write(emb, out, dtype="bf16")
    assert {x.code for x in losses} == {"precision-lost"}
    loaded = load_file(str(out))
    for slot in ("clip_l", "clip_g"):
        assert loaded[slot].dtype == torch.bfloat16
        assert torch.equal(loaded[slot], torch.from_numpy(np.array(emb.vectors[slot])).to(torch.bfloat16))
    back = embkit.read(out)
    assert back.dtypes["clip_g"] == "bfloat16"
    (tmp_path / "again").mkdir()
    again = tmp_path / "again" / "xl.safetensors"
    assert embkit.write(back, again) == []  # bf16 kept: nothing lost
    for slot in ("clip_l", "clip_g"):
        assert torch.equal(load_file(str(again))[slot], loaded[slot])


def test_multi_t5_key(tmp_path):
    from safetensors.torch import load_file

    emb = Embedding("f", {"clip_l": makers.vectors(1, 768), "t5": makers.vectors(1, 4096), "t5_out": makers.vectors(1, 4096)})
    embkit.write(emb, tmp_path / "f.safetensors", t5_key="t5xxl")
    assert set(load_file(str(tmp_path / "f.safetensors"))) == {"clip_l", "t5xxl", "t5xxl_out"}
    back = embkit.read(tmp_path / "f.safetensors")
    assert back.same_vectors(emb)
    embkit.write(back, tmp_path / "g.safetensors")  # keeps the spelling it was read with
    assert "t5xxl" in load_file(str(tmp_path / "g.safetensors"))
    embkit.write(back, tmp_path / "h.safetensors", t5_key="t5")
    assert set(load_file(str(tmp_path / "h.safetensors"))) == {"clip_l", "t5", "t5_out"}


def test_diffusers_sdxl_two_files(tmp_path):
    from safetensors.torch import load_file

    emb = sdxl("<xl>")
    out = tmp_path / "learned_embeds.safetensors"
    assert embkit.write(emb, out, sdxl_two_files=True) == []
    first, second = load_file(str(out)), load_file(str(tmp_path / "learned_embeds_2.safetensors"))
    assert list(first) == list(second) == ["<xl>"]
    assert tuple(first["<xl>"].shape) == (2, 768) and tuple(second["<xl>"].shape) == (2, 1280)
    assert embkit.read(tmp_path / "learned_embeds_2.safetensors").vectors["clip_g"].tobytes() == emb.vectors["clip_g"].tobytes()
    # without the option the CLIP-G half would be dropped: refused, naming both lossless choices
    # (house rule 8), and written only when the loss is allowed, as a reported loss with the hint
    with pytest.raises(embkit.LossError, match="sdxl_two_files=True") as refused:
        embkit.write(emb, tmp_path / "one.safetensors", "diffusers")
    assert refused.value.exit_code == 8 and "--to multi" in str(refused.value)
    assert not (tmp_path / "one.safetensors").exists()
    losses = embkit.write(emb, tmp_path / "one.safetensors", "diffusers", allow_loss=True)
    assert [(x.code, x.slot) for x in losses] == [("slot-dropped", "clip_g")]
    assert "sdxl_two_files" in losses[0].message


# -- choosing the format ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,emb,fmt",
    [
        ("a.pt", sd1(), "a1111"),
        ("a.pt", sdxl(), "multi"),
        # one slot: diffusers keyed by the stem, which every host triggers by the stem (kohya's
        # emb_params, the default before, is the token diffusers would use)
        ("a.safetensors", sd1(), "diffusers"),
        ("a.safetensors", sdxl(), "multi"),
        ("learned_embeds.safetensors", sd1(), "diffusers"),
        ("learned_embeds.bin", sd1(), "diffusers"),
        ("a.png", sd1(), "a1111-image"),
        ("concept", sd1(), "concept-folder"),
    ],
)
def test_auto_format(tmp_path, name, emb, fmt):
    embkit.write(emb, tmp_path / name)
    assert embkit.read(tmp_path / name).source.format == fmt


def test_unknown_extension_and_wrong_container(tmp_path):
    with pytest.raises(WriteError, match="extension"):
        embkit.write(sd1(), tmp_path / "x.emb")
    with pytest.raises(WriteError, match="cannot be written as safetensors"):
        embkit.write(sd1(), tmp_path / "x.safetensors", "a1111")
    with pytest.raises(WriteError, match="cannot write lora-bundle"):
        embkit.write(sd1(), tmp_path / "x.safetensors", "lora-bundle")
    with pytest.raises(TypeError, match="unknown write option"):
        embkit.write(sd1(), tmp_path / "x.safetensors", tfive_key="t5")
    assert list(tmp_path.iterdir()) == []


def test_bad_width_refused(tmp_path):
    odd = Embedding("odd", {"clip_l": np.zeros((1, 100), np.float32)})
    with pytest.raises(WriteError, match="100 wide"):
        embkit.write(odd, tmp_path / "odd.pt")
    assert not (tmp_path / "odd.pt").exists()


# -- safety: existing files, strict, atomicity ----------------------------------------------------


def test_existing_target_needs_overwrite(tmp_path):
    out = tmp_path / "t.safetensors"
    out.write_bytes(b"precious")
    with pytest.raises(TargetExistsError) as err:
        embkit.write(sd1("t"), out)
    assert err.value.exit_code == 9 and str(out) in str(err.value)
    assert out.read_bytes() == b"precious"
    embkit.write(sd1("t"), out, overwrite=True)
    assert embkit.read(out).name == "t"
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_strict_raises_before_writing(tmp_path):
    with pytest.raises(LossError) as err:
        embkit.write(sdxl("xl"), tmp_path / "xl.pt", "a1111", strict=True)
    assert "clip_g" in str(err.value) and err.value.exit_code == 8
    assert list(tmp_path.iterdir()) == []
    assert embkit.write(sd1("ok"), tmp_path / "ok.pt", strict=True) == []


def test_two_file_pair_is_all_or_nothing(tmp_path):
    (tmp_path / "learned_embeds_2.safetensors").write_bytes(b"keep")
    with pytest.raises(TargetExistsError):
        embkit.write(sdxl(), tmp_path / "learned_embeds.safetensors", sdxl_two_files=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["learned_embeds_2.safetensors"]


def test_failed_write_leaves_nothing(tmp_path):
    from embkit.atomic import write_bytes

    def chunks():
        yield b"x" * 1000
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="No space left"):
        write_bytes(tmp_path / "t.bin", chunks())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WriteError, match="folder does not exist"):
        embkit.write(sd1(), tmp_path / "missing" / "t.pt")


def test_failed_folder_write_leaves_nothing(tmp_path):
    from embkit.atomic import write_folder

    def fill(folder):
        Path(folder, "a.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_folder(tmp_path / "concept", fill)
    assert list(tmp_path.iterdir()) == []


def test_concept_folder_overwrite_replaces_only_a_concept_folders_own_files(tmp_path):
    folder = tmp_path / "concept"
    embkit.write(sd1("<a>"), folder)
    embkit.write(sd1("<b>"), folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["learned_embeds.bin", "token_identifier.txt", "type_of_concept.txt"]
    assert embkit.read(folder).name == "<b>"
    assert [p.name for p in tmp_path.iterdir()] == ["concept"]
    # a file of the user's inside: never deleted, the folder is refused
    (folder / "stray.txt").write_text("old")
    with pytest.raises(TargetExistsError):
        embkit.write(sd1("<c>"), folder)
    with pytest.raises(TargetExistsError, match="stray.txt"):
        embkit.write(sd1("<c>"), folder, overwrite=True)
    assert (folder / "stray.txt").read_text() == "old" and embkit.read(folder).name == "<b>"


# -- dtypes and losses ---------------------------------------------------------------------------


def test_dtype_narrowing_reports_precision(tmp_path):
    emb = sd1("p")
    losses = embkit.write(emb, tmp_path / "p.safetensors", dtype="fp16")
    assert [x.code for x in losses] == ["precision-lost"] and losses[0].slot == "clip_l"
    back = embkit.read(tmp_path / "p.safetensors")
    assert back.dtypes["clip_l"] == "float16"
    # widening back is exact: no loss
    (tmp_path / "wide").mkdir()
    assert embkit.write(back, tmp_path / "wide" / "p.safetensors", dtype="fp32") == []
    assert embkit.read(tmp_path / "wide" / "p.safetensors").dtypes["clip_l"] == "float32"
    with pytest.raises(WriteError, match="unknown dtype"):
        embkit.write(emb, tmp_path / "q.pt", dtype="int8")


def test_losses_are_typed_and_named(tmp_path):
    emb = Embedding(
        "sd3", {"clip_l": makers.vectors(1, 768), "clip_g": makers.vectors(1, 1280), "t5": makers.vectors(1, 4096), "clip_l_out": makers.vectors(1, 768)},
        metadata={"note": "x"},
    )
    with pytest.raises(embkit.LossError, match="would drop vectors.*multi keeps every slot and the output vectors"):
        embkit.write(emb, tmp_path / "other.pt", "a1111")  # vectors dropped: refused unless allowed
    losses = embkit.write(emb, tmp_path / "other.pt", "a1111", allow_loss=True)
    got = sorted((x.code, x.slot) for x in losses)
    assert got == [
        ("metadata-dropped", None),
        ("output-vectors-dropped", "clip_l_out"),
        ("slot-dropped", "clip_g"),
        ("slot-dropped", "t5"),
        ("trigger-renamed", None),
    ]
    assert all(isinstance(x, embkit.writing.Loss) for x in losses)
    assert losses[0].to_dict().keys() == {"code", "message", "slot"}
    with pytest.raises(Exception):
        losses[0].code = "x"  # frozen


# -- the image card ------------------------------------------------------------------------------


def decode_card_pixels(rgb: np.ndarray) -> dict:
    """A decoder written from FORMATS.md alone (shares no code with embkit's writer or reader)."""
    import zlib

    low4 = rgb & 0x0F
    separators = [x for x in range(low4.shape[1]) if not low4[:, x, :].any()]
    left, right = low4[:, : min(separators), :], low4[:, max(separators) + 1 :, :]
    assert left.shape == right.shape

    def generator(n):
        seed, out = 0, []
        for _ in range(n):
            seed = (1664525 * seed + 1013904223) % 2**32
            out.append(seed % 255)
        return np.array(out, dtype=np.uint8)

    assert list(generator(5)) == [253, 242, 127, 44, 157]
    mask = (generator(left.size) & 0x0F).reshape(left.shape)
    low, high = left ^ mask, right ^ mask
    stream = ((high.astype(np.uint8) << 4) | low).astype(np.uint8).tobytes()
    return json.loads(zlib.decompressobj().decompress(stream))


@pytest.mark.parametrize("picture", [None, "given"])
def test_card_pixels_decode_by_the_book(tmp_path, picture):
    import base64

    from PIL import Image

    emb = sd1("cardtoken", n=3, seed=9, metadata={"step": 77})
    pic = None
    if picture:
        pic = Image.new("RGB", (40, 30), (200, 10, 90))
        pic.putpixel((5, 5), (1, 2, 3))
    out = tmp_path / "card.png"
    assert embkit.write(emb, out, picture=pic) == []
    with Image.open(out) as img:
        rgb = np.asarray(img.convert("RGB"))
        text = json.loads(base64.b64decode(img.text["sd-ti-embedding"]))
    data = decode_card_pixels(rgb)
    assert data == text
    assert data["name"] == "cardtoken" and data["step"] == 77 and data["string_to_token"] == {"*": 265}
    vec = np.array(data["string_to_param"]["*"]["TORCHTENSOR"], dtype=np.float32)
    assert np.array_equal(vec, emb.vectors["clip_l"])
    if picture:
        assert rgb.shape[0] == 30
        left = min(x for x in range(rgb.shape[1]) if not (rgb[:, x, :] & 0x0F).any())
        assert np.array_equal(rgb[:, left + 1 : left + 41, :], np.asarray(pic))  # the picture, untouched


def test_card_read_back_without_text_chunk(tmp_path):
    from PIL import Image

    emb = sd1("pix", n=4, seed=3, metadata={"step": 5})
    embkit.write(emb, tmp_path / "card.png")
    stripped = tmp_path / "stripped.png"
    with Image.open(tmp_path / "card.png") as img:
        img.convert("RGB").save(stripped)  # re-saved: no text chunk
    with Image.open(stripped) as img:
        assert "sd-ti-embedding" not in img.info
    back = embkit.read(stripped)
    assert back.name == "pix" and back.metadata["step"] == 5
    assert np.array_equal(back.vectors["clip_l"], emb.vectors["clip_l"])


def test_card_from_picture_path_and_fp16(tmp_path):
    from PIL import Image

    Image.new("RGBA", (16, 16), (10, 200, 10, 128)).save(tmp_path / "pic.png")
    emb = Embedding("h", {"clip_l": makers.vectors(1, 768).astype(np.float16)})
    losses = embkit.write(emb, tmp_path / "h.png", picture=tmp_path / "pic.png")
    assert [x.code for x in losses] == ["dtype-changed"]
    assert np.array_equal(embkit.read(tmp_path / "h.png").vectors["clip_l"], emb.vectors["clip_l"].astype(np.float32))


def test_safetensors_metadata_is_strict_json(tmp_path):
    from safetensors import safe_open

    emb = sd1("n", metadata={"x": float("nan"), "y": [float("-inf"), 1.5], "z": {"deep": [1, {"k": "v"}]}})
    embkit.write(emb, tmp_path / "n.safetensors")
    with safe_open(str(tmp_path / "n.safetensors"), "np") as fh:
        text = fh.metadata()["embkit.metadata"]

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    data = json.loads(text, parse_constant=refuse)
    assert data == {"x": "NaN", "y": ["-Infinity", 1.5], "z": {"deep": [1, {"k": "v"}]}}
    assert embkit.read(tmp_path / "n.safetensors").metadata["z"] == {"deep": [1, {"k": "v"}]}
