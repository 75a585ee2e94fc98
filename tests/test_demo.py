"""`make demo`'s job, run quick: every promised file exists and parses, labelled when random."""
import json

from guided.demo import main
from guided.io.images import read_metadata


def test_demo_quick_writes_every_output(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--quick"]) == 0
    for name in ("content.png", "style.png", "gatys.png", "gatys_losses.png", "stylize.png", "report.md",
                 "compare/report.html", "compare/metrics.json"):
        assert (tmp_path / name).is_file(), name
    report = (tmp_path / "report.md").read_text()
    assert "Classic neural style transfer" in report and "Guided Stable Diffusion" in report
    # No real weights in the test environment: both paths must say they are random / tiny.
    err = capsys.readouterr().err
    assert "RANDOM VGG-19" in err and "TINY RANDOM models" in err
    assert "Smoke run" in report
    assert read_metadata(tmp_path / "gatys.png")["kind"] == "gatys"
    assert read_metadata(tmp_path / "stylize.png")["parameters"]["tiny"] is True
    json.loads((tmp_path / "compare" / "metrics.json").read_text())
