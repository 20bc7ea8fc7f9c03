"""``dpeval attribute``: which generator made a patch, and is it one never seen?

Prototype attribution and open-set density scoring after Proto-LeakNet (Giusti, Guarnera,
Battiato, 2025), on frozen DiffusionPrint embeddings or a generator's latent "signal-leak"
features. See docs/attribute.md.

| file | concept |
|---|---|
| `embed.py` | the one function that embeds every input (GAP / projector of the frozen model) |
| `latent.py` | the signal-leak features: own VAE, own scheduler's forward noising over a t-set |
| `prototype.py` | the gated prototype head (architecture only, Hub mixin) |
| `train.py` | fitting the head: cross-entropy, AdamW, accelerate, metrics.jsonl and curves |
| `density.py` | closed-set density scorers, the open-set KDE, out-of-fold scoring, baselines |
| `metrics.py` | AUROC, EER, FPR@95%TPR, overlap; top-1, balanced accuracy, AUCs, confusion |
| `attributor.py` | the fitted attributor folder: save, load, score |
| `report.py` | which patches count for which metric; tables, JSON, Markdown, figures |
| `figures.py` | 2-D embedding plot (PCA, UMAP when installed) and open-set ROC curves |
| `run.py` | the two commands' settings and runs |
"""
