"""The erase_subjects DAG's Params refuse bad requests before a run starts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def erase_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "erase_subjects.py"))
    assert bag.import_errors == {}
    return bag.dags["erase_subjects"]


def _validate(dag, conf: dict):
    """What Airflow does with a trigger's conf: each value checked against its Param, then all of them."""
    params = copy.deepcopy(dag.params)
    for key, value in conf.items():
        params[key] = value
    return params.validate()


def test_a_valid_request_passes(erase_dag):
    out = _validate(erase_dag, {"authors": ["u-9"], "requested_by": "ticket-17"})
    assert out["authors"] == ["u-9"] and out["purge"] is False


@pytest.mark.parametrize("conf", [
    {"authors": ["u-9"]},                                  # nobody said who asked
    {"authors": ["u-9", "u-9"], "requested_by": "dpo"},    # an id given twice
    {"authors": [""], "requested_by": "dpo"},              # an empty id
    {"conversations": "c-1", "requested_by": "dpo"},       # not a list
])
def test_bad_requests_are_refused(erase_dag, conf):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="Invalid input for param"):
        _validate(erase_dag, conf)
    assert [t.task_id for t in erase_dag.topological_sort()] == ["record", "apply", "purge"]
