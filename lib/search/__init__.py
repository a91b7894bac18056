"""Search machinery the papers share: tree search (rStar-Math's MCTS), evolutionary search
(LongRoPE2's search over RoPE factors) and k-means (RetroInfer's wave index).

Empty until the first chapter that needs one of them lands here. Its rule, held by the import
contracts in pyproject.toml: search takes callables (a scorer, an expander, a distance) and never
imports the model lab, the pipeline or any chapter, so one search serves every chapter.
"""
