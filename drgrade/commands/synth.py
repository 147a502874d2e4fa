"""Write synthetic datasets in their native download layouts (every source in ``drgrade.data.sources``)."""

from __future__ import annotations

from pathlib import Path

from drgrade.commands.options import add_switch
from drgrade.data.sources import LAYOUTS, write_layouts, write_synthetic


def add_arguments(parser) -> None:
    """``--out``, ``--layout`` and the generator's sizes.

    Args:
        parser: the verb's parser.
    """
    parser.add_argument("--out", type=Path, required=True, help="folder to write the dataset folders into")
    parser.add_argument(
        "--layout",
        nargs="+",
        type=str,
        default=None,
        help=f"layouts to write, from {', '.join(LAYOUTS)} (default: aptos and messidor2, as the demo uses)",
    )
    parser.add_argument("--num_aptos", type=int, default=600, help="APTOS images (default layouts)")
    parser.add_argument("--num_messidor", type=int, default=300, help="Messidor-2 images (default layouts)")
    parser.add_argument("--num_images", type=int, default=200, help="images per layout named with --layout")
    parser.add_argument("--image_size", type=int, default=384, help="image height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same bytes)")
    add_switch(parser, "--force", "overwrite non-empty dataset folders")


def run(opts) -> None:
    """Generate the folders.

    Args:
        opts: the parsed options.
    """
    if opts.layout is None:
        written = write_synthetic(
            opts.out, opts.num_aptos, opts.num_messidor, opts.image_size, opts.seed, opts.force
        )
    else:
        counts = dict.fromkeys(opts.layout, opts.num_images)
        written = write_layouts(opts.out, counts, opts.image_size, opts.seed, opts.force)
    print(f"wrote {', '.join(map(str, written))}")
