"""``nn-mnist``: the project's command line for using trained models (``nn-mnist predict``)."""
