"""Modality CE, mutual-mean KL (design.md §2.4) and the weighted total (design.md §2) against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf.config import LossConfig
from mpanet_tf.losses import modality_identity_losses, mutual_mean_kl, total_loss


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_ce(logits, labels):
    return -np_log_softmax(logits)[np.arange(len(labels)), labels].mean()


def np_mutual_kl(vis, ir, mean_vis, mean_ir, infrared, grad_side="specific"):
    """The code's layout: concat [visible rows, infrared rows] of each side, batchmean KL."""
    visible = ~infrared
    specific = np.concatenate([vis[visible], ir[infrared]])  # own-modality trainable heads
    mean = np.concatenate([mean_ir[visible], mean_vis[infrared]])  # other modality's mean head
    log_p, log_q = np_log_softmax(specific), np_log_softmax(mean)
    if grad_side == "specific":
        return np.sum(np.exp(log_p) * (log_p - log_q)) / len(infrared)
    return np.sum(np.exp(log_q) * (log_q - log_p)) / len(infrared)


def four_heads(seed, batch=8, classes=6):
    rng = np.random.default_rng(seed)
    heads = [(2.0 * rng.normal(size=(batch, classes))).astype(np.float32) for _ in range(4)]
    labels = rng.integers(0, classes, size=batch)
    infrared = np.arange(batch) % 2 == 0  # interleaved IR, VIS as the sampler builds it
    return heads, labels, infrared


# ------------------------------------------------------------------------------ modality CE
def test_modality_identity_losses_use_own_head_on_own_rows():
    (vis, ir, _, _), labels, infrared = four_heads(0)
    ce_vis, ce_ir = modality_identity_losses(vis, ir, labels, infrared)
    assert ce_vis.dtype == tf.float32 and ce_ir.dtype == tf.float32
    np.testing.assert_allclose(float(ce_vis), np_ce(vis[~infrared], labels[~infrared]), rtol=1e-5)
    np.testing.assert_allclose(float(ce_ir), np_ce(ir[infrared], labels[infrared]), rtol=1e-5)


@pytest.mark.parametrize("all_infrared", [True, False])
def test_one_modality_batch_gives_zero_for_the_empty_side(all_infrared):
    (vis, ir, mean_vis, mean_ir), labels, _ = four_heads(1)
    infrared = np.full(len(labels), all_infrared)
    ce_vis, ce_ir = modality_identity_losses(vis, ir, labels, infrared)
    if all_infrared:
        assert float(ce_vis) == 0.0
        np.testing.assert_allclose(float(ce_ir), np_ce(ir, labels), rtol=1e-5)
    else:
        assert float(ce_ir) == 0.0
        np.testing.assert_allclose(float(ce_vis), np_ce(vis, labels), rtol=1e-5)
    kl = mutual_mean_kl(vis, ir, mean_vis, mean_ir, infrared)
    assert np.isfinite(float(kl))
    np.testing.assert_allclose(float(kl), np_mutual_kl(vis, ir, mean_vis, mean_ir, infrared), rtol=1e-5)


# ------------------------------------------------------------------------------------- KL
@pytest.mark.parametrize("grad_side", ["specific", "paper"])
@pytest.mark.parametrize("seed", [2, 3])
def test_kl_matches_numpy(seed, grad_side):
    heads, _, infrared = four_heads(seed)
    value = mutual_mean_kl(*heads, infrared, grad_side=grad_side)
    assert value.dtype == tf.float32 and value.shape == ()
    np.testing.assert_allclose(float(value), np_mutual_kl(*heads, infrared, grad_side), rtol=1e-5)


def test_kl_divides_by_the_full_batch_and_pairs_crosswise():
    # Visible rows compared with the IR mean head, IR rows with the VIS mean head: when the
    # specific side equals the crosswise mean side, KL is 0; swapping the mean heads is not.
    (vis, ir, _, _), _, infrared = four_heads(4)
    assert abs(float(mutual_mean_kl(vis, ir, ir, vis, infrared))) < 1e-6
    assert float(mutual_mean_kl(vis, ir, vis, ir, infrared)) > 1e-3
    # A batch twice as large made of the same rows gives the same batchmean value.
    doubled = mutual_mean_kl(*(np.concatenate([h, h]) for h in (vis, ir, vis, ir)), np.concatenate([infrared] * 2))
    np.testing.assert_allclose(float(doubled), float(mutual_mean_kl(vis, ir, vis, ir, infrared)), rtol=1e-5)


def _kl_gradients(heads, infrared, grad_side):
    variables = [tf.Variable(h) for h in heads]
    with tf.GradientTape() as tape:
        loss = mutual_mean_kl(*variables, infrared, grad_side=grad_side)
    grads = tape.gradient(loss, variables)
    return [np.zeros_like(h) if g is None else g.numpy() for g, h in zip(grads, heads)]


def _expected_specific_gradient(heads, infrared, grad_side):
    """Analytic d KL / d specific logits, row-wise, in float64."""
    vis, ir, mean_vis, mean_ir = heads
    specific = np.where(infrared[:, None], ir, vis)
    mean = np.where(infrared[:, None], mean_vis, mean_ir)
    log_p, log_q = np_log_softmax(specific), np_log_softmax(mean)
    p, q = np.exp(log_p), np.exp(log_q)
    if grad_side == "specific":  # p_k [(log p_k - log q_k) - KL_row]
        row_kl = np.sum(p * (log_p - log_q), axis=1, keepdims=True)
        return p * ((log_p - log_q) - row_kl) / len(infrared)
    return (p - q) / len(infrared)  # softmax(specific) - target


@pytest.mark.parametrize("grad_side", ["specific", "paper"])
def test_kl_gradients_flow_only_through_the_specific_side(grad_side):
    heads, _, infrared = four_heads(5)
    g_vis, g_ir, g_mean_vis, g_mean_ir = _kl_gradients(heads, infrared, grad_side)
    assert np.all(g_mean_vis == 0.0) and np.all(g_mean_ir == 0.0)
    assert np.abs(g_vis[~infrared]).max() > 1e-4 and np.abs(g_ir[infrared]).max() > 1e-4
    # Each trainable head only receives gradient from its own modality's rows.
    assert np.all(g_vis[infrared] == 0.0) and np.all(g_ir[~infrared] == 0.0)
    expected = _expected_specific_gradient(heads, infrared, grad_side)
    np.testing.assert_allclose(g_vis[~infrared], expected[~infrared], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(g_ir[infrared], expected[infrared], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_logits_give_float32(dtype):
    heads, labels, infrared = four_heads(6)
    low = [tf.cast(h, dtype) for h in heads]
    rounded = [tf.cast(h, tf.float32).numpy() for h in low]
    kl = mutual_mean_kl(*low, infrared)
    ce_vis, ce_ir = modality_identity_losses(low[0], low[1], labels, infrared)
    assert kl.dtype == ce_vis.dtype == ce_ir.dtype == tf.float32
    np.testing.assert_allclose(float(kl), np_mutual_kl(*rounded, infrared), rtol=1e-5)


def test_traces_with_unknown_batch():
    spec = tf.TensorSpec((None, 6), tf.float32)
    fn = tf.function(
        lambda a, b, c, d, m: mutual_mean_kl(a, b, c, d, m),
        input_signature=[spec, spec, spec, spec, tf.TensorSpec((None,), tf.bool)],
    )
    heads, _, infrared = four_heads(7)
    np.testing.assert_allclose(float(fn(*heads, infrared)), np_mutual_kl(*heads, infrared), rtol=1e-5)


def test_kl_rejects_unknown_grad_side():
    heads, _, infrared = four_heads(8)
    with pytest.raises(ValueError, match="grad_side"):
        mutual_mean_kl(*heads, infrared, grad_side="teacher")


# ------------------------------------------------------------------------------- total_loss
TERMS = {"id": 1.5, "sep": 3.0, "cc": 0.25, "ce_vis": 2.0, "ce_ir": 4.0, "kl": 0.1}


def test_total_loss_default_weights_count_modality_ce_twice():
    # 0.5*3 + 0.25 + 1.5 + 2*0.5*(2+4) + 2.5*0.1 = 9.5
    value = total_loss(TERMS, LossConfig())
    assert value.dtype == tf.float32
    np.testing.assert_allclose(float(value), 9.5, rtol=1e-6)


def test_total_loss_single_modality_ce_weight():
    # Paper form: 0.5*(2+4) instead of 1.0*(2+4): 9.5 - 3 = 6.5
    value = total_loss(TERMS, LossConfig(double_modality_ce=False))
    np.testing.assert_allclose(float(value), 6.5, rtol=1e-6)


def test_total_loss_honours_switches_and_config_weights():
    config = LossConfig(use_cc=False, use_ml=False, weight_sep=2.0)
    np.testing.assert_allclose(float(total_loss(TERMS, config)), 1.5 + 2.0 * 3.0, rtol=1e-6)
    # Switched-off terms need not be present; sep is optional (a model without PAM).
    np.testing.assert_allclose(float(total_loss({"id": 1.5}, config)), 1.5, rtol=1e-6)
    config = LossConfig(weight_sid=0.25, weight_kl=10.0)
    expected = 0.5 * 3.0 + 0.25 + 1.5 + 0.25 * 2 * 6.0 + 10.0 * 0.1
    np.testing.assert_allclose(float(total_loss(TERMS, config)), expected, rtol=1e-6)


@pytest.mark.parametrize("missing", ["id", "cc", "kl", "ce_ir"])
def test_total_loss_requires_the_enabled_terms(missing):
    terms = {k: v for k, v in TERMS.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        total_loss(terms, LossConfig())


def test_total_loss_of_low_precision_terms_is_float32():
    terms = {k: tf.constant(v, tf.float16) for k, v in TERMS.items()}
    value = total_loss(terms, LossConfig())
    assert value.dtype == tf.float32
    np.testing.assert_allclose(float(value), 9.5, rtol=1e-3)


def test_total_loss_gradient_weights():
    variables = {k: tf.Variable(v) for k, v in TERMS.items()}
    with tf.GradientTape() as tape:
        value = total_loss(variables, LossConfig())
    grads = tape.gradient(value, variables)
    expected = {"id": 1.0, "sep": 0.5, "cc": 1.0, "ce_vis": 1.0, "ce_ir": 1.0, "kl": 2.5}
    assert {k: float(g) for k, g in grads.items()} == pytest.approx(expected)
