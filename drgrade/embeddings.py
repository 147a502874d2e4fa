"""Pooled image embeddings of a frozen backbone, as a Parquet table anyone can build on.

One row per image: ``file``, ``source``, ``patient``, ``grade`` (empty where unknown),
``split`` and ``embedding`` (the encoder's pooled image embedding, before L2 normalisation,
as a list of float32). The encoder is a CLIP model's image tower, or for the CNN baseline the
pooled features its classifier reads (``task_encoder``). The file's metadata (key ``drgrade``)
holds what the embeddings are of (``identity``: the encoder's weights digest, image size,
normalisation, the images and their splits), a CLIP backbone's zero-shot text classifiers (one
per template set, for Tip-Adapter; none for a CNN) and its logit scale. A file whose identity
matches is reused, so a backbone's embeddings are computed once and every adaptation model
(linear probe, Tip-Adapter) reads the same ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from drgrade.data.dataset import UNKNOWN, FundusDataset
from drgrade.data.sources import Record
from drgrade.data.splits import image_key
from drgrade.errors import OptionError
from drgrade.grades import GRADES, TEMPLATE_SETS, grade_prompts

METADATA_KEY = b"drgrade"
COLUMNS = ("file", "image", "source", "patient", "grade", "split", "embedding")


@dataclass
class Embeddings:
    """A table of embeddings and what they are of (see the module docstring)."""

    frame: pd.DataFrame
    #: ``identity``, ``text_classifiers`` ({template set: [K][D]}), ``logit_scale``.
    metadata: dict

    def vectors(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The embeddings [N, D] (float32) of ``rows`` (positions; default all)."""
        column = self.frame["embedding"] if rows is None else self.frame["embedding"].iloc[rows]
        return np.stack(column.to_numpy()).astype(np.float32)


@dataclass
class Encoder:
    """What embeds images: its weights, how it encodes, its input normalisation, its text tower.

    Args:
        module: the network whose weights say which encoder this is.
        encode: images [B, 3, H, W] -> pooled embeddings [B, D].
        normalisation: the (mean, std) its inputs are normalised with.
        backbone: a CLIP backbone (its text tower gives the zero-shot classifiers), or None.
    """

    module: torch.nn.Module
    encode: Callable[[torch.Tensor], torch.Tensor]
    normalisation: tuple
    backbone: object | None = None


def clip_encoder(backbone) -> Encoder:
    """A CLIP backbone's image tower: its pooled embedding before L2 normalisation."""
    return Encoder(
        backbone,
        lambda images: backbone.encode_image(images, normalize=False),
        backbone.normalisation,
        backbone,
    )


def task_encoder(task) -> Encoder:
    """What embeds for ``task``: its CLIP backbone, or a CNN's pooled features (no text tower)."""
    backbone = getattr(task, "backbone", None)
    if backbone is not None:
        return clip_encoder(backbone)
    network = getattr(task, "network", None)
    if network is not None:  # the CNN baseline: what its classifier reads
        return Encoder(network, task.embedding, task.normalisation())
    raise OptionError(
        f"{type(task).__name__} has no image encoder of its own to embed with (an ensemble: embed one of "
        "its members)"
    )


def backbone_digest(backbone: torch.nn.Module) -> str:
    """SHA-256 over the encoder's weights (names, shapes and values): which encoder this is."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def embedding_identity(
    encoder: Encoder, records: Sequence[Record], splits: Sequence[str], image_size: int
) -> dict:
    """What a table of embeddings is of: encoder weights, input size and normalisation, images.

    Args:
        encoder: the encoder (``task_encoder``, ``clip_encoder``).
        records: the images embedded.
        splits: each image's split.
        image_size: the input size.
    """
    items = "\n".join(sorted(f"{image_key(r)}:{s}" for r, s in zip(records, splits, strict=True)))
    return {
        "backbone": backbone_digest(encoder.module),
        "image_size": int(image_size),
        "normalisation": [list(map(float, part)) for part in encoder.normalisation],
        "images": hashlib.sha256(items.encode()).hexdigest(),
        "count": len(records),
    }


@torch.no_grad()
def embed_dataset(
    encoder: Encoder, dataset: FundusDataset, batch_size: int = 32
) -> tuple[np.ndarray, list[str]]:
    """Pooled embeddings [N, D] of every image of ``dataset`` and each image's read error ("" if none).

    Args:
        encoder: a frozen encoder.
        dataset: the images (evaluation transform).
        batch_size: images per forward pass.
    """
    encoder.module.eval()
    vectors, errors = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        vectors.append(encoder.encode(batch["image"]).float().cpu().numpy())
        errors += list(batch["error"])
    return np.concatenate(vectors), errors


@torch.no_grad()
def text_classifiers(backbone) -> dict[str, list[list[float]]]:
    """Every template set's zero-shot classifier as [K][D] lists (unit rows), for Tip-Adapter.

    None for an encoder without a text tower (a CNN): the adapters then use their own prototypes.
    """
    if backbone is None:
        return {}
    out = {}
    for name in TEMPLATE_SETS:
        weights = backbone.zero_shot_classifier([grade_prompts(g, name) for g in GRADES])  # [D, K]
        out[name] = weights.float().T.cpu().tolist()
    return out


def embedding_file(folder: Path, identity: dict) -> Path:
    """Where a shared cache keeps the embeddings of ``identity``: one file per backbone, images, splits."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{digest}.parquet"


def cached_embeddings(
    path: Path,
    task,
    records: Sequence[Record],
    splits: Sequence[str],
    dataset: FundusDataset,
    identity: dict | None = None,
) -> Embeddings:
    """The embeddings at ``path`` when they are of this backbone, these images and splits; else new ones.

    Args:
        path: the Parquet file (read if its identity matches, (re)written otherwise).
        task: the model whose backbone embeds.
        records: the images.
        splits: each image's split.
        dataset: ``records`` as a dataset with the model's evaluation transform.
        identity: ``embedding_identity`` when the caller has it.
    """
    identity = identity or embedding_identity(task_encoder(task), records, splits, dataset.image_size)
    if stored_identity(path) == identity:
        print(f"embeddings of this backbone and these images are cached: {path}")
        return read_embeddings(path)
    embeddings = embed(task, records, splits, dataset, identity=identity)
    write_embeddings(path, embeddings)
    return embeddings


def embed(
    task,
    records: Sequence[Record],
    splits: Sequence[str],
    dataset: FundusDataset,
    batch_size: int = 32,
    identity: dict | None = None,
) -> Embeddings:
    """Embed ``dataset`` (the images of ``records``, in order) with ``task``'s backbone.

    Images that cannot be read are left out (and printed).

    Args:
        task: a drgrade task with an image encoder (any CLIP model or the CNN; not an ensemble).
        records: the images.
        splits: each image's split (``predict`` for a folder).
        dataset: ``records`` as a dataset with the model's evaluation transform.
        batch_size: images per forward pass.
        identity: ``embedding_identity`` when the caller has it.
    """
    encoder = task_encoder(task)
    vectors, errors = embed_dataset(encoder, dataset, batch_size)
    for record, error in zip(records, errors, strict=True):
        if error:
            print(f"not embedded: {record.path}: {error}")
    kept = [i for i, error in enumerate(errors) if not error]
    frame = pd.DataFrame(
        {
            "file": [str(records[i].path) for i in kept],
            "image": [image_key(records[i]) for i in kept],
            "source": [records[i].source for i in kept],
            "patient": [records[i].patient_id for i in kept],
            "grade": pd.array(
                [None if records[i].grade == UNKNOWN else records[i].grade for i in kept], dtype="Int64"
            ),
            "split": [splits[i] for i in kept],
            "embedding": [vectors[i] for i in kept],
        }
    )
    metadata = {
        "identity": identity or embedding_identity(encoder, records, splits, dataset.image_size),
        "text_classifiers": text_classifiers(encoder.backbone),
        "logit_scale": None if encoder.backbone is None else float(encoder.backbone.logit_scale),
    }
    return Embeddings(frame, metadata)


def write_embeddings(path: str | Path, embeddings: Embeddings) -> Path:
    """Write the table as Parquet with its metadata (``METADATA_KEY``); returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(embeddings.frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {}) | {METADATA_KEY: json.dumps(embeddings.metadata).encode()}
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table.replace_schema_metadata(metadata), temporary)
    temporary.replace(path)
    return path


def read_embeddings(path: str | Path) -> Embeddings:
    """A table ``write_embeddings`` wrote; says so when ``path`` is not one."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise OptionError(f"embeddings {path}: no such file; write one with `drgrade embed`")
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several kinds for a file that is not Parquet
        raise OptionError(f"embeddings {path} is not a Parquet file ({error})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if raw is None or missing:
        raise OptionError(f"embeddings {path} was not written by `drgrade embed` (no drgrade metadata)")
    return Embeddings(table.to_pandas(), json.loads(raw))


def stored_identity(path: Path) -> dict | None:
    """The identity recorded in an embeddings file (None: no such file, or not one)."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    except (OSError, ValueError):
        return None
    return None if raw is None else json.loads(raw).get("identity")
