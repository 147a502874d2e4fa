"""The paper's published numbers, shown by ``report --paper``.

S. Cho, "Diabetic Retinopathy Grading with CLIP-based Ranking-Aware Adaptation: A Comparative
Study on Fundus Images", HKUST, March 2026: Tables 3 and 4. AUROC is the macro one-vs-rest value
quoted in its text.
"""

from __future__ import annotations

#: The paper, as the report cites it.
CITATION = (
    'S. Cho, "Diabetic Retinopathy Grading with CLIP-based Ranking-Aware Adaptation: A Comparative '
    'Study on Fundus Images", HKUST, March 2026 (Tables 3 and 4)'
)
#: metric key (as in metrics.json) -> {model column: value}
TABLE3: dict[str, dict[str, float]] = {
    "precision_no": {"Zero-shot": 0.82, "FCN-CLIP": 0.97, "Ranking": 0.99},
    "recall_no": {"Zero-shot": 0.61, "FCN-CLIP": 0.98, "Ranking": 0.99},
    "f1_no": {"Zero-shot": 0.70, "FCN-CLIP": 0.97, "Ranking": 0.99},
    "precision_mild": {"Zero-shot": 0.20, "FCN-CLIP": 0.93, "Ranking": 0.91},
    "recall_mild": {"Zero-shot": 0.46, "FCN-CLIP": 0.79, "Ranking": 0.88},
    "f1_mild": {"Zero-shot": 0.28, "FCN-CLIP": 0.86, "Ranking": 0.89},
    "precision_moderate": {"Zero-shot": 0.54, "FCN-CLIP": 0.96, "Ranking": 0.97},
    "recall_moderate": {"Zero-shot": 0.48, "FCN-CLIP": 0.91, "Ranking": 0.97},
    "f1_moderate": {"Zero-shot": 0.51, "FCN-CLIP": 0.93, "Ranking": 0.97},
    "precision_severe": {"Zero-shot": 0.85, "FCN-CLIP": 0.65, "Ranking": 0.52},
    "recall_severe": {"Zero-shot": 0.50, "FCN-CLIP": 0.82, "Ranking": 0.83},
    "f1_severe": {"Zero-shot": 0.63, "FCN-CLIP": 0.73, "Ranking": 0.64},
    "precision_proliferative": {"Zero-shot": 0.86, "FCN-CLIP": 0.66, "Ranking": 0.81},
    "recall_proliferative": {"Zero-shot": 0.60, "FCN-CLIP": 0.74, "Ranking": 0.50},
    "f1_proliferative": {"Zero-shot": 0.71, "FCN-CLIP": 0.70, "Ranking": 0.62},
    "accuracy": {"Zero-shot": 0.5517, "FCN-CLIP": 0.9249, "Ranking": 0.9342},
    "macro_precision": {"Zero-shot": 0.65, "FCN-CLIP": 0.83, "Ranking": 0.84},
    "macro_recall": {"Zero-shot": 0.53, "FCN-CLIP": 0.85, "Ranking": 0.83},
    "auroc_macro": {"Zero-shot": 0.75, "FCN-CLIP": 0.99, "Ranking": 0.9845},
}

#: model column -> (exact, off by one, off by two or more), as fractions
TABLE4: dict[str, tuple[float, float, float]] = {
    "Zero-shot": (0.60, 0.30, 0.10),
    "FCN-CLIP": (0.75, 0.22, 0.03),
    "Ranking": (0.80, 0.18, 0.02),
}

#: The paper's setup (its section 4, Table 2 and Appendix A), to say what a run does differently.
SETUP = {
    "backbone": "RN50",
    "weights": "openai",
    "sources": ("aptos2019", "messidor2"),
    "images": 5406,
    "epochs": 20,
}


def differences(provenance: dict) -> list[str]:
    """How a run's setup (its metrics.json ``provenance``) differs from the paper's, in words."""
    found = []
    weights = provenance.get("weights") or {}
    if weights.get("backbone") and weights["backbone"] != SETUP["backbone"]:
        found.append(f"backbone {weights['backbone']} (paper: a ResNet CLIP image encoder, RN50 here)")
    if weights.get("weights") and weights["weights"] != SETUP["weights"]:
        found.append(f"weights {weights['weights']} (paper: CLIP's pretrained weights)")
    data = provenance.get("data") or {}
    sources = data.get("sources") or {}
    synthetic = sorted(name for name, source in sources.items() if source.get("synthetic"))
    if synthetic:
        found.append(f"SYNTHETIC photographs ({', '.join(synthetic)}), not the real datasets")
    if sources and set(sources) != set(SETUP["sources"]):
        found.append(f"sources {', '.join(sorted(sources))} (paper: APTOS 2019 + Messidor-2)")
    images = sum(s.get("train", 0) + s.get("val", 0) + s.get("test", 0) for s in sources.values())
    if sources and images != SETUP["images"]:
        found.append(f"{images} images (paper: {SETUP['images']})")
    budget = (provenance.get("training") or {}).get("max_epochs")
    if budget is not None and budget != SETUP["epochs"]:
        found.append(f"at most {budget} epochs (paper: {SETUP['epochs']}, early stopping patience 7)")
    return found
