import pytest
import torch

from segrun import models
from segrun.spec import ModelSpec


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_hrnetv2_w48_has_the_reference_parameter_count():
    assert parameter_count(models.create("hrnet", 19, backbone="hrnet_w48")) == 65_859_379


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("height, width", [(64, 128), (50, 102)])
def test_every_model_returns_its_outputs_at_input_size(name, height, width):
    torch.manual_seed(0)
    model = models.create(name, 5, backbone="hrnet_w18_small").eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, height, width))
    assert len(outputs) == len(models.output_names(ModelSpec(name=name, backbone="hrnet_w18_small")))
    for output in outputs:
        assert output.shape == (2, 5, height, width)
        assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_trains_a_step(name):
    torch.manual_seed(0)
    model = models.create(name, 3, backbone="hrnet_w18_small")
    outputs = model(torch.randn(2, 3, 64, 64))
    sum(output.mean() for output in outputs).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_create_rejects_unknown_names_and_drops_none_options():
    with pytest.raises(ValueError, match="unknown model 'nope'; known: hrnet"):
        models.create("nope", 19)
    model = models.create("hrnet", 4, backbone="hrnet_w18_small", align_corners=None)
    assert model.align_corners is True


def test_init_loads_matching_tensors_and_names_the_rest(tmp_path, capsys):
    from segrun.runner import load_init_weights

    torch.manual_seed(0)
    source = models.create("hrnet", 3, backbone="hrnet_w18_small")
    state = {f"model.{key}": value for key, value in source.state_dict().items()}
    state["model.head.3.weight"] = torch.zeros(7, 270, 1, 1)  # a classifier for another class count
    torch.save({"state_dict": state}, tmp_path / "other.ckpt")

    torch.manual_seed(1)
    target = models.create("hrnet", 3, backbone="hrnet_w18_small")
    load_init_weights(target, tmp_path / "other.ckpt")
    assert torch.equal(target.head[0].weight, source.head[0].weight)
    assert not torch.equal(target.head[3].weight, source.head[3].weight)
    assert "skipped (shape or name differs): head.3.weight" in capsys.readouterr().out


def test_init_from_a_missing_checkpoint_is_a_user_error(tmp_path):
    from segrun.errors import UserError
    from segrun.runner import load_init_weights

    with pytest.raises(UserError, match="init: no such checkpoint"):
        load_init_weights(models.create("hrnet", 3, backbone="hrnet_w18_small"), tmp_path / "none.ckpt")
    with pytest.raises(UserError, match="holds no checkpoints"):
        load_init_weights(models.create("hrnet", 3, backbone="hrnet_w18_small"), tmp_path)
