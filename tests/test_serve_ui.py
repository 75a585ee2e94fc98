"""The web UI's actions without a browser: a job queued from the UI, followed to its result."""
from __future__ import annotations

import pytest
from factories import painting, photo
from serve_helpers import client_for

from guided.errors import GuidedError


def test_a_ui_job_is_followed_from_queue_to_result(tmp_path, stylizer):
    from guided.serve import ui_jobs

    with client_for(tmp_path, stylizer) as client:
        state = client.app.state.guided
        state.ui_upload_dir.mkdir(parents=True)  # where the UI library puts what the page uploads
        photo(48, 64).save(state.ui_upload_dir / "p.png")
        job_id = ui_jobs.start_job(state, "stylize", str(state.ui_upload_dir / "p.png"), [],
                                   {"prompt": "ink", "steps": 4, "strength": 0.5, "size": 32, "seed": None})
        updates = list(ui_jobs.follow(state, job_id))
        last = updates[-1]
        assert last.error is None and last.result is not None
        before, after = last.result
        assert before.size == after.size and f"/api/v1/jobs/{job_id}/image" in last.download
        assert "peak memory" in last.info and "tiny random models" in last.info
        assert last.losses.size == (460, 300)  # the loss curves, drawn on the server
        assert "Done" in last.status and all("g-progress" in u.status for u in updates)
        assert ui_jobs.cancel(state, job_id) == "Nothing to cancel"


def test_ui_mistakes_are_one_readable_line_and_queue_nothing(tmp_path, stylizer):
    from guided.serve import ui_jobs

    with client_for(tmp_path, stylizer) as client:
        state = client.app.state.guided
        uploads = state.ui_upload_dir
        uploads.mkdir(parents=True)
        painting(1).save(uploads / "p.png")
        painting(1).save(tmp_path / "elsewhere.png")
        (uploads / "bad.png").write_bytes(b"not an image")
        for args, words in [(("stylize", None, [], {"prompt": "x"}), "Upload a photo first"),
                            (("stylize", str(tmp_path / "elsewhere.png"), [], {"prompt": "x"}), "not uploaded"),
                            (("stylize", str(uploads / "../../elsewhere.png"), [], {"prompt": "x"}), "not uploaded"),
                            (("gatys", str(uploads / "p.png"), [], {}), "`style` is missing"),
                            (("stylize", str(uploads / "bad.png"), [], {"prompt": "x"}), "not a readable image"),
                            (("stylize", str(uploads / "p.png"), [], {"strength": 3, "prompt": "x"}), "`strength`"),
                            (("fast", str(uploads / "p.png"), [], {"net": "x.onnx"}), "`net`")]:
            with pytest.raises(GuidedError, match=words) as info:
                ui_jobs.start_job(state, *args)
            assert "\n" not in str(info.value) and str(uploads) not in str(info.value)
        assert state.store.all() == []


def test_the_loss_curves_draw_every_term_in_its_colour():
    from guided.serve.ui_jobs import TERM_COLORS, loss_curves

    rows = [{"step": i, "clip_text": 1.5 - 0.01 * i, "content": 0.02 + 0.001 * i} for i in range(1, 20)]
    image = loss_curves(rows)
    colours = {tuple(int(TERM_COLORS[t][k:k + 2], 16) for k in (1, 3, 5)) for t in ("clip_text", "content")}
    assert colours <= set(image.getdata())  # both curves are on it
    empty = loss_curves([])
    assert tuple(int(TERM_COLORS["clip_text"][k:k + 2], 16) for k in (1, 3, 5)) not in set(empty.getdata())
