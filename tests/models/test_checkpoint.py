"""load_checkpoint: official wrappers, mismatches, truncated and code-carrying files
(official checkpoint wrapping, see tests/data/reference/README.md)."""
import pickle

import pytest
import numpy as np
import torch

from edgepose.errors import CheckpointError
from edgepose.models import create
from edgepose.models.checkpoint import guess_model, load_checkpoint, read_state_dict, save_checkpoint


def _randomise(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.2 + 0.9 if tensor.dim() == 1
                             else torch.randn(tensor.shape, generator=gen) * 0.05)
    return model.eval()


def _outputs(model, size):
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name,fmt,size", [
    ("centernet_res18", "centernet", (64, 64)),      # {"epoch", "state_dict"[, "optimizer"]}
    ("simplepose_res50", "alphapose", (64, 48)),     # bare state_dict
    ("cornernet_squeeze", "cornernet", (127, 127)),  # bare, every key prefixed "module."
])
def test_official_wrappers_load_and_reproduce_outputs(tmp_path, name, fmt, size):
    source = _randomise(create(name))
    path = tmp_path / f"{name}.pth"
    optimizer = torch.optim.SGD(list(source.parameters())[:2], lr=0.1) if fmt == "centernet" else None
    save_checkpoint(source, path, fmt=fmt, epoch=230, optimizer=optimizer)
    raw = torch.load(str(path), weights_only=True)
    if fmt == "centernet":
        assert set(raw) == {"epoch", "state_dict", "optimizer"} and raw["epoch"] == 230
    elif fmt == "cornernet":
        assert all(k.startswith("module.") for k in raw)
    target = create(name)
    load_checkpoint(target, path)
    want, got = _outputs(source, size), _outputs(target.eval(), size)
    assert list(want) == list(got)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


def test_missing_num_batches_tracked_is_tolerated(tmp_path):
    model = create("centernet_res18")
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 1, "state_dict": state}, str(tmp_path / "m.pth"))
    summary = load_checkpoint(create("centernet_res18"), tmp_path / "m.pth")
    assert summary["missing"] == [] and summary["unexpected"] == []


def test_mismatched_model_lists_keys_and_guesses(tmp_path):
    save_checkpoint(create("centernet_res18"), tmp_path / "res18.pth", fmt="centernet")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create("centernet_resdcn18"), tmp_path / "res18.pth")
    text = str(info.value)
    assert "24 missing keys" in text and "9 wrong-shaped keys" in text
    assert "deconv_layers.0.weight file (512, 256, 4, 4) vs model (256, 512, 3, 3)" in text
    assert "(+19 more)" in text  # long lists are cut with a count
    assert "It loads into centernet_res18 (see" in text  # checked by building the model, not guessed
    assert "strict=False" not in text  # not a CLI option
    save_checkpoint(create("centernet_resdcn18"), tmp_path / "dcn.pth", fmt="centernet")
    with pytest.raises(CheckpointError, match=r"27 unexpected keys: deconv_layers.0.bias"):
        load_checkpoint(create("centernet_res18"), tmp_path / "dcn.pth")


def test_no_model_is_suggested_unless_the_file_loads_into_it(tmp_path):
    state = create("centernet_res18").state_dict()
    del state["deconv_layers.0.weight"]  # a res18 layout that no zoo model takes any more
    torch.save({"epoch": 0, "state_dict": state}, str(tmp_path / "odd.pth"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create("centernet_resdcn18"), tmp_path / "odd.pth")
    text = str(info.value)
    assert "No edgepose zoo model takes it" in text and "loads into" not in text and "looks like" not in text
    assert "strict=False" not in text


def test_folder_and_random_bytes_get_their_own_messages(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        read_state_dict(tmp_path)
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as info:
        read_state_dict(tmp_path / "noise.pth")
    assert "random or damaged bytes" in str(info.value) and "pickled Python objects" not in str(info.value)
    (tmp_path / "text.pth").write_text("hello world\n" * 50)
    with pytest.raises(CheckpointError, match="random or damaged bytes"):
        read_state_dict(tmp_path / "text.pth")


def test_wrong_class_count_names_shapes(tmp_path):
    save_checkpoint(create("centernet_res18", num_classes=1), tmp_path / "person.pth")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create("centernet_res18"), tmp_path / "person.pth")
    text = str(info.value)
    assert "hm.2.weight file (1, 64, 1, 1) vs model (80, 64, 1, 1)" in text
    assert "--num-classes" in text


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "full.pth"
    save_checkpoint(create("centernet_res18"), path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or truncated torch.save archive"):
        read_state_dict(tmp_path / "cut.pth")


class _Payload:
    def __reduce__(self):  # would create a file if it were ever unpickled with code execution
        return (open, (str(_Payload.marker), "w"))


def test_code_carrying_checkpoint_is_refused_and_not_executed(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": _Payload()}, str(path))
    with pytest.raises(CheckpointError, match="never executes pickled code"):
        read_state_dict(path)
    assert not _Payload.marker.exists()


def test_non_tensor_entries_are_rejected(tmp_path):
    torch.save({"a": torch.zeros(1), "b": 3}, str(tmp_path / "x.pth"))
    with pytest.raises(CheckpointError, match="not a tensor"):
        read_state_dict(tmp_path / "x.pth")


def test_guess_model_by_signature(manifest):
    rows = manifest("alphapose_fastpose_res50_256x192.json")["state_dict"]
    fake = {r["key"]: torch.empty(r["shape"], dtype=getattr(torch, r["dtype"])) for r in rows}
    assert guess_model(fake).startswith("alphapose_fastpose_res50_256x192")


def test_pickle_module_error_type_is_what_we_catch(tmp_path):
    # guards the except clause: torch raises pickle.UnpicklingError for weights_only refusals
    torch.save({"x": _Payload()}, str(tmp_path / "p.pth"))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(tmp_path / "p.pth"), weights_only=True)
