"""An example initstudy plugin: one initializer, one model and one dataset (see README: Bring your own)."""
