"""Test set-up: the measured-best XLA CPU flags, before JAX starts (as the CLIs do)."""

from jaxcnn import runtime

runtime.configure_xla_cpu()
