"""The scenarios' experiments: the functions their jobs run, one module per scenario plus
common.py. Only these modules and the engine (bnviz/*.py) decide a shipped result's numbers, so
a scenario's precompute fingerprint covers the engine and its own experiment modules, never its
text or figures (bnviz/precompute.py). Nothing here imports bnviz.scenarios or bnviz.ui."""
