"""Model zoo and checkpoints: registry, safe save/load, imports of users' state dicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevcf.errors import CheckpointError, ConfigError
from edgevcf.models import (
    STUDY_BACKBONES,
    ZOO,
    CheckpointMeta,
    build_model,
    get_spec,
    import_state_dict,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)

pytestmark = pytest.mark.requires_torch
torch = pytest.importorskip("torch")


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        get_spec("resnet50")
    assert "mobilenet_v3_large" in (err.value.hint or "")


def test_study_backbones_are_the_three_of_the_study() -> None:
    assert set(STUDY_BACKBONES) == {"efficientnet_b0", "mobilenet_v3_large", "mnasnet1_0"}


@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_entry_builds_with_one_logit(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1)
    head = model.get_submodule(ZOO[name].head)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 1
    assert ZOO[name].default_preprocess().input_size == ZOO[name].input_size


def _meta(arch: str = "mobilenet_v3_small") -> CheckpointMeta:
    return CheckpointMeta(
        arch=arch,
        preprocess=get_spec(arch).default_preprocess(input_size=64),
        threshold=0.37,
        threshold_method="test",
        metrics={"auc": 0.5},
        seed=3,
    )


def test_checkpoint_round_trip_is_exact_and_self_describing(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model("mobilenet_v3_small").eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, _meta())
    assert path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    loaded, meta = load_checkpoint(path)
    assert (
        meta.threshold == 0.37
        and meta.arch == "mobilenet_v3_small"
        and meta.preprocess.input_size == 64
    )
    assert meta.versions["torch"] and meta.seed == 3
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    # A run folder works too (it holds model.safetensors).
    save_checkpoint(tmp_path / "run" / "model.safetensors", model, _meta())
    assert read_checkpoint_meta(tmp_path / "run").arch == "mobilenet_v3_small"


def test_truncated_and_garbage_checkpoints_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("mobilenet_v3_small"), _meta())
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_plain_safetensors_without_metadata_points_to_import(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "plain.safetensors")
    assert "import-model" in (err.value.hint or "")


def test_import_maps_a_two_class_dataparallel_state_dict_exactly(tmp_path: Path) -> None:
    torch.manual_seed(2)
    two = torch.nn.Module()
    net = __import__("torchvision").models.mobilenet_v3_small(weights=None, num_classes=2).eval()
    two.module = net  # DataParallel-style prefix "module."
    torch.save({"state_dict": two.state_dict()}, tmp_path / "user.pth")
    model, meta = import_state_dict(tmp_path / "user.pth", "mobilenet_v3_small")
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        p_fresh = torch.softmax(net(x), dim=1)[:, 1]
        p_ours = torch.sigmoid(model(x)).reshape(-1)
    np.testing.assert_allclose(p_ours.numpy(), p_fresh.numpy(), atol=1e-6)
    assert "imported" in meta.source


def test_import_refuses_the_wrong_architecture_naming_keys(tmp_path: Path) -> None:
    torch.save(build_model("mobilenet_v3_small").state_dict(), tmp_path / "small.pth")
    with pytest.raises(CheckpointError) as err:
        import_state_dict(tmp_path / "small.pth", "mnasnet0_5")
    assert "missing" in err.value.message and "unexpected" in err.value.message


def test_import_refuses_a_pickled_whole_model(tmp_path: Path) -> None:
    torch.save(build_model("mobilenet_v3_small"), tmp_path / "whole.pt")  # needs unpickling code
    with pytest.raises(CheckpointError, match="cannot load"):
        import_state_dict(tmp_path / "whole.pt", "mobilenet_v3_small")


def test_cli_import_checkpoint(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgevcf.cli import cli

    torch.save(build_model("mnasnet0_5").state_dict(), tmp_path / "w.pth")
    out = tmp_path / "c.safetensors"
    r = CliRunner().invoke(
        cli,
        ["import-checkpoint", str(tmp_path / "w.pth"), "--arch", "mnasnet0_5", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert read_checkpoint_meta(out).arch == "mnasnet0_5"
    bad = CliRunner().invoke(
        cli, ["import-checkpoint", str(tmp_path / "w.pth"), "--arch", "nope", "--out", str(out)]
    )
    assert bad.exit_code == ConfigError.exit_code and "Error:" in bad.output
