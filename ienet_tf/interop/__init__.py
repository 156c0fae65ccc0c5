"""Interoperability with other implementations: `ienet_tf.interop.release` loads the
IE-Net authors' PyTorch checkpoints."""

from ienet_tf.interop import release

__all__ = ["release"]
