"""Hyperparameter search: the paper's two steps on datasets (:mod:`.hpo`) and fine-tuning on a
user's own labelled slices (:mod:`.finetune`), both on one engine (:mod:`.search`)."""
