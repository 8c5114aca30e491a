"""Solvers: the elastic-net regularisation path (glm-saga's problem) and the methods' assignment programs."""

from .elastic_net import (
                          ElasticNetFit,
                          ElasticNetPath,
                          elastic_net_objective,
                          elastic_net_path,
                          fit_elastic_net,
                          lambda_max,
                          standardize,
)
from .qpm import (
                          AssignmentResult,
                          ForcedSharing,
                          NotProvenOptimalWarning,
                          QPMExtension,
                          check_assignment,
                          lagrangian_bound,
                          solve_assignment,
)

__all__ = ["AssignmentResult", "ElasticNetFit", "ElasticNetPath", "ForcedSharing",
           "NotProvenOptimalWarning", "QPMExtension", "check_assignment", "elastic_net_objective",
           "elastic_net_path", "fit_elastic_net", "lagrangian_bound", "lambda_max",
           "solve_assignment", "standardize"]
