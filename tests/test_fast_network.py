"""The TransformerNet: any size in, same size out, in [0, 1]; Johnson's parameter count; the file and its card."""
from __future__ import annotations

import pickle

import pytest
import torch
from fast_helpers import saved_network

from guided.errors import GuidedError
from guided.fast.checkpoint import load_network, read_card, save_network
from guided.fast.network import TransformerNet, count_parameters


@pytest.mark.parametrize("hw", [(32, 48), (33, 50), (41, 29), (8, 8)])
def test_any_size_in_same_size_out_in_unit_range(hw):
    net = TransformerNet("half").eval()
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert 0 <= float(y.min()) and float(y.max()) <= 1


def test_padding_is_cropped_back_exactly():
    """A size that is not a multiple of 4 is reflection-padded, run and cropped back inside `forward`:
    exactly what padding by hand and cropping the result gives."""
    net = TransformerNet("half").eval()
    x = torch.rand(1, 3, 30, 42)
    with torch.no_grad():
        y = net(x)
        y_manual = net.out(net.up(net.res(net.down(torch.nn.functional.pad(x, [0, 2, 0, 2], mode="reflect")))))
    assert torch.allclose(y, torch.sigmoid(y_manual[:, :, :30, :42]), atol=1e-6)


def test_widths_match_johnson_parameter_counts():
    assert count_parameters(TransformerNet("full")) == 1_679_235  # pytorch/examples' TransformerNet, 1.68 M
    assert count_parameters(TransformerNet("half")) < count_parameters(TransformerNet("full")) / 3.5
    with pytest.raises(GuidedError, match="`width`"):
        TransformerNet("quarter")


def test_card_round_trips_and_network_reloads(tmp_path):
    torch.manual_seed(3)
    net = TransformerNet("full").eval()
    card = {"styles": [{"name": "mosaic.jpg", "sha256": "ab" * 32}], "prompt": "stained glass",
            "weights": {"gram": 4.0, "content": 1.0}, "final_losses": {"gram": 0.25}, "iterations": 12}
    path = save_network(net, tmp_path / "net.safetensors", card)
    assert read_card(path) == {**card, "width": "full"}
    loaded, loaded_card = load_network(path)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert loaded_card["prompt"] == "stained glass" and not any(p.requires_grad for p in loaded.parameters())


def test_bad_network_files_are_refused_with_one_line(tmp_path):
    good = saved_network(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    pickled = tmp_path / "net.pth"
    pickled.write_bytes(pickle.dumps({"weight": [1, 2, 3]}))
    torch_saved = tmp_path / "torch.safetensors"
    torch.save({"w": torch.zeros(2)}, torch_saved)
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    cases = {truncated: "not a readable safetensors", pickled: "pickle", torch_saved: "pickle",
             foreign: "not a guided-fast-network", tmp_path: "is a folder",
             tmp_path / "missing.safetensors": "does not exist"}
    for path, message in cases.items():
        with pytest.raises(GuidedError) as info:
            load_network(path)
        assert message in str(info.value) and str(path) in str(info.value)
        assert "\n" not in str(info.value)
