import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drgrade.errors import WeightsFileError
from drgrade.grades import GRADES, TEMPLATE_SETS, grade_text
from drgrade.models.backbones import build_backbone
from drgrade.models.cbam import CBAM
from drgrade.models.losses import focal_loss, ranking_loss
from drgrade.models.prompt_learner import PromptLearner
from drgrade.tasks import FCNCLIP, RankingCLIP, ZeroShotCLIP


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_backbone("RN-tiny", None, 96)


def test_feature_map_shapes_tiny(tiny):
    maps = tiny.feature_maps(torch.randn(2, 3, 96, 96), ("layer1", "layer2", "layer3", "layer4"))
    assert [tuple(m.shape) for m in maps.values()] == [
        (2, 32, 24, 24),
        (2, 64, 12, 12),
        (2, 128, 6, 6),
        (2, 256, 3, 3),
    ]
    assert tiny.encode_image(torch.randn(2, 3, 96, 96)).shape == (2, 64)


def test_feature_map_shapes_rn50():
    rn50 = build_backbone("RN50", None, 224)
    with torch.no_grad():
        maps = rn50.feature_maps(torch.randn(1, 3, 224, 224), ("layer3", "layer4"))
    assert maps["layer3"].shape == (1, 1024, 14, 14) and maps["layer4"].shape == (1, 2048, 7, 7)
    assert rn50.feature_channels("layer4") == 2048 and rn50.embed_dim == 1024


def test_text_from_embeddings_equals_text_from_tokens(tiny):
    tokens = tiny.tokenize(["a fundus photograph showing mild diabetic retinopathy.", "no dr"])
    direct = tiny.encode_text(tokens)
    via_embeddings = tiny.encode_prompt_embeddings(tiny.token_embeddings(tokens), tokens)
    assert torch.allclose(direct, via_embeddings, atol=1e-6)


def test_frozen_towers_get_no_gradient_and_keep_bn_stats(tiny):
    tiny.train()
    assert not tiny.visual.training
    bn = tiny.visual.bn1
    before = bn.running_mean.clone()
    tiny.encode_image(torch.randn(4, 3, 96, 96) * 3 + 1).sum()
    assert torch.equal(bn.running_mean, before)
    assert all(not p.requires_grad for p in tiny.parameters())


def test_missing_weights_error_says_what_to_do(tmp_path):
    with pytest.raises(WeightsFileError, match="no such file, and not an open_clip tag"):
        build_backbone("RN50", str(tmp_path / "RN50.pt"), None)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match=r"--model.backbone.pretrained|pretrained null"):
        build_backbone("RN50", str(broken), None)


def test_cbam_equals_appendix_a_listing():
    class Listing(nn.Module):  # the paper's Appendix A code, verbatim in behaviour
        def __init__(self, channels, reduction=16):
            super().__init__()
            self.channel_gate = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(channels, channels // reduction, 1),
                nn.ReLU(),
                nn.Conv2d(channels // reduction, channels, 1),
                nn.Sigmoid(),
            )
            self.spatial_gate = nn.Sequential(nn.Conv2d(channels, 1, 7, padding=3), nn.Sigmoid())

        def forward(self, x):
            x = x * self.channel_gate(x)
            return x * self.spatial_gate(x)

    ours, reference = CBAM(64), Listing(64)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 64, 9, 9)
    gated, spatial = ours(x)
    assert torch.allclose(gated, reference(x), atol=1e-6)
    assert spatial.shape == (2, 1, 9, 9) and torch.allclose(
        spatial, reference.spatial_gate(x * reference.channel_gate(x))
    )


@pytest.mark.parametrize("layer,channels", [("layer3", 128), ("layer4", 256)])
def test_fcn_head_shapes(layer, channels):
    task = FCNCLIP("RN-tiny", None, 96, feature_layer=layer, decoder_widths=(64, 32, 16))
    assert task.head.decoder[0].in_channels == channels
    images = torch.randn(3, 3, 96, 96)
    assert task(images).shape == (3, 5)
    maps, probs, _ = task.attention_maps(images)
    assert maps.shape == (3, 96, 96) and probs.shape == (3, 5)


def test_fcn_frozen_tower_unchanged_head_updated():
    task = FCNCLIP("RN-tiny", None, 96, decoder_widths=(32, 16, 8))
    task.train()
    tower = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    head = {k: v.clone() for k, v in task.head.state_dict().items()}
    optimizer = task.configure_optimizers()
    loss = task.criterion(task(torch.randn(8, 3, 96, 96)), torch.arange(8) % 5)
    loss.backward()
    optimizer.step()
    assert all(torch.equal(v, task.backbone.state_dict()[k]) for k, v in tower.items())
    assert any(not torch.equal(v, task.head.state_dict()[k]) for k, v in head.items())
    assert len(optimizer.param_groups) == 1


def test_focal_loss_by_hand_and_gamma_zero_is_ce():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.1], [0.0, 0.0, 3.0, 0.0, 0.0]])
    targets = torch.tensor([1, 2])
    p = logits.softmax(1)[torch.arange(2), targets]
    hand = (-((1 - p) ** 2) * p.log()).mean()
    assert torch.allclose(focal_loss(logits, targets, 2.0), hand)
    assert torch.allclose(focal_loss(logits, targets, 0.0), F.cross_entropy(logits, targets))


def test_ranking_loss_by_hand():
    target = torch.tensor([2])
    ordered = torch.tensor([[0.0, 1.0, 2.0, 1.0, 0.0]])  # every adjacent pair ordered by 1.0
    assert float(ranking_loss(ordered, target, margin=0.5)) == 0.0
    one_inversion = torch.tensor([[0.0, 1.0, 2.0, 0.0, 1.0]])  # 3 below 4: hinge 0.5 + 1 = 1.5
    two_inversions = torch.tensor([[1.0, 0.0, 2.0, 0.0, 1.0]])
    assert float(ranking_loss(one_inversion, target, margin=0.5)) == pytest.approx(1.5 / 4)
    assert float(ranking_loss(two_inversions, target, 0.5)) > float(ranking_loss(one_inversion, target, 0.5))
    logistic = float(ranking_loss(ordered, target, form="logistic"))
    assert 0 < logistic < float(ranking_loss(one_inversion, target, form="logistic"))


def test_prompt_learner_equals_plain_text_path(tiny):
    texts = [g.description for g in GRADES]
    learner = PromptLearner(tiny, texts, ctx_init="a fundus photograph of")
    plain = tiny.encode_text(tiny.tokenize([f"a fundus photograph of {t}." for t in texts]))
    assert torch.allclose(learner(tiny), plain, atol=1e-5)


def test_ranking_gradients_reach_prompts_only_unless_finetuned():
    images, labels = torch.randn(4, 3, 96, 96), torch.tensor([0, 1, 2, 4])
    for finetune in (False, True):
        task = RankingCLIP("RN-tiny", None, 96, finetune_image=finetune)
        task.criterion(task(images), labels).backward()
        assert task.prompts.ctx.grad is not None and task.prompts.ctx.grad.abs().sum() > 0
        assert all(p.grad is None for p in task.backbone.text_parameters())
        image_grads = [p.grad for p in task.backbone.image_parameters()]
        assert all(g is None for g in image_grads) != finetune
        groups = task.configure_optimizers().param_groups
        assert len(groups) == (2 if finetune else 1)


def test_zero_shot_equals_open_clip_classifier():
    task = ZeroShotCLIP("RN-tiny", None, 96, template_sets=["clinical"])
    task.selected.fill_(0)
    images = torch.randn(3, 3, 96, 96)
    clip = task.backbone.clip
    templates = TEMPLATE_SETS["clinical"]
    classifier = open_clip.build_zero_shot_classifier(
        clip, task.backbone.tokenizer, [grade_text(g, "clinical") for g in GRADES], templates
    )
    with torch.no_grad():
        expected = clip.logit_scale.exp() * clip.encode_image(images, normalize=True) @ classifier
        assert torch.allclose(task(images), expected, atol=1e-4)


def test_rank_token_gives_each_grade_a_free_vector(tiny):
    texts = [g.description for g in GRADES]
    learner = PromptLearner(tiny, texts, n_ctx=4, rank_token=True)
    embeddings = learner.embeddings(tiny)
    assert embeddings.shape[:2] == (5, 77)
    assert torch.equal(embeddings[:, 5], learner.rank[:, 0])  # SOT, 4 context vectors, rank token
    assert learner(tiny).shape == (5, tiny.embed_dim)


def test_ranking_checkpoint_round_trip_reproduces_outputs(tmp_path):
    import lightning as L

    from drgrade.tasks import load_task

    task = RankingCLIP("RN-tiny", None, 96, rank_token=True).eval()
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "r.ckpt")
    images = torch.randn(2, 3, 96, 96)
    reloaded = load_task(tmp_path / "r.ckpt").eval()
    with torch.no_grad():
        assert torch.allclose(task(images), reloaded(images), atol=1e-6)
