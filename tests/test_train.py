"""Tests of the training loop: learning, exact resume, checkpoint checks, frozen parameters, evaluation."""

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from companion.io import load_checked
from companion.train import History, evaluate, fit, predict


def blobs(n=96, d=6, k=3, seed=0):
    """Well separated Gaussian blobs: a linear model can reach (nearly) 100 % accuracy."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 4
    y = torch.arange(n) % k
    x = centres[y] + torch.randn(n, d, generator=g)
    return x, y


class NoisyBlobs(Dataset):
    """Blobs with augmentation noise from Python's, NumPy's and torch's global generators."""

    def __init__(self, n=60):
        self.x, self.y = blobs(n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        jitter = random.random() + float(np.random.rand()) + torch.rand(()).item()
        return self.x[i] + 0.01 * jitter, self.y[i]


def mlp(seed=0, d=6, k=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(16, k))


def assert_same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


class Crash(Exception):
    pass


def crash_after(n_batches):
    """The default loss, but the process "dies" when batch ``n_batches + 1`` starts."""
    from companion.losses import classification_loss
    calls = {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        if calls["n"] > n_batches:
            raise Crash
        return classification_loss(model, batch)
    loss.__qualname__ = "classification_loss"  # the same configuration as the uninterrupted run
    return loss


RECIPE = dict(epochs=4, lr=0.1, momentum=0.9, weight_decay=1e-3, batch_size=16, scheduler="cosine",
              seed=3, progress=False, device="cpu")


def test_learns_separable_blobs():
    x, y = blobs()
    model = mlp()
    history = fit(model, (x, y), epochs=8, lr=0.05, batch_size=16, seed=0, progress=False,
                  device="cpu", val_data=(x, y))
    assert isinstance(history, History) and history.epochs == 8
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.val_metrics["accuracy"][-1] >= 0.95
    assert len(history.train_metrics["accuracy"]) == len(history.seconds) == 8


def test_resume_after_crash_gives_identical_weights(tmp_path):
    reference = mlp()
    ref_hist = fit(reference, NoisyBlobs(), checkpoint=tmp_path / "ref.pt", **RECIPE)

    batches_per_epoch = 4  # 60 samples, batch 16
    crashed = mlp()
    with pytest.raises(Crash):
        fit(crashed, NoisyBlobs(), loss=crash_after(2 * batches_per_epoch),
            checkpoint=tmp_path / "run.pt", **RECIPE)
    assert load_checked(tmp_path / "run.pt", what="checkpoint")["epoch"] == 2

    torch.manual_seed(12345)  # a fresh process would have other global generator states
    random.seed(7)
    np.random.seed(7)
    resumed = mlp(seed=99)
    hist = fit(resumed, NoisyBlobs(), checkpoint=tmp_path / "run.pt", **RECIPE)
    assert_same_state(resumed, reference)
    assert hist.train_loss == ref_hist.train_loss
    assert hist.train_metrics == ref_hist.train_metrics


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from companion.losses import classification_loss
    from companion.train import fit
    from test_train import RECIPE, NoisyBlobs, mlp
    calls = 0
    def classification_loss_until_killed(model, batch):
        global calls
        calls += 1
        if calls > {batches}:
            os.kill(os.getpid(), signal.SIGKILL)
        return classification_loss(model, batch)
    classification_loss_until_killed.__qualname__ = "classification_loss"
    fit(mlp(), NoisyBlobs(), loss=classification_loss_until_killed, checkpoint={path!r}, **RECIPE)
""")


@pytest.mark.slow
def test_resume_after_sigkill_gives_identical_weights(tmp_path):
    path = str(tmp_path / "run.pt")
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), batches=3 * 4 + 2, path=path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]  # killed in the middle of epoch 4
    assert load_checked(path, what="checkpoint")["epoch"] == 3
    resumed = mlp(seed=1)
    fit(resumed, NoisyBlobs(), checkpoint=path, **RECIPE)
    reference = mlp()
    fit(reference, NoisyBlobs(), **RECIPE)
    assert_same_state(resumed, reference)


def test_finished_checkpoint_is_loaded_without_training(tmp_path):
    trained = mlp()
    first = fit(trained, NoisyBlobs(), checkpoint=tmp_path / "m.pt", **RECIPE)
    again = mlp(seed=5)
    second = fit(again, NoisyBlobs(), loss=crash_after(0), checkpoint=tmp_path / "m.pt", **RECIPE)
    assert_same_state(again, trained)
    assert second == first
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_checkpoint_of_other_configuration_is_refused(tmp_path):
    fit(mlp(), NoisyBlobs(), checkpoint=tmp_path / "m.pt", **{**RECIPE, "epochs": 1})
    with pytest.raises(ValueError, match="lr"):
        fit(mlp(), NoisyBlobs(), checkpoint=tmp_path / "m.pt", **{**RECIPE, "epochs": 1, "lr": 0.5})
    other = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="parameters"):
        fit(other, NoisyBlobs(), checkpoint=tmp_path / "m.pt", **{**RECIPE, "epochs": 1})
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="resume=False"):
        fit(mlp(), NoisyBlobs(), checkpoint=tmp_path / "bad.pt", **{**RECIPE, "epochs": 1})
    fit(mlp(), NoisyBlobs(), checkpoint=tmp_path / "bad.pt", resume=False, **{**RECIPE, "epochs": 1})


def test_only_trainable_parameters_change():
    model = mlp()
    model[0].requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    before = model[4].weight.detach().clone()
    fit(model, blobs(), epochs=2, lr=0.1, weight_decay=0.1, progress=False, device="cpu")
    assert torch.equal(model[0].weight, frozen)
    assert not torch.equal(model[4].weight, before)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(model, blobs(), epochs=1, lr=0.1, progress=False, device="cpu")


def test_param_group_learning_rates_are_used():
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    first = model[0].weight.detach().clone()
    groups = [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[2].parameters()}]
    fit(model, blobs(), epochs=2, lr=0.1, param_groups=groups, progress=False, device="cpu")
    assert torch.equal(model[0].weight, first)
    with pytest.raises(ValueError, match="not part of the model"):
        fit(model, blobs(), epochs=1, lr=0.1, param_groups=[{"params": nn.Linear(2, 2).parameters()}],
            progress=False, device="cpu")


def test_step_scheduler_and_adamw():
    # gamma = 0 sets the learning rate to zero after the first epoch: later epochs change nothing.
    kwargs = dict(lr=0.01, optimizer="adamw", scheduler=("step", 1, 0.0), seed=0, progress=False,
                  device="cpu")
    one, three = (nn.Sequential(nn.Linear(6, 3)) for _ in range(2))
    three.load_state_dict(one.state_dict())
    fit(one, blobs(), epochs=1, **kwargs)
    fit(three, blobs(), epochs=3, **kwargs)
    assert_same_state(one, three)


def test_gradient_clipping_bounds_the_step():
    model = nn.Linear(6, 3)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    x, y = blobs(n=16)
    fit(model, (x * 100, y), epochs=1, lr=1.0, momentum=0.0, batch_size=16, grad_clip=1e-3,
        progress=False, device="cpu")
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < torch.linalg.vector_norm(after - before) <= 1e-3 * (1 + 1e-5)


def test_custom_loss_with_metrics_and_callable_optimizer():
    x, y = blobs()

    def loss(model, batch):
        out = model(batch[0])
        return nn.functional.cross_entropy(out, batch[1]), {"mean_logit": out.mean().item()}
    history = fit(nn.Linear(6, 3), TensorDataset(x, y), epochs=2, loss=loss, lr=0.05,
                  optimizer=torch.optim.Adam, progress=False, device="cpu")
    assert set(history.train_metrics) == {"mean_logit"}


def test_evaluate_and_predict_match_a_direct_forward():
    x, y = blobs(n=50)
    model = mlp()
    fit(model, (x, y), epochs=2, lr=0.05, progress=False, device="cpu")
    model.eval()
    with torch.no_grad():
        direct = model(x)
    model.train()
    logits = predict(model, (x, y), batch_size=7, device="cpu")
    assert model.training  # mode restored
    torch.testing.assert_close(logits, direct)
    result = evaluate(model, TensorDataset(x, y), batch_size=7, device="cpu")
    assert result["accuracy"] == pytest.approx((direct.argmax(1) == y).float().mean().item())
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(direct, y).item(), rel=1e-5)
    torch.testing.assert_close(predict(model, TensorDataset(x), device="cpu"), direct)


def test_bad_arguments_are_explained():
    x, y = blobs(n=8)
    with pytest.raises(TypeError, match="not a DataLoader"):
        fit(nn.Linear(6, 3), DataLoader(TensorDataset(x, y)), epochs=1, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="epochs"):
        fit(nn.Linear(6, 3), (x, y), epochs=0, lr=0.1, device="cpu")
    with pytest.raises(ValueError, match="optimizer"):
        fit(nn.Linear(6, 3), (x, y), epochs=1, lr=0.1, optimizer="lion", device="cpu")
    with pytest.raises(ValueError, match="same length"):
        fit(nn.Linear(6, 3), (x, y[:4]), epochs=1, lr=0.1, device="cpu")
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(nn.Linear(6, 3), (x * float("inf"), y), epochs=1, lr=0.1, progress=False, device="cpu")


KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import companion.io as io_module
    from companion.train import fit
    from test_train import RECIPE, NoisyBlobs, mlp
    real_replace, saves = os.replace, []
    def replace_until_killed(src, dst):
        saves.append(dst)
        if len(saves) > {saves}:  # the checkpoint of this epoch is written, not yet renamed
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    io_module.os.replace = replace_until_killed
    fit(mlp(), NoisyBlobs(), checkpoint={path!r}, **RECIPE)
""")


def test_kill_while_saving_a_checkpoint_keeps_the_last_one_and_cleans_up(tmp_path):
    path = tmp_path / "run.pt"
    code = KILLED_SAVE.format(tests=str(Path(__file__).parent), saves=2, path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".pt", ".tmp"]  # an orphan is left
    assert load_checked(path, what="checkpoint")["epoch"] == 2  # epoch 3's save never landed
    history = fit(mlp(seed=1), NoisyBlobs(), checkpoint=path, loss=crash_after(2 * 4),
                  **RECIPE)  # two epochs of 4 batches are left: it resumes at epoch 3
    assert history.epochs == 4 and load_checked(path, what="checkpoint")["epoch"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"], "the dead process's file stays"


# ---------------------------------------------------------------- labels and non-finite losses

@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_narrow_integer_labels_train_and_evaluate_like_int64(dtype):
    x, y = blobs(n=48)
    runs = []
    for labels in (y, y.to(dtype)):
        model = mlp()
        history = fit(model, (x, labels), epochs=2, lr=0.05, batch_size=16, seed=0,
                      progress=False, device="cpu")
        runs.append((model, history, evaluate(model, (x, labels), device="cpu")))
    (reference, ref_history, ref_eval), (model, history, result) = runs
    assert_same_state(model, reference)
    assert history.train_loss == ref_history.train_loss
    assert result == ref_eval


def test_labels_are_checked_in_every_batch_not_only_the_first():
    x, y = blobs(n=32)
    y[-1] = 3  # in the last batch only: the model has 3 outputs
    with pytest.raises(ValueError, match="label 3 is out of range for a model with 3 outputs"):
        fit(nn.Linear(6, 3), TensorDataset(x, y), epochs=1, lr=0.1, batch_size=8, progress=False,
            device="cpu")
    with pytest.raises(ValueError, match="evaluate: label 3 is out of range"):
        evaluate(nn.Linear(6, 3), (x, y), batch_size=8, device="cpu")


def test_non_finite_streak_resets_on_a_finite_loss():
    from companion.train import NonFiniteStreak

    streak = NonFiniteStreak(3, amp=True)
    for value in (float("nan"), float("inf"), 1.0, float("nan"), float("nan"), 0.5):
        streak.update(value, epoch=0)  # never three in a row
    streak.update(float("nan"), 0)
    streak.update(float("-inf"), 0)
    with pytest.raises(FloatingPointError, match="3 consecutive steps in epoch 2 under mixed"):
        streak.update(float("nan"), epoch=1)
    with pytest.raises(FloatingPointError, match="became nan in epoch 1; lower the learning rate"):
        NonFiniteStreak(1).update(float("nan"), epoch=0)


def fake_amp(monkeypatch):
    """Run fit's mixed-precision branch on the CPU: a real gradient scaler, no autocast."""
    import companion.train as train_module

    monkeypatch.setattr(train_module, "use_amp", lambda device, amp=None: True)


def test_amp_skips_an_isolated_non_finite_step_but_stops_a_streak(monkeypatch):
    fake_amp(monkeypatch)
    x, y = blobs(n=40)
    x[5] = float("nan")  # spoils one batch of the five
    model = mlp()
    history = fit(model, (x, y), epochs=1, lr=0.05, batch_size=8, seed=0, progress=False,
                  device="cpu")
    assert history.epochs == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was skipped
    x[:] = float("nan")
    with pytest.raises(FloatingPointError, match="5 consecutive steps in epoch 1 under mixed"):
        fit(mlp(), (x, y), epochs=1, lr=0.05, batch_size=8, progress=False, device="cpu")


def test_fused_adamw_takes_the_steps_adamw_takes():
    """fit with fused_adamw follows plain AdamW's trajectory (up to rounding) on the same data."""
    from companion.optim import fused_adamw

    x = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    weights = {}
    for name, optimizer in (("plain", "adamw"), ("fused", fused_adamw)):
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 2)
        fit(model, TensorDataset(x, y), epochs=3, optimizer=optimizer, lr=1e-2, weight_decay=0.05,
            batch_size=16, seed=0, progress=False)
        weights[name] = model.weight.detach().clone()
    torch.manual_seed(0)
    start = torch.nn.Linear(5, 2).weight.detach()
    assert (weights["plain"] - start).abs().max() > 1e-3  # it trained
    assert torch.allclose(weights["fused"], weights["plain"], atol=1e-5)
