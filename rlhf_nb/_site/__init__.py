"""Private build tooling, not used by the notebooks: execute the notebooks with papermill and
build the Jupyter Book site (:mod:`~rlhf_nb._site.build`, ``python -m rlhf_nb._site.build``), the
README's results block (:mod:`~rlhf_nb._site.results`), the chapters' Colab cells
(:mod:`~rlhf_nb._site.colab`) and ``make lab`` (:mod:`~rlhf_nb._site.lab`). The browser checks
of the built site and of JupyterLab are test harness and live in ``tests/browser/``."""
