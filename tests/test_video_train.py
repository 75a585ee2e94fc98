"""`guided train --temporal-weight`: ReReVST's temporal loss on synthetic flow, no video needed."""
from __future__ import annotations

import torch
from fast_helpers import tiny_models, write_photos, write_style

from guided.fast.temporal import smooth_flow, temporal_loss, warp_batch


def test_warp_batch_moves_by_the_flow_and_marks_what_comes_from_outside():
    image = torch.rand(1, 3, 8, 10)
    flow = torch.zeros(1, 8, 10, 2)
    flow[..., 0] = 2.0  # sample 2 px to the right
    warped, valid = warp_batch(image, flow)
    torch.testing.assert_close(warped[..., :8], image[..., 2:])
    assert valid[..., :8].all() and not valid[..., 8:].any()


def test_an_equivariant_network_has_no_temporal_loss_and_a_position_bound_one_has():
    photos = torch.rand(2, 3, 24, 32)
    generator = torch.Generator().manual_seed(0)
    identity = torch.nn.Identity()
    assert float(temporal_loss(identity, photos, identity(photos), generator=generator)) < 1e-10
    pattern = torch.rand(1, 3, 24, 32)

    def stamped(x):
        return 0.5 * x + 0.5 * pattern  # a texture fixed to the frame: it flickers when the scene moves

    assert float(temporal_loss(stamped, photos, stamped(photos), generator=generator)) > 1e-3
    flow = smooth_flow(3, 24, 32, generator=torch.Generator().manual_seed(1))
    assert flow.shape == (3, 24, 32, 2) and flow.abs().max() <= 6.0


def test_training_with_a_temporal_weight_makes_the_network_steadier(tmp_path):
    from guided.fast import TrainConfig, train
    from guided.fast.checkpoint import read_card
    from guided.fast.data import PhotoFolder, sample_photos

    photos, style = write_photos(tmp_path / "photos", n=4), write_style(tmp_path / "style.png")
    base = {"iterations": 20, "image_size": 32, "batch_size": 2, "workers": 0, "checkpoint_every": 100,
            "sample_every": 1000, "lr": 5e-3}
    crops = sample_photos(PhotoFolder.scan(photos).files, 32)
    losses = {}
    for weight in (0.0, 100.0):
        out = tmp_path / f"w{weight:g}.safetensors"
        result = train([style], photos, out, TrainConfig(**base, temporal_weight=weight), models=tiny_models(),
                       progress=False)
        with torch.no_grad():
            losses[weight] = sum(float(temporal_loss(result.net, crops, result.net(crops),
                                                     generator=torch.Generator().manual_seed(k))) for k in range(4))
        assert ("temporal" in result.history[-1]) == (weight > 0)
        assert read_card(out)["config"]["temporal_weight"] == weight
    assert losses[100.0] < 0.3 * losses[0.0], losses
