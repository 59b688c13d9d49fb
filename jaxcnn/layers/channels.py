"""Channel-count rounding shared by the mobile networks."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to a multiple of `divisor`, never more than 10% below `value` (the
    TF reference code's rule, kept by torchvision and timm for MobileNet v2 / v3 and EfficientNet).
    """
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new
