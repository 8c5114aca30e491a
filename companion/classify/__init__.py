"""The interpretable classifiers' pipeline: data → dense model → features → last layer → fine-tune → report.

    data, dense = prepare(image_folder=None)         # the data and its cached dense model
    train_fs = extract_features(dense.model, data.eval_train)
    sldd = SLDD(n_features=16, per_class=4).fit(train_fs)   # or QPM, QSENN: one interface
    model = sldd.attach(dense.model); finetune(model, model.head, data.train, epochs=3)
    report = evaluate(model, test_fs, k=4, **data.ground_truth())
"""

from . import dino_qpm
from .base import LastLayer, NotFittedError, check_labels
from .chiqpm import CHiQPM, finetune_chiqpm
from .data import ClassificationData, load_data
from .dense import DenseModel, DenseRecipe, backbone_options, dense_model, prepare
from .finetune import finetune
from .qpm import QPM
from .qsenn import QSENN
from .report import Cited, Claim, ClaimsTable, Report, compare, evaluate, glue_numbers
from .sldd import SLDD
from .sparse import SparseLayer

__all__ = ["CHiQPM", "QPM", "QSENN", "SLDD", "Cited", "Claim", "ClaimsTable", "ClassificationData",
           "DenseModel", "DenseRecipe", "LastLayer", "NotFittedError", "Report", "SparseLayer",
           "backbone_options", "check_labels", "compare", "dense_model", "dino_qpm", "evaluate",
           "finetune", "finetune_chiqpm", "glue_numbers", "load_data", "prepare"]
