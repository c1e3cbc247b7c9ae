"""Private build tooling, not used by the notebooks: execute the notebooks with papermill and
build the Jupyter Book site (:mod:`~rlhf_nb._site.build`, ``python -m rlhf_nb._site.build``), and
check the built site in a headless browser (:mod:`~rlhf_nb._site.check`)."""
