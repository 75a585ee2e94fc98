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
    assert read_card(path) == {**card, "width": "full", "input_noise": 0.0}
    loaded, loaded_card = load_network(path)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    assert loaded_card["prompt"] == "stained glass" and not any(p.requires_grad for p in loaded.parameters())


def test_input_noise_is_a_fixed_pattern_that_lets_flat_regions_vary(tmp_path):
    """With `input_noise` a flat input no longer gives a flat output (the reason for the option); the
    pattern is fixed (same input, same output), repeats past its tile, survives the file, and adds
    no tensors to it (a network trained without noise loads with it and vice versa)."""
    torch.manual_seed(4)
    plain = TransformerNet("half").eval()
    noisy = TransformerNet("half", input_noise=0.05).eval()
    noisy.load_state_dict(plain.state_dict())
    flat = torch.full((1, 3, 160, 300), 0.5)

    def spread(y):  # per-channel std away from the border (the receptive field's radius is ~57 px)
        return float(y[..., 60:-60, 60:-60].std(dim=(-2, -1)).max())

    with torch.no_grad():
        assert spread(plain(flat)) < 1e-5  # a conv net paints a flat sky flat
        out = noisy(flat)
        assert spread(out) > 1e-3
        assert torch.equal(out, noisy(flat))
        assert torch.equal(noisy._noise_like(160, 300)[..., :256], noisy.noise[..., :160, :256])
        assert torch.equal(noisy._noise_like(160, 300)[..., 256:], noisy.noise[..., :160, :44])
    path = save_network(noisy, tmp_path / "noisy.safetensors", {"kind": "fast-network"})
    assert read_card(path)["input_noise"] == 0.05
    loaded, _ = load_network(path)
    with torch.no_grad():
        assert torch.equal(loaded(flat), out)
    assert set(noisy.state_dict()) == set(plain.state_dict())
    with pytest.raises(GuidedError, match="`input_noise` must be in \\[0, 1\\], got -0.1"):
        TransformerNet("half", input_noise=-0.1)


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


def test_a_network_whose_header_length_starts_with_pickles_marker_still_loads(tmp_path):
    """safetensors files begin with their header's length: a low byte of 0x80 (1 file in 256) is not a pickle."""
    import struct

    from guided.fast.checkpoint import load_network, save_network
    from guided.fast.network import TransformerNet

    net = TransformerNet("half")
    for pad in range(300):  # card sizes until the header length's low byte is 0x80
        path = save_network(net, tmp_path / f"n{pad}.safetensors", {"note": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
        path.unlink()
    else:
        raise AssertionError("no card size gave a header length ending in 0x80")
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] % 256 == 0x80
    loaded, card = load_network(path)
    assert card["note"].startswith("x")
