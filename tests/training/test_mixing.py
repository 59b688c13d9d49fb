"""jaxcnn.training.mixing against a NumPy reference of timm's batch-mode Mixup / CutMix.

The reference below is written from timm's documented semantics (`timm/data/mixup.py`, mode
'batch'), independently of the implementation: given the same draws it must give the same images,
targets and lambda. The draws themselves are checked statistically.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxcnn.config import get_config
from jaxcnn.training import mixing

# Non-square and odd-sized, so that a swapped H / W or an off-by-one in the box shows.
N, H, W, C, K = 6, 7, 10, 2, 5


# Jitted once per spec: op-by-op dispatch would compile every primitive separately, and XLA's
# compile time is most of these tests' time.
apply_mix = jax.jit(mixing.apply_mix, static_argnums=(3, 4, 5))


@functools.partial(jax.jit, static_argnums=(1,))
def draws_over_keys(keys, spec):
    return jax.vmap(lambda k: mixing.draw(k, spec, H, W))(keys)


@functools.partial(jax.jit, static_argnums=(3,))
def draw_and_mix_over_keys(keys, images, labels, spec):
    """(draws, mix_batch's outputs) for each key, as one program (cheaper to compile than two)."""
    return jax.vmap(
        lambda k: (mixing.draw(k, spec, H, W), mixing.mix_batch(k, images, labels, K, spec))
    )(keys)


def reference_mix(images, labels, *, mixed, use_cutmix, lam, cy, cx, num_classes, eps, correct):
    """timm's batch mode, in NumPy, for given draws (lam is the Beta draw)."""
    x = np.array(images, dtype=np.float64)
    n, h, w, _ = x.shape
    flipped = x[::-1].copy()
    lam = float(lam) if mixed else 1.0
    if mixed and use_cutmix:
        # int(H * sqrt(1 - lam)) in float32, as the implementation's lam is float32.
        ratio = np.sqrt(np.float32(1.0) - np.float32(lam))
        cut_h, cut_w = int(np.float32(h) * ratio), int(np.float32(w) * ratio)
        yl, yh = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
        xl, xh = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
        x[:, yl:yh, xl:xh] = flipped[:, yl:yh, xl:xh]
        if correct:
            lam = 1.0 - (yh - yl) * (xh - xl) / (h * w)
    elif lam != 1.0:
        x = lam * x + (1.0 - lam) * flipped
    off = eps / num_classes
    on = 1.0 - eps + off
    y1 = np.full((n, num_classes), off)
    y1[np.arange(n), labels] = on
    return x, lam * y1 + (1.0 - lam) * y1[::-1], lam


def make_draws(*, mixed=True, use_cutmix=False, lam=1.0, cy=0, cx=0):
    """MixDraws as `mixing.draw` makes them (no CutMix and lam = 1 when not mixed)."""
    return mixing.MixDraws(
        mixed=jnp.asarray(mixed),
        use_cutmix=jnp.asarray(use_cutmix and mixed),
        lam=jnp.asarray(lam if mixed else 1.0, jnp.float32),
        cy=jnp.asarray(cy, jnp.int32),
        cx=jnp.asarray(cx, jnp.int32),
    )


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(N, H, W, C)).astype(np.float32)
    labels = np.array([0, 3, 1, 1, 4, 2], np.int32)  # examples 2 and 3 are partners with one label
    return images, labels


def source_images(n=N, h=H, w=W, c=C):
    """Example i is all i + 1: a pixel's value says which example it came from."""
    return np.broadcast_to(np.arange(1, n + 1, dtype=np.float32)[:, None, None, None], (n, h, w, c))


# (use_cutmix, lam, cy, cx, mixed, correct_lam). Box sides for H=7, W=10: lam 0.55 -> 4 x 6,
# 0.3 -> 5 x 8, 0.75 -> 3 x 5 (odd sides lose a pixel), 0.0 -> the whole image.
DRAW_CASES = {
    "mixup": (False, 0.3, 3, 4, True, True),
    "mixup_lam_0": (False, 0.0, 3, 4, True, True),
    "cutmix_inside": (True, 0.55, 3, 5, True, True),
    "cutmix_top": (True, 0.3, 0, 5, True, True),
    "cutmix_bottom": (True, 0.3, H - 1, 5, True, True),
    "cutmix_left": (True, 0.3, 3, 0, True, True),
    "cutmix_right": (True, 0.3, 3, W - 1, True, True),
    "cutmix_corner": (True, 0.55, H - 1, 0, True, True),
    "cutmix_odd_sides": (True, 0.75, 2, 7, True, True),
    "cutmix_whole": (True, 0.0, H // 2, W // 2, True, True),
    "cutmix_empty": (True, 0.999, 3, 4, True, True),
    "cutmix_uncorrected": (True, 0.3, 0, W - 1, True, False),
    "not_mixed": (True, 0.3, 3, 4, False, True),
}


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("case", list(DRAW_CASES))
def test_apply_mix_matches_numpy_reference(batch, case, eps):
    images, labels = batch
    use_cutmix, lam, cy, cx, mixed, correct = DRAW_CASES[case]
    draws = make_draws(mixed=mixed, use_cutmix=use_cutmix, lam=lam, cy=cy, cx=cx)
    got_x, got_y, got_lam = apply_mix(
        jnp.asarray(images), jnp.asarray(labels), draws, K, eps, correct
    )
    want_x, want_y, want_lam = reference_mix(
        images,
        labels,
        mixed=mixed,
        use_cutmix=use_cutmix,
        lam=np.float32(lam),
        cy=cy,
        cx=cx,
        num_classes=K,
        eps=eps,
        correct=correct,
    )
    assert got_x.dtype == jnp.float32 and got_y.dtype == jnp.float32
    assert got_x.shape == images.shape and got_y.shape == (N, K)
    if use_cutmix or not mixed:
        np.testing.assert_array_equal(got_x, want_x)  # pasted pixels are copies
    else:
        np.testing.assert_allclose(got_x, want_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(got_lam), want_lam, rtol=1e-6)
    # Soft targets are distributions, with and without smoothing.
    assert np.all(np.asarray(got_y) >= 0)
    np.testing.assert_allclose(np.asarray(got_y).sum(-1), 1.0, atol=1e-6)


def test_mix_batch_matches_reference_on_its_own_draws(batch):
    """Random keys end to end: `draw` + `apply_mix` (= `mix_batch`) against the reference."""
    images, labels = batch
    eps = 0.1
    spec = mixing.MixSpec(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, label_smoothing=eps)
    keys = jax.random.split(jax.random.key(1), 32)
    draws, (xs, ys, lams) = draw_and_mix_over_keys(keys, images, labels, spec)
    assert np.all(np.asarray(ys) >= 0)
    np.testing.assert_allclose(np.asarray(ys).sum(-1), 1.0, atol=1e-6)
    kinds = set()
    for i in range(len(keys)):
        mixed, cut = bool(draws.mixed[i]), bool(draws.use_cutmix[i])
        kinds.add((mixed, cut))
        want_x, want_y, want_lam = reference_mix(
            images,
            labels,
            mixed=mixed,
            use_cutmix=cut,
            lam=draws.lam[i],
            cy=int(draws.cy[i]),
            cx=int(draws.cx[i]),
            num_classes=K,
            eps=eps,
            correct=True,
        )
        np.testing.assert_allclose(xs[i], want_x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ys[i], want_y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(lams[i]), want_lam, rtol=1e-5, atol=1e-7)
    assert kinds == {(False, False), (True, False), (True, True)}  # every path was exercised


def test_targets_with_known_lam(batch):
    images, labels = batch
    lam, eps = 0.3, 0.1
    off, on = eps / K, 1 - eps + eps / K
    _, ys, got_lam = apply_mix(
        jnp.asarray(images), jnp.asarray(labels), make_draws(lam=lam), K, eps
    )
    assert float(got_lam) == pytest.approx(lam)
    for i in range(N):
        own, partner = labels[i], labels[N - 1 - i]
        want = np.full(K, off)
        if own == partner:
            want[own] = on
        else:
            want[own] = lam * on + (1 - lam) * off
            want[partner] = (1 - lam) * on + lam * off
        np.testing.assert_allclose(ys[i], want, rtol=1e-6)


def many_draws(spec, n=4000, seed=3):
    keys = jax.random.split(jax.random.key(seed), n)
    draws = draws_over_keys(keys, spec)
    return jax.tree.map(np.asarray, draws)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_lambda_is_beta(alpha):
    draws = many_draws(mixing.MixSpec(mixup_alpha=alpha))
    assert draws.mixed.all() and not draws.use_cutmix.any()
    # float32 rounds draws within about 2^-24 of 1 to exactly 1.0 (some 1.8% of them for alpha 0.2,
    # none to speak of for 1.0), an atom that the KS test reads as a misfit of that size. So test
    # the draws below 1 against Beta conditioned on X < 1 - 2^-24, and bound the atom.
    beta = scipy.stats.beta(alpha, alpha)
    below = draws.lam[draws.lam < 1]
    assert below.size > 0.97 * draws.lam.size
    top = beta.cdf(1 - 2.0**-24)
    assert scipy.stats.kstest(below, lambda x: beta.cdf(x) / top).pvalue > 0.01


def test_switch_and_mix_frequencies_per_method_lambda_and_centres():
    spec = mixing.MixSpec(mixup_alpha=0.8, cutmix_alpha=3.0, prob=0.6, switch_prob=0.3)
    n = 4000
    d = many_draws(spec, n)
    # 4 standard deviations of a binomial frequency.
    assert abs(d.mixed.mean() - 0.6) < 4 * math.sqrt(0.6 * 0.4 / n)
    assert np.all(d.lam[~d.mixed] == 1.0) and not d.use_cutmix[~d.mixed].any()
    cut = d.use_cutmix[d.mixed]
    assert abs(cut.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / cut.size)
    lam_cut, lam_mix = d.lam[d.mixed & d.use_cutmix], d.lam[d.mixed & ~d.use_cutmix]
    beta_cut, beta_mix = scipy.stats.beta(3.0, 3.0).cdf, scipy.stats.beta(0.8, 0.8).cdf
    assert scipy.stats.kstest(lam_cut, beta_cut).pvalue > 0.01
    assert scipy.stats.kstest(lam_mix, beta_mix).pvalue > 0.01
    # The test can tell the two apart: each method's lambda fails against the other's Beta.
    assert scipy.stats.kstest(lam_cut, beta_mix).pvalue < 1e-6
    assert scipy.stats.kstest(lam_mix, beta_cut).pvalue < 1e-6
    # Box centres: uniform integers over [0, H) x [0, W).
    for centres, size in ((d.cy, H), (d.cx, W)):
        counts = np.bincount(centres, minlength=size)
        assert counts.size == size  # nothing outside [0, size)
        assert scipy.stats.chisquare(counts).pvalue > 0.01


def test_cutmix_box_is_one_rectangle_and_lam_is_its_share():
    spec = mixing.MixSpec(cutmix_alpha=1.0)
    x = source_images()
    labels = np.arange(N, dtype=np.int32) % K
    keys = jax.random.split(jax.random.key(4), 200)
    draws, (xs, _, lams) = draw_and_mix_over_keys(keys, x, labels, spec)
    xs, lams, beta_lams = np.asarray(xs), np.asarray(lams), np.asarray(draws.lam)
    own = np.arange(1, N + 1)[:, None, None, None]
    seen_clipped = seen_inside = 0
    for xi, lam, beta_lam in zip(xs, lams, beta_lams, strict=True):
        from_partner = xi == own[::-1]
        assert np.all(from_partner | (xi == own))  # every pixel is one source or the other
        mask = from_partner[0, :, :, 0]
        assert np.all(from_partner == mask[None, :, :, None])  # one box for all examples, channels
        assert 1 - lam == pytest.approx(mask.mean(), abs=1e-6)
        if mask.any():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = np.zeros_like(mask)
            box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
            np.testing.assert_array_equal(mask, box)  # exactly its bounding rectangle
            # At most the drawn side (odd sides lose a pixel); less only where clipped.
            full_h, full_w = (int(s * math.sqrt(1 - beta_lam)) for s in (H, W))
            assert box.any(1).sum() <= full_h and box.any(0).sum() <= full_w
            touches = rows[0] == 0 or rows[-1] == H - 1 or cols[0] == 0 or cols[-1] == W - 1
            seen_clipped += touches
            seen_inside += not touches
    assert seen_clipped and seen_inside


def test_mixup_images_blend_with_the_flipped_batch():
    x = source_images()
    labels = np.zeros(N, np.int32)
    xs, _, _ = apply_mix(x, labels, make_draws(lam=0.37), K, 0.0, True)
    want = 0.37 * np.arange(1, N + 1) + 0.63 * np.arange(N, 0, -1)
    np.testing.assert_allclose(np.asarray(xs)[:, 0, 0, 0], want, rtol=1e-6)
    assert np.all(np.asarray(xs) == np.asarray(xs)[:, :1, :1, :1])


@pytest.mark.parametrize(
    "spec",
    [
        mixing.MixSpec(),
        mixing.MixSpec(label_smoothing=0.1),
        mixing.MixSpec(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0, label_smoothing=0.2),
    ],
)
def test_off_is_identity(batch, spec):
    images, labels = batch
    assert not spec.enabled
    xs, ys, lam = mixing.mix_batch(jax.random.key(6), jnp.asarray(images), labels, K, spec)
    np.testing.assert_array_equal(xs, images)
    eps = spec.label_smoothing
    want = np.full((N, K), eps / K)
    want[np.arange(N), labels] = 1 - eps + eps / K
    np.testing.assert_allclose(ys, want, rtol=1e-7)
    assert float(lam) == 1.0
    # Nothing is paired when off, so an odd batch is fine.
    xs, _, _ = mixing.mix_batch(jax.random.key(6), jnp.asarray(images[:5]), labels[:5], K, spec)
    assert xs.shape[0] == 5


def test_odd_batch_is_refused(batch):
    images, labels = batch
    with pytest.raises(ValueError, match=r"even batch, got 5 examples"):
        mixing.mix_batch(
            jax.random.key(0), images[:5], labels[:5], K, mixing.MixSpec(cutmix_alpha=1.0)
        )


def test_integer_images_are_refused(batch):
    _, labels = batch
    with pytest.raises(ValueError, match="floating point images"):
        mixing.mix_batch(
            jax.random.key(0), np.zeros((N, H, W, C), np.uint8), labels, K, mixing.MixSpec(1.0)
        )


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("mixup_alpha", -0.1, "--config.mixup_alpha"),
        ("cutmix_alpha", float("nan"), "--config.cutmix_alpha"),
        ("cutmix_alpha", float("inf"), "--config.cutmix_alpha"),
        ("prob", 1.5, "--config.mixup_prob"),
        ("switch_prob", -0.5, "--config.mixup_switch_prob"),
        ("label_smoothing", 2.0, "--config.label_smoothing"),
    ],
)
def test_bad_spec_names_the_flag(batch, field, value, flag):
    images, labels = batch
    spec = mixing.MixSpec(**{"mixup_alpha": 1.0, field: value})
    with pytest.raises(ValueError, match=rf"^{flag} must be .*, got {value}$"):
        spec.validate()
    with pytest.raises(ValueError, match=flag):
        mixing.mix_batch(jax.random.key(0), images, labels, K, spec)


def test_from_config():
    cfg = get_config()
    assert not mixing.MixSpec.from_config(cfg).enabled  # off by default
    cfg.mixup_alpha, cfg.cutmix_alpha, cfg.mixup_prob = 0.8, 1.0, 0.9
    cfg.mixup_switch_prob, cfg.label_smoothing = 0.4, 0.1
    assert mixing.MixSpec.from_config(cfg) == mixing.MixSpec(0.8, 1.0, 0.9, 0.4, 0.1, True)


def test_jit_matches_eager(batch):
    images, labels = batch
    spec = mixing.MixSpec(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    jitted = jax.jit(mixing.mix_batch, static_argnums=(3, 4))
    methods = set()
    for seed in (0, 2):
        key = jax.random.key(seed)
        methods.add(bool(mixing.draw(key, spec, H, W).use_cutmix))
        got = jitted(key, images, labels, K, spec)
        want = mixing.mix_batch(key, images, labels, K, spec)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    assert methods == {True, False}


@pytest.mark.parametrize("use_cutmix", [False, True])
def test_keeps_the_images_dtype(batch, use_cutmix):
    images, labels = batch
    draws = make_draws(use_cutmix=use_cutmix, lam=0.3, cy=3, cx=4)
    low = images.astype(jnp.bfloat16)
    xs, ys, lam = apply_mix(low, labels, draws, K, 0.1, True)
    assert xs.dtype == jnp.bfloat16 and ys.dtype == jnp.float32 and lam.dtype == jnp.float32
    want_x, want_y, _ = reference_mix(
        low.astype(np.float32),
        labels,
        mixed=True,
        use_cutmix=use_cutmix,
        lam=np.float32(0.3),
        cy=3,
        cx=4,
        num_classes=K,
        eps=0.1,
        correct=True,
    )
    # bfloat16 keeps 8 significant bits: a blend is within a few of its ulps; a paste is exact.
    np.testing.assert_allclose(xs.astype(np.float32), want_x, rtol=2**-6, atol=2**-6)
    np.testing.assert_allclose(ys, want_y, rtol=1e-6)


def test_dominant_labels():
    labels = jnp.array([0, 1, 2, 3])
    np.testing.assert_array_equal(mixing.dominant_labels(labels, jnp.float32(0.7)), [0, 1, 2, 3])
    np.testing.assert_array_equal(mixing.dominant_labels(labels, jnp.float32(0.5)), [0, 1, 2, 3])
    np.testing.assert_array_equal(mixing.dominant_labels(labels, jnp.float32(0.3)), [3, 2, 1, 0])
