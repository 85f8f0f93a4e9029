"""The approval step keeps its answer for the task that records it, whatever the answer.

Airflow's ApprovalOperator skips its downstream task on "Reject" (a person's, or the default at the
timeout) by raising DownstreamTasksSkipped, so its return value never reaches XCom. The running-Airflow
test (tests/test_approval_airflow.py) found the rejected and timed-out outcomes missing on the version;
this checks the operator's own step: the answer is pushed before the skip.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest


class PushedXComs:
    """The part of a task instance that execute_complete and SkipMixin use: XCom pushes, map index."""

    map_index = -1

    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def _approval_with_a_downstream_task():
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Param

    from common.approval import RecordedApprovalOperator

    with DAG("approval_answer", schedule=None):
        op = RecordedApprovalOperator(task_id="approval", subject="Promote?", defaults="Reject",
                                      params={"comment": Param("", type="string")})
        op >> EmptyOperator(task_id="promote_approved")
    return op


@pytest.mark.parametrize("who, option, comment", [
    ({"id": "ml-lead", "name": "ml-lead"}, "Reject", "report looks off"),
    (None, "Reject", ""),  # the timeout: defaults applied, nobody responded
    ({"id": "ml-lead", "name": "ml-lead"}, "Approve", "ship it"),
], ids=["rejected", "timed-out", "approved"])
def test_the_answer_is_pushed_before_a_reject_skips_downstream(who, option, comment):
    from airflow.sdk.exceptions import DownstreamTasksSkipped

    from common.approval import ANSWER_KEY

    op, ti = _approval_with_a_downstream_task(), PushedXComs()
    at = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
    event = {"chosen_options": [option], "params_input": {"comment": comment}, "responded_by_user": who,
             "responded_at": at}
    if option == "Reject":
        with pytest.raises(DownstreamTasksSkipped):
            op.execute_complete({"ti": ti, "task": op}, event)
    else:
        assert op.execute_complete({"ti": ti, "task": op}, event)["chosen_options"] == ["Approve"]
    assert ti.pushed[ANSWER_KEY] == {"chosen_options": [option], "params_input": {"comment": comment},
                                     "responded_by_user": who, "responded_at": at.isoformat()}
