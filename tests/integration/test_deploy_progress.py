"""``python -m drgrade.deploy``'s progress bar counts every entry of the folder, as its summary does."""

import re
import shutil

from drgrade.serving.export import export_onnx
from drgrade.serving.runner import main as deploy_main
from drgrade.tasks import FCNCLIP


def test_the_bar_ends_at_the_folders_count_with_a_file_it_skips(synthetic, tmp_path, capsys):
    task = FCNCLIP("RN-tiny", None, 64, decoder_widths=(16, 8, 8)).eval()
    model = export_onnx(task, tmp_path / "m.onnx", 64)
    folder = tmp_path / "photos"
    folder.mkdir()
    for photograph in sorted((synthetic / "aptos2019" / "train_images").iterdir())[:3]:
        shutil.copy(photograph, folder)
    (folder / "notes.txt").write_text("not a photograph")
    deploy_main([str(model), str(folder), "--out", str(tmp_path / "p.csv"), "--workers", "0"])
    printed = capsys.readouterr()
    counts = re.findall(r"grading:.*?(\d+)/(\d+) \[", printed.err)
    assert counts[-1] == ("4", "4")
    assert printed.out.startswith("4 file(s) into")
