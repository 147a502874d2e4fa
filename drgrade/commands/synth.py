"""Write synthetic APTOS 2019 / Messidor-2 folders in their native download layouts."""

from __future__ import annotations

from pathlib import Path

from drgrade.commands.options import add_switch
from drgrade.data.synthetic import write_synthetic

MODEL_BOUND = False


def add_arguments(parser) -> None:
    """``--out`` and the generator's sizes.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument(
        "--out", type=Path, required=True, help="folder to write aptos2019/ and messidor2/ into"
    )
    parser.add_argument("--num_aptos", type=int, default=600, help="APTOS images")
    parser.add_argument("--num_messidor", type=int, default=300, help="Messidor-2 images")
    parser.add_argument("--image_size", type=int, default=384, help="image height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")
    add_switch(parser, "--force", "overwrite non-empty aptos2019/ or messidor2/")


def run(cli) -> None:
    """Generate the folders.

    Args:
        cli: the running ``DRGradeCLI``.
    """
    opts = cli.options()
    aptos, messidor = write_synthetic(
        opts.out, opts.num_aptos, opts.num_messidor, opts.image_size, opts.seed, opts.force
    )
    print(f"wrote {aptos} and {messidor}")
