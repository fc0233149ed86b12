"""Declared changes to a backbone (issue 26): a replaced head, a one-channel stem, timm by name;
the two-class fold, the file sniffing and the output adapters of the torch ways in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevcf import deps
from edgevcf.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.skipif(bool(deps.missing("torch", "torchvision")),
                                reason="needs torch and torchvision")  # fmt: skip


def test_a_head_description_is_checked_before_any_weights() -> None:
    from edgevcf.architecture import check_head

    check_head(("dropout:0.2", "linear:64", "relu", "batchnorm", "linear:2"), "m.toml")
    for bad, words in (
        (("linear:64", "relu"), "must end in linear:1"),
        (("linear:64", "linear:3"), "must end in linear:1"),
        (("linear:x", "linear:1"), "positive output size"),
        (("dropout:1.5", "linear:1"), "probability in [0, 1)"),
        (("swoosh", "linear:1"), "unknown layer"),
        ((), "needs a last linear"),
    ):
        with pytest.raises(ConfigError, match=None) as err:
            check_head(bad, "m.toml")
        assert words in err.value.message, (bad, err.value.message)


def test_a_declared_head_and_grey_stem_build_and_round_trip(tmp_path: Path) -> None:
    import torch

    from edgevcf.architecture import Structure
    from edgevcf.models import build_model, load_checkpoint, save_checkpoint

    s = Structure(head=("linear:32", "silu", "dropout:0.1", "linear:1"), in_channels=1)
    net = build_model("mobilenet_v3_small", s).eval()
    assert isinstance(net.classifier[3], torch.nn.Linear) and net.classifier[0].out_features == 32
    assert net.features[0][0].in_channels == 1
    from edgevcf.models import CheckpointMeta, get_spec

    meta = CheckpointMeta("mobilenet_v3_small", get_spec("mobilenet_v3_small").default_preprocess(
        channels=1, mean=(0.5,), std=(0.25,)), structure=s.to_dict())  # fmt: skip
    save_checkpoint(tmp_path / "c.safetensors", net, meta)
    back, meta2 = load_checkpoint(tmp_path / "c.safetensors")
    assert Structure.from_dict(meta2.structure) == s
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(back(x).numpy(), net(x).numpy())


@pytest.mark.parametrize("positive_index", [0, 1])
def test_a_two_class_head_folds_into_one_exact_logit(positive_index: int) -> None:
    import torch

    from edgevcf.architecture import fold_two_classes

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(8, 2))
    state = fold_two_classes(dict(lin.state_dict()), "0", positive_index, "x")
    one = torch.nn.Sequential(torch.nn.Linear(8, 1))
    one.load_state_dict(state)
    x = torch.randn(5, 8)
    with torch.no_grad():
        want = torch.softmax(lin(x), 1)[:, positive_index]
        np.testing.assert_allclose(torch.sigmoid(one(x)).reshape(-1), want, atol=1e-6)
    three = torch.nn.Sequential(torch.nn.Linear(8, 3))
    with pytest.raises(CheckpointError, match="3 outputs"):
        fold_two_classes(dict(three.state_dict()), "0", 1, "x")


def test_timm_backbones_by_name() -> None:
    if not deps.available("timm"):
        pytest.skip(deps.DEPENDENCIES["timm"].hint)
    from edgevcf.models import build_model, get_spec

    spec = get_spec("timm:mobilenetv3_small_050")
    assert spec.input_size == 224 and spec.head == "classifier" and spec.small_head_init
    net = build_model("timm:mobilenetv3_small_050")
    assert net.get_classifier().out_features == 1
    assert float(net.get_classifier().weight.abs().max()) < 0.1  # the small head init
    with pytest.raises(ConfigError, match="timm has no model"):
        get_spec("timm:mobilenetv3_nonesuch")


def test_files_are_told_by_content_and_outputs_become_the_logit(tmp_path: Path) -> None:
    import torch

    from edgevcf.intake.torch_program import EXPORTED, TORCHSCRIPT, sniff, to_logit

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    x = torch.randn(3, 3, 2, 2)
    torch.save(net.state_dict(), tmp_path / "a.bin")
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.trace(net, x), str(tmp_path / "b.bin"))
    torch.export.save(torch.export.export(net, (x,)), str(tmp_path / "c.bin"))
    (tmp_path / "d.bin").write_bytes(b"not a model")
    assert sniff(tmp_path / "a.bin") == "state_dict"
    assert sniff(tmp_path / "b.bin") == TORCHSCRIPT
    assert sniff(tmp_path / "c.bin") == EXPORTED
    with pytest.raises(CheckpointError, match="not a model file"):
        sniff(tmp_path / "d.bin")
    z = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    p = torch.softmax(z, 1)
    for pos in (0, 1):
        want = (z[:, pos] - z[:, 1 - pos]).numpy()
        np.testing.assert_allclose(to_logit(z, "two_logits", pos).reshape(-1), want, atol=1e-12)
        np.testing.assert_allclose(to_logit(p, "softmax", pos).reshape(-1), want, atol=1e-12)
    q = torch.sigmoid(z[:, :1])
    np.testing.assert_allclose(to_logit(q, "probability", 1), z[:, :1], atol=1e-12)
